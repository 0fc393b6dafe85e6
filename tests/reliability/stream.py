"""What a user of the bus does and sees, for the fault tests: publish at least once, read what
was announced, find what is left unhandled or dead-lettered."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable

import nats
from nats.js import JetStreamContext

from zeroserve.core.binding import to_nats
from zeroserve.core.bus import EVENTS_STREAM, servers
from zeroserve.core.dead_letters import DEADLETTER_STREAM
from zeroserve.events import DeploymentStatus, EventData, Status, new_event, subject_for


class Publisher:
    """An at-least-once publisher: each event is sent until JetStream acknowledges it, across crashes,
    always under its own id (so a repeat of one that did arrive is dropped as a duplicate)."""

    def __init__(self, url: Callable[[], str | None]) -> None:
        self.url = url  # where NATS is now (None: down); a cluster's servers comma-separated
        self.nc: nats.NATS | None = None
        self.sent = 0
        self.resent = 0

    async def publish(self, group: str, data: EventData, timeout: float = 60) -> None:
        """Sent, or the test fails after ``timeout`` seconds without JetStream's acknowledgement."""
        event = new_event(data, source="/tests/reliability")
        headers, body = to_nats(event)
        headers["Nats-Msg-Id"] = event["id"]
        deadline = time.monotonic() + timeout
        attempt = 0
        failure: Exception | None = None
        while True:
            if time.monotonic() > deadline:
                raise AssertionError(f"JetStream did not acknowledge {event['type']} {getattr(data, 'id', '')} "
                                     f"within {timeout} s ({attempt} attempts; the last: {failure!r})")
            attempt += 1
            try:
                if self.nc is None:
                    url = self.url()
                    if url is None:
                        raise ConnectionError("NATS is down")
                    self.nc = await nats.connect(servers(url), allow_reconnect=False, connect_timeout=1)
                await self.nc.jetstream().publish(subject_for(event["type"], group), body, headers=headers,
                                                  timeout=2)
                break
            except Exception as error:
                failure = error
                if self.nc is not None:
                    await self.nc.close()
                    self.nc = None
                await asyncio.sleep(0.2)
        self.sent += 1
        self.resent += attempt > 1

    async def close(self) -> None:
        if self.nc is not None:
            await self.nc.close()


async def status_history(js: JetStreamContext, group: str = "default") -> dict[str, list[Status]]:
    """Every deployment.status announced in ``group``, deployment by deployment, in stream order."""
    statuses = await js.subscribe(subject_for(DeploymentStatus.event_type, group), stream=EVENTS_STREAM,
                                  ordered_consumer=True)
    history: dict[str, list[Status]] = {}
    try:
        while True:
            try:
                msg = await statuses.next_msg(1)
            except nats.errors.TimeoutError:
                return history
            status = json.loads(msg.data)
            history.setdefault(status["id"], []).append(Status(status["status"]))
    finally:
        await statuses.unsubscribe()


async def unhandled(js: JetStreamContext) -> dict[str, tuple[int, int]]:
    """Consumers of the events stream (functions, webhooks out) with events (pending, unacknowledged)."""
    return {c.name: (c.num_pending, c.num_ack_pending) for c in await js.consumers_info(EVENTS_STREAM)
            if c.num_pending or c.num_ack_pending}


async def dead_letters(js: JetStreamContext) -> list[dict[str, str]]:
    """The headers (reason, function, subject) of every dead letter."""
    count = (await js.stream_info(DEADLETTER_STREAM)).state.messages
    if not count:
        return []
    letters = await js.subscribe(">", stream=DEADLETTER_STREAM, ordered_consumer=True)
    try:
        return [dict((await letters.next_msg(5)).headers or {}) for _ in range(count)]
    finally:
        await letters.unsubscribe()
