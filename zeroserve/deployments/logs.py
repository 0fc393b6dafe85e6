"""Deployment log records: control-plane notes and every line a replica prints; written, queried, followed.

Each record becomes an ``io.zeroserve.deployment.log`` event on the logs stream, which keeps
them after the replicas are gone. Replicas can print faster than JetStream acks one by one, so
records go through a bounded queue to one publisher task; a full queue makes the writer wait
rather than drop lines. ``query`` reads a deployment's records of a time range back from the
stream; ``follow`` hands on its status and log events as they happen (the gateway's live stream).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import AsyncGenerator, AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

import anyio
from nats.errors import TimeoutError as NatsTimeout
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy

from zeroserve.core.binding import from_nats
from zeroserve.core.bus import LOGS_STREAM, Bus
from zeroserve.core.store import Store
from zeroserve.errors import MalformedEvent
from zeroserve.events import DeploymentLog, DeploymentStatus, EventData, new_event, parse_data, subject_for

log = logging.getLogger(__name__)

Stream = Literal["stdout", "stderr", "control"]
Order = Literal["asc", "desc"]
# A query scans the group's log stream from its start time; these bound how long and how much.
QUERY_DEADLINE_S = 10.0
FETCH_BATCH = 512
# Events a follower has not taken yet; past this its oldest are dropped.
FOLLOW_BACKLOG = 1000


class DeploymentLogs:
    def __init__(self, bus: Bus, capacity: int = 10_000) -> None:
        self.bus = bus
        self._queue: asyncio.Queue[tuple[str, DeploymentLog, str | None]] = asyncio.Queue(capacity)
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._publish(), name="deployment-logs")

    async def stop(self) -> None:
        """Publish what is queued, then stop."""
        if self._task is None:
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._queue.join(), timeout=5)
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task
        self._task = None

    async def write(
        self, group: str, deployment_id: str, source: str, stream: Stream, message: str,
        timestamp: datetime | None = None, event_id: str | None = None,
    ) -> None:
        """Queue one record; ``timestamp`` is when it was written (now, unless the source says);
        ``event_id`` names it for JetStream's de-duplication when the same record may come twice."""
        record = DeploymentLog(
            id=deployment_id, timestamp=timestamp or datetime.now(UTC), source=source, stream=stream, message=message
        )
        await self._queue.put((group, record, event_id))

    async def control(self, group: str, deployment_id: str, message: str) -> None:
        await self.write(group, deployment_id, "control-plane", "control", message)

    async def _publish(self) -> None:
        while True:
            group, record, event_id = await self._queue.get()
            try:
                event = new_event(record, source=f"/zeroserve/deployments/{record.id}", subject=record.id, id=event_id)
                await self.bus.publish(event, group)
            except Exception as error:  # a log line must not take the publisher down
                log.warning("could not publish a log record of %s: %s", record.id, error)
            finally:
                self._queue.task_done()


async def output_records(stream: asyncio.StreamReader, quiet_s: float = 0.1) -> AsyncIterator[str]:
    """A process's output as log records: a line, with its indented continuation lines (a Python
    traceback, to its closing ``Error: ...`` line) kept in one record rather than thirty."""
    pending: list[str] = []
    while True:
        try:
            # With a record open, a short silence closes it; without one, wait as long as it takes.
            raw = await (asyncio.wait_for(stream.readline(), quiet_s) if pending else stream.readline())
        except TimeoutError:
            yield "\n".join(pending)
            pending = []
            continue
        except ValueError:  # a line past the reader's limit: asyncio has dropped it; say so, read on
            raw = b"[a line longer than the log limit was left out]\n"
        if not raw:
            break
        line = raw.decode(errors="replace").rstrip()
        if not line:
            continue
        continues = line[:1].isspace()
        closes_traceback = bool(pending) and pending[0].startswith("Traceback") and pending[-1][:1].isspace()
        if pending and (continues or closes_traceback):
            pending.append(line)
            if closes_traceback and not continues:
                yield "\n".join(pending)
                pending = []
            continue
        if pending:
            yield "\n".join(pending)
        pending = [line]
    if pending:
        yield "\n".join(pending)


async def query(
    bus: Bus, group: str, deployment_id: str, start: datetime, end: datetime, top: int, order: Order,
) -> list[DeploymentLog]:
    """The deployment's log records between ``start`` and ``end``, oldest first (``asc``) or newest first.

    An ephemeral consumer starts at ``start`` on the group's log subject and reads what the stream
    holds up to ``end``, then stops: it never waits for lines yet to come, and gives up after
    QUERY_DEADLINE_S with what it has. The subject carries the group, not the deployment, so
    other deployments' lines are read and skipped.
    """
    subject = subject_for(DeploymentLog.event_type, group)
    config = ConsumerConfig(
        deliver_policy=DeliverPolicy.BY_START_TIME, opt_start_time=start, ack_policy=AckPolicy.NONE,
        filter_subject=subject, mem_storage=True, inactive_threshold=30.0,
    )
    subscription = await bus.js.pull_subscribe(subject, stream=LOGS_STREAM, config=config)
    # asc keeps the first `top`, desc the last `top`.
    kept: deque[DeploymentLog] = deque(maxlen=None if order == "asc" else top)
    info = await subscription.consumer_info()
    try:
        pending = info.num_pending or 0
        deadline = time.monotonic() + QUERY_DEADLINE_S
        while pending > 0 and time.monotonic() < deadline:
            try:
                messages = await subscription.fetch(batch=min(pending, FETCH_BATCH), timeout=1.0)
            except (TimeoutError, NatsTimeout):
                continue
            for message in messages:
                pending = message.metadata.num_pending
                if message.metadata.timestamp > end:
                    pending = 0  # the stream is in publishing order: everything after is later
                    break
                record = _record(message.headers, message.data)
                if record is None or record.id != deployment_id or not start <= record.timestamp <= end:
                    continue
                kept.append(record)
                if order == "asc" and len(kept) >= top:
                    pending = 0
                    break
    finally:
        with contextlib.suppress(Exception):
            await subscription.unsubscribe()
        with contextlib.suppress(Exception):
            await bus.js.delete_consumer(LOGS_STREAM, info.name)
    records = sorted(kept, key=lambda r: r.timestamp)
    return records if order == "asc" else records[::-1]


def _record(headers: dict[str, str] | None, body: bytes) -> DeploymentLog | None:
    try:
        data = parse_data(from_nats(headers, body))
    except MalformedEvent as error:  # someone published junk on the log subject: skip it, say so
        log.warning("skipped a malformed log record: %s", error)
        return None
    return data if isinstance(data, DeploymentLog) else None


@dataclass(frozen=True)
class Update:
    """One thing that happened to a followed deployment: its event type, its CloudEvent id (None for
    the current status a follow starts with, which is read from the store, not an event) and data."""

    type: str
    id: str | None
    data: EventData


async def follow(bus: Bus, store: Store, group: str, deployment_id: str) -> AsyncGenerator[Update, None]:
    """The deployment's status and log events as they happen, starting with its current status; it
    ends when the deployment is deleted (at once when there is no such deployment)."""
    queue: asyncio.Queue[Update] = asyncio.Queue(maxsize=FOLLOW_BACKLOG)

    async def arrived(message: Any) -> None:
        try:
            event = from_nats(message.headers, message.data)
            data = parse_data(event)
        except MalformedEvent:
            return
        if getattr(data, "id", None) != deployment_id:
            return
        if queue.full():  # a follower that does not read: drop its oldest rather than grow without bound
            queue.get_nowait()
        queue.put_nowait(Update(str(event["type"]), str(event["id"]), data))

    subscriptions = [
        await bus.nc.subscribe(subject_for(event_type, group), cb=arrived)
        for event_type in (DeploymentStatus.event_type, DeploymentLog.event_type)
    ]
    try:
        # Subscribed before reading the record: a change in between is seen at least once.
        current = await store.deployments.get(group, deployment_id)
        if current is None:
            return
        yield Update(DeploymentStatus.event_type, None, current.status_event())
        while True:
            update = await queue.get()
            yield update
            if isinstance(update.data, DeploymentStatus) and update.data.target_status == "DELETED":
                return
    finally:
        # A follower that leaves (an HTTP client) is cancelled: shield the unsubscribe.
        with anyio.CancelScope(shield=True):
            for subscription in subscriptions:
                with contextlib.suppress(Exception):
                    await subscription.unsubscribe()
