"""JetStream as zeroserve's event bus.

Three streams: events (what functions react to and what they announce), logs (deployment log
records, kept within an age and a size limit so they outlive replicas but not the disk), and dead
letters (events a function gave up on, with the reason in headers). Every publish carries the
CloudEvent id as ``Nats-Msg-Id``, so JetStream drops a duplicate inside the dedupe window and one
event has one effect. Each function (and the webhook dispatcher) reads through its own durable
pull consumer with explicit acks, read by ``zeroserve.core.consumer``; the reader owns retries.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Iterator
from dataclasses import dataclass

import nats
from cloudevents.http import CloudEvent
from nats.aio.client import Client as NATS
from nats.errors import AuthorizationError
from nats.errors import TimeoutError as NatsTimeout
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy, StorageType, StreamConfig
from nats.js.errors import APIError, NotFoundError, ServiceUnavailableError
from prometheus_client import Counter

from zeroserve.core import metrics, tracing
from zeroserve.core.binding import from_nats, to_nats
from zeroserve.core.dead_letters import DEADLETTER_STREAM
from zeroserve.core.nats_auth import connect_options
from zeroserve.errors import ZeroserveError
from zeroserve.events import EVENT_TYPES, DeploymentLog, deadletter_subject, subject_for
from zeroserve.redaction import redact
from zeroserve.settings import Settings

log = logging.getLogger(__name__)

EVENTS_STREAM = "ZEROSERVE_EVENTS"
LOGS_STREAM = "ZEROSERVE_LOGS"
# JetStream's "system temporarily unavailable": a cluster electing its meta leader.
JETSTREAM_UNAVAILABLE_FOR_NOW = 10008
# How long a start that raised a stream's replicas waits for the new copies to catch up with its messages.
REPLICAS_CURRENT_S = 30.0


def servers(url: str) -> list[str]:
    """The NATS servers of ``ZEROSERVE_NATS_URL``: one URL, or a cluster's comma-separated."""
    return [server.strip() for server in url.split(",") if server.strip()]


def event_subjects(group: str = "*") -> list[str]:
    """The subjects of the events stream: every catalogued type except logs, which have their own."""
    return [subject_for(t, group) for t in EVENT_TYPES if t != DeploymentLog.event_type]


@dataclass(frozen=True)
class Published:
    sequence: int
    duplicate: bool


class Bus:
    """A NATS connection with zeroserve's streams on it."""

    def __init__(self, nc: NATS, settings: Settings) -> None:
        self.nc = nc
        self.js: JetStreamContext = nc.jetstream()
        self.settings = settings
        self.closing = False
        # The last permissions violation NATS reported for this connection (a role's user asking what it may not).
        self.denied: str | None = None
        # The counter of published events of each type, looked up once per type, not once per event.
        self._published: dict[str, Counter] = {}

    @classmethod
    async def connect(cls, url: str, settings: Settings) -> Bus:
        bus: Bus | None = None

        async def disconnected() -> None:
            if bus is None or not bus.closing:  # nats-py says so on close() too
                log.warning("NATS disconnected: reconnecting (events wait in JetStream meanwhile)")

        # NATS not up yet is waited for (on a cluster zeroserve may start first); NATS refusing the
        # credentials is not: nats-py would try them again forever, so the first refusal ends the start.
        refused: asyncio.Future[Exception] = asyncio.get_running_loop().create_future()

        async def error(problem: Exception) -> None:
            # At connect nats-py reports the server's refusal as a plain Error with its text.
            denied = isinstance(problem, AuthorizationError) or "authorization violation" in str(problem).lower()
            if bus is None and denied and not refused.done():
                refused.set_result(problem)
            if bus is not None and "permissions violation" in str(problem).lower():
                bus.denied = str(problem)
            await _connection_error(problem)

        # With a cluster's servers nats-py holds them all (and those the cluster tells it of) and
        # reconnects to another when the one it uses goes.
        connecting = asyncio.ensure_future(nats.connect(
            servers(url), name="zeroserve", max_reconnect_attempts=-1, reconnect_time_wait=0.5, error_cb=error,
            disconnected_cb=disconnected, reconnected_cb=_reconnected, **connect_options(url, settings)))
        await asyncio.wait([connecting, refused], return_when=asyncio.FIRST_COMPLETED)  # type: ignore[type-var]
        if not connecting.done():
            connecting.cancel()
            await asyncio.gather(connecting, return_exceptions=True)
            raise ZeroserveError(f"NATS at {redact(url)} refused zeroserve: {refused.result()}", reason="NatsRefused")
        nc = connecting.result()
        bus = cls(nc, settings)
        await bus.wait_for_jetstream()
        await bus.ensure_streams()
        return bus

    async def wait_for_jetstream(self) -> None:
        """Return once JetStream answers. A NATS cluster's JetStream answers once a majority of its servers
        run and have elected a meta leader; zeroserve may start before that (on Kubernetes the pods of the
        ha overlay start together), as it may start before NATS is up at all."""
        said = False
        probe = self.nc.jetstream(timeout=1)
        while True:
            try:
                await probe.account_info()
                return
            except (NatsTimeout, ServiceUnavailableError) as error:
                # 503 without a code: no JetStream on this server at all, which waiting does not change.
                if isinstance(error, ServiceUnavailableError) and error.err_code != JETSTREAM_UNAVAILABLE_FOR_NOW:
                    raise
                # Nor does a NATS user that may not ask (its answer would never come).
                if self.denied is not None and "$JS.API.INFO" in self.denied:
                    raise ZeroserveError(f"NATS refuses this user JetStream's account info: {self.denied}",
                                         reason="NatsRefused") from None
                if not said:
                    log.warning("JetStream does not answer yet (a NATS cluster without a majority up?): waiting")
                    said = True
                await asyncio.sleep(0.2)

    async def close(self) -> None:
        # Callers have stopped their consumers and flushed their logs: close, no drain needed.
        self.closing = True
        if not self.nc.is_closed:
            await self.nc.close()

    async def ensure_streams(self) -> None:
        window = self.settings.dedupe_window_s
        replicas = self.settings.nats_replicas
        # Side by side: new copies of each (replicas raised) catch up at the same time.
        await asyncio.gather(
            self._ensure(StreamConfig(
                name=EVENTS_STREAM, subjects=event_subjects(), storage=StorageType.FILE, duplicate_window=window,
                num_replicas=replicas,
            )),
            self._ensure(StreamConfig(
                name=LOGS_STREAM, subjects=[subject_for(DeploymentLog.event_type, "*")], storage=StorageType.FILE,
                duplicate_window=window, max_age=self.settings.log_max_age_s, max_bytes=self.settings.log_max_bytes,
                num_replicas=replicas,
            )),
            self._ensure(StreamConfig(
                name=DEADLETTER_STREAM, subjects=[deadletter_subject("*", "*")], storage=StorageType.FILE,
                duplicate_window=window, num_replicas=replicas,
            )))

    async def _ensure(self, config: StreamConfig) -> None:
        with stream_refusal(config.name or "", config.num_replicas or 1):
            try:
                info = await self.js.stream_info(config.name)  # type: ignore[arg-type]
            except NotFoundError:
                await self.js.add_stream(config)
                return
            # Limits, and the number of replicas, may have changed in settings since the stream was
            # made: JetStream adds (or removes) copies of a stream in place, keeping its messages.
            await self.js.update_stream(config)
        if (config.num_replicas or 1) > (info.config.num_replicas or 1):
            await replicas_current(self.js, config.name or "", config.num_replicas or 1)

    async def publish(self, event: CloudEvent, group: str) -> Published:
        subject = subject_for(event["type"], group)
        # With tracing on and a span current, the event carries its trace context (core/tracing.py).
        with tracing.publishing(event, subject):
            headers, body = to_nats(event)
            headers["Nats-Msg-Id"] = event["id"]
            ack = await self.js.publish(subject, body, headers=headers)
        published = self._published.get(event["type"])
        if published is None:
            published = self._published[event["type"]] = metrics.events_published.labels(event["type"])
        published.inc()
        return Published(sequence=ack.seq, duplicate=bool(ack.duplicate))

    async def consumer(
        self, name: str, event_types: list[str], *, stream: str = EVENTS_STREAM,
        deliver: DeliverPolicy = DeliverPolicy.ALL, max_ack_pending: int | None = None,
    ) -> JetStreamContext.PullSubscription:
        """A durable pull consumer (of a function, of the webhook dispatcher): it survives restarts and
        resumes where it was; ``deliver`` says where a new one starts."""
        config = ConsumerConfig(
            durable_name=name,
            ack_policy=AckPolicy.EXPLICIT,
            ack_wait=self.settings.ack_wait_s,
            deliver_policy=deliver,
            filter_subjects=[subject_for(t, "*") for t in event_types],
            # The reader counts deliveries and gives up itself (a dead letter, a failed delivery);
            # the server must not drop first.
            max_deliver=-1,
            max_ack_pending=max_ack_pending or max(1000, self.settings.runner_concurrency * 4),
        )
        # Create or update: a durable made by an older version must take today's config
        # (new event types of the function, new ack wait), which pull_subscribe alone would not do.
        await self.js.add_consumer(stream, config=config)
        return await self.js.pull_subscribe_bind(durable=name, stream=stream)

    async def unhandled_before(self, consumer: str, event_type: str, group: str, sequence: int,
                               *, limit: int = 1000) -> list[CloudEvent]:
        """The ``event_type`` events of ``group`` published before stream ``sequence`` that ``consumer``
        may have yet to handle (up to ``limit``, oldest first).

        Each function reads through its own consumer, so events of one stream reach different
        functions in no set order: a function asks this before it decides that what an earlier event
        creates is missing. The answer errs towards "unhandled": an event handled out of turn, behind
        an unhandled one, is still in it.
        """
        try:
            info = await self.js.consumer_info(EVENTS_STREAM, consumer)
        except NotFoundError:
            return []  # no such function: nothing will handle them
        # Everything up to the ack floor is handled; after it, look at each event of the type in turn.
        after = info.ack_floor.stream_seq if info.ack_floor else 0
        events: list[CloudEvent] = []
        while after + 1 < sequence and len(events) < limit:
            try:
                msg = await self.js.get_msg(EVENTS_STREAM, seq=after + 1, next=True,
                                            subject=subject_for(event_type, group))
            except NotFoundError:
                break
            if msg.seq is None or msg.seq >= sequence:
                break
            after = msg.seq
            with contextlib.suppress(Exception):  # a malformed one: its consumer dead-letters it
                events.append(from_nats(msg.headers or {}, msg.data or b""))
        return events


async def replicas_current(js: JetStreamContext, stream: str, replicas: int,
                           timeout: float = REPLICAS_CURRENT_S) -> bool:
    """Wait until ``stream``'s ``replicas`` copies all hold its messages; False (and a warning) after ``timeout``.

    A stream whose replicas were just raised has its new copies empty until they catch up: should its
    leader's node go before then, the others elect no new leader (each lacks messages) and the stream
    takes nothing until that node returns. So a start that raised them returns only once they caught up.
    """
    deadline = time.monotonic() + timeout
    peers: object = None
    while True:
        with contextlib.suppress(NatsTimeout, APIError):  # a leader being elected: ask again
            cluster = (await js.stream_info(stream)).cluster
            peers = None if cluster is None else [(p.name, p.current, p.offline) for p in cluster.replicas or []]
            if cluster is not None and cluster.leader and len(cluster.replicas or []) >= replicas - 1 and all(
                    p.current and not p.offline for p in cluster.replicas or []):
                return True
        if time.monotonic() > deadline:
            log.warning("stream %s: its %d replicas did not all catch up within %.0f s (copies: %s); going on, "
                        "with fewer copies of its messages until they do", stream, replicas, timeout, peers)
            return False
        await asyncio.sleep(0.1)


@contextlib.contextmanager
def stream_refusal(stream: str, replicas: int) -> Iterator[None]:
    """NATS refusing a stream (or a KV bucket's) as configured, said as a ZeroserveError: most often
    ``ZEROSERVE_NATS_REPLICAS`` above 1 against a server that is no cluster, or above its size."""
    try:
        yield
    except APIError as error:
        raise ZeroserveError(
            f"NATS refused stream {stream} with {replicas} replica(s): {error.description} (code {error.err_code}); "
            "ZEROSERVE_NATS_REPLICAS must be 1 on a single server and at most the cluster's size",
            reason="NatsStreamRefused") from error


# nats-py logs each connection error with its traceback unless told otherwise; while NATS is away
# (a restart) that is a traceback every half second. One line each says what happens (and
# ``disconnected`` in Bus.connect).
async def _connection_error(error: Exception) -> None:
    log.warning("NATS connection: %s", str(error) or type(error).__name__)


async def _reconnected() -> None:
    log.warning("NATS reconnected")
