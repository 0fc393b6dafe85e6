"""A deployment's (or a whole group's) live events, resumable: each carries its ``Position`` in the streams they
are kept in, and a follower that gives one back (SSE's ``Last-Event-ID``) is handed every event after it,
replayed from JetStream, then the live ones, none twice and none missed.

Status events are kept in the events stream and log records in the logs stream, each with its own sequence
numbers, so a position is the pair (``<events seq>.<logs seq>``): the last of each stream handed on. Each
stream is read by an ordered consumer from just after its number, filtered to the group's subject of that
event type; what belongs to other deployments of the group is read and skipped.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
from collections.abc import AsyncGenerator
from dataclasses import dataclass
from typing import Any

import anyio
from cloudevents.http import CloudEvent
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy

from zeroserve.core.binding import from_nats
from zeroserve.core.bus import EVENTS_STREAM, LOGS_STREAM, Bus
from zeroserve.core.store import Store
from zeroserve.deployments.logs import FOLLOW_BACKLOG, Update
from zeroserve.errors import MalformedEvent
from zeroserve.events import DeploymentLog, DeploymentStatus, parse_data, subject_for

POSITION_PATTERN = r"^[0-9]{1,19}\.[0-9]{1,19}$"
_POSITION = re.compile(POSITION_PATTERN)
# Which stream keeps which event type: the order of a position's numbers.
_STREAMS = ((EVENTS_STREAM, DeploymentStatus.event_type), (LOGS_STREAM, DeploymentLog.event_type))


def is_position(text: str | None) -> bool:
    """Whether ``text`` is a position of these streams (what SSE's ``id:`` carried)."""
    return text is not None and bool(_POSITION.match(text))


@dataclass(frozen=True)
class Position:
    """The last sequence handed on of the events stream and of the logs stream."""

    events: int
    logs: int

    @classmethod
    def parse(cls, text: str) -> Position:
        if not _POSITION.match(text):
            raise ValueError(f"{text[:40]!r} is not a position of this stream (<number>.<number>)")
        events, logs = text.split(".")
        return cls(int(events), int(logs))

    def __str__(self) -> str:
        return f"{self.events}.{self.logs}"

    def after(self, stream: int, sequence: int) -> Position:
        return Position(sequence, self.logs) if stream == 0 else Position(self.events, sequence)


async def now(bus: Bus) -> Position:
    """Where both streams end now: following from here hands on only what happens next."""
    events, logs = [(await bus.js.stream_info(name)).state.last_seq for name, _ in _STREAMS]
    return Position(events, logs)


async def follow(
    bus: Bus, store: Store, group: str, deployment_id: str, since: Position | None = None,
) -> AsyncGenerator[tuple[Update, Position], None]:
    """(update, position) for the deployment's status and log events after ``since``; without it, its
    current status first, then what happens next. It ends when the deployment is deleted."""
    start = since or await now(bus)
    queue: asyncio.Queue[tuple[int, int, Update]] = asyncio.Queue(maxsize=FOLLOW_BACKLOG)

    def arrived(stream: int) -> Any:
        async def handle(message: Any) -> None:
            update = None
            with contextlib.suppress(MalformedEvent):
                event = from_nats(message.headers, message.data)
                data = parse_data(event)
                if getattr(data, "id", None) == deployment_id:
                    update = Update(str(event["type"]), None, data)
            # Every message moves the position, even another deployment's: nothing before it is left to hand on.
            await queue.put((stream, message.metadata.sequence.stream, update))  # type: ignore[arg-type]
        return handle

    subscriptions = []
    for index, (stream_name, event_type) in enumerate(_STREAMS):
        first = (start.events, start.logs)[index] + 1
        config = ConsumerConfig(deliver_policy=DeliverPolicy.BY_START_SEQUENCE, opt_start_seq=first,
                                ack_policy=AckPolicy.NONE, mem_storage=True)
        subscriptions.append(await bus.js.subscribe(subject_for(event_type, group), stream=stream_name, config=config,
                                                    ordered_consumer=True, cb=arrived(index)))
    position = start
    try:
        if since is None:  # subscribed before reading the record: a change in between is handed on too
            current = await store.deployments.get(group, deployment_id)
            if current is None:
                return
            yield Update(DeploymentStatus.event_type, None, current.status_event()), position
        while True:
            stream, sequence, update = await queue.get()
            position = position.after(stream, sequence)
            if update is None:
                continue
            yield update, position
            if isinstance(update.data, DeploymentStatus) and update.data.target_status == "DELETED":
                return
    finally:
        # A follower that leaves (an HTTP client) is cancelled: shield the unsubscribe.
        with anyio.CancelScope(shield=True):
            for subscription in subscriptions:
                with contextlib.suppress(Exception):
                    await subscription.unsubscribe()


async def follow_group(
    bus: Bus, group: str, types: frozenset[str] | None, since: Position,
) -> AsyncGenerator[tuple[CloudEvent, Position], None]:
    """(event, position) for every event of ``group`` after ``since`` (``now``: from now on), of ``types``
    when given. Everything the events stream keeps for the group is followed; the deployment logs, from the
    logs stream, only when ``types`` names them. The filter is the group's own subjects (``zeroserve.<group>.>``),
    so another group's events are never read."""
    start = since
    queue: asyncio.Queue[tuple[int, int, CloudEvent | None]] = asyncio.Queue(maxsize=FOLLOW_BACKLOG)

    def arrived(stream: int) -> Any:
        async def handle(message: Any) -> None:
            event = None
            with contextlib.suppress(MalformedEvent):
                event = from_nats(message.headers, message.data)
                if types is not None and event["type"] not in types:
                    event = None
            await queue.put((stream, message.metadata.sequence.stream, event))
        return handle

    wanted = [(0, EVENTS_STREAM, f"zeroserve.{group}.>")]
    if types is not None and DeploymentLog.event_type in types:
        wanted.append((1, LOGS_STREAM, subject_for(DeploymentLog.event_type, group)))
    subscriptions = []
    try:
        for index, stream_name, subject in wanted:
            config = ConsumerConfig(deliver_policy=DeliverPolicy.BY_START_SEQUENCE,
                                    opt_start_seq=(start.events, start.logs)[index] + 1,
                                    ack_policy=AckPolicy.NONE, mem_storage=True)
            subscriptions.append(await bus.js.subscribe(subject, stream=stream_name, config=config,
                                                        ordered_consumer=True, cb=arrived(index)))
        position = start
        while True:
            stream, sequence, event = await queue.get()
            position = position.after(stream, sequence)
            if event is not None:
                yield event, position
    finally:
        with anyio.CancelScope(shield=True):
            for subscription in subscriptions:
                with contextlib.suppress(Exception):
                    await subscription.unsubscribe()
