"""Delivery of the platform's announcements to webhook subscribers.

``Dispatcher`` reads the status, log and configuration events of the platform from JetStream
through durable consumers (``zeroserve.core.consumer``) and delivers each to the subscriptions of its
resource group as a structured CloudEvent, signed (``zeroserve.webhooks.signatures``), over
connections only to allowed addresses (``zeroserve.webhooks.targets``), with retries and back-off,
one subscription never waiting for another. A message is acked only when every delivery of it has
succeeded or given up, so a crash redelivers it; the ``webhook-id`` of a delivery is derived from
the event and the subscription, so a receiver can drop the repeat.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import logging
import time
from datetime import timedelta

import httpx
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.api import DeliverPolicy

from zeroserve.core import metrics
from zeroserve.core.binding import STRUCTURED, from_nats, to_structured
from zeroserve.core.bus import EVENTS_STREAM, LOGS_STREAM
from zeroserve.core.consumer import Consumer, backoff, heartbeat
from zeroserve.core.store import Subscription
from zeroserve.errors import MalformedEvent
from zeroserve.events import OUT_TYPES, DeploymentLog, content_id, group_of
from zeroserve.platform import Platform
from zeroserve.webhooks.deliveries import DeliveryLog
from zeroserve.webhooks.signatures import sign
from zeroserve.webhooks.targets import DeliveryTransport, ForbiddenTarget

log = logging.getLogger(__name__)

# Durable consumer names: one per stream, shared by every watcher replica of a cluster.
EVENTS_DURABLE = "webhooks-out"
LOGS_DURABLE = "webhooks-out-logs"
# Messages being delivered at once. A dead URL keeps each of its messages for the whole retry
# schedule (minutes), so this is large: the others must keep flowing past it meanwhile.
MAX_INFLIGHT = 10_000
# The gateway's clock and the NATS server's may differ a little; an event stamped just before a
# subscription was made is still one its creator expects to see.
CLOCK_LEEWAY = timedelta(seconds=2)


# Set while a delivery is sent: httpx's own log line of that request is left out (see _QuietDeliveries).
_delivering: contextvars.ContextVar[bool] = contextvars.ContextVar("zeroserve_webhook_delivering", default=False)


class _QuietDeliveries(logging.Filter):
    """Drops httpx's "HTTP Request: POST <url> ..." line of a delivery: a receiver's URL is often its
    secret (a token in the query, or in the path as chat services issue them). The dispatcher logs the
    outcome itself, naming the subscription."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not _delivering.get()


# Installed once, on import: it drops only lines logged while a delivery is sent (``_delivering``).
logging.getLogger("httpx").addFilter(_QuietDeliveries())


def delivery_id(event_id: str, subscription_id: str) -> str:
    """The ``webhook-id`` of one event's delivery to one subscription: the same on every attempt."""
    # One part, joined with NUL as ever: the ids of deliveries made before stay the same.
    return "msg_" + content_id(f"{event_id}\0{subscription_id}", length=32)


class Subscriptions:
    """Every subscription, by group, read again only when the bucket has changed since the last read."""

    def __init__(self, platform: Platform) -> None:
        self.registry = platform.store.subscriptions
        # As of the latest refresh; refreshes only ever replace it with a newer read.
        self.by_group: dict[str, list[Subscription]] = {}
        self._sequence = -1
        self._lock = asyncio.Lock()

    def exists(self, group: str, subscription_id: str) -> bool:
        return any(subscription.id == subscription_id for subscription in self.by_group.get(group, []))

    async def refresh(self) -> None:
        # Done after each fetch returns, so a subscription written before its first event was published
        # is always seen; checking the bucket's last sequence is one request, a full read is many.
        async with self._lock:
            status = await self.registry.kv.status()
            sequence = status.stream_info.state.last_seq
            if sequence != self._sequence:
                by_group: dict[str, list[Subscription]] = {}
                for subscription in await self.registry.list():
                    by_group.setdefault(subscription.group, []).append(subscription)
                self.by_group, self._sequence = by_group, sequence


class Dispatcher:
    """Delivers the platform's announcements to the subscriptions of their group, until cancelled."""

    def __init__(self, platform: Platform, client: httpx.AsyncClient | None = None) -> None:
        self.platform = platform
        self.settings = platform.settings
        self.subscriptions = Subscriptions(platform)
        self._client = client
        self._consumer = Consumer("webhooks out", lambda inflight: MAX_INFLIGHT - inflight)
        self.log = DeliveryLog(platform.store.deliveries, self.subscriptions.exists)
        # Counted here too (cheaply) for whoever holds the dispatcher; Prometheus has them by subscription.
        self.delivered = 0
        self.failed = 0

    async def run(self) -> None:
        client = self._client or httpx.AsyncClient(
            trust_env=False, follow_redirects=False, timeout=self.settings.webhook_delivery_timeout_s,
            # In a thread: its TLS context reads the CA bundle (tens of ms).
            transport=await asyncio.to_thread(DeliveryTransport, self.settings.webhook_allowed_networks,
                                              httpx.Limits(max_connections=None, max_keepalive_connections=32)),
        )
        try:
            self._client = client
            pulls = [
                (EVENTS_DURABLE, await self._subscribe(EVENTS_STREAM, EVENTS_DURABLE,
                                                       [t for t in OUT_TYPES if t != DeploymentLog.event_type])),
                (LOGS_DURABLE, await self._subscribe(LOGS_STREAM, LOGS_DURABLE, [DeploymentLog.event_type])),
            ]
            log.info("webhooks out: delivering %s", ", ".join(OUT_TYPES))
            recording = asyncio.create_task(self.log.run())
            try:
                await asyncio.gather(*(self._consumer.pull(pull, self._dispatch, label=durable,
                                                           before=self.subscriptions.refresh)
                                       for durable, pull in pulls))
            finally:
                recording.cancel()
                await asyncio.gather(recording, return_exceptions=True)
        finally:
            await self._consumer.cancel()  # _dispatch hands the message back: redelivered at the next start
            await client.aclose()

    async def _subscribe(self, stream: str, durable: str, event_types: list[str]) -> JetStreamContext.PullSubscription:
        while True:
            try:
                # A dispatcher that starts for the first time on an old stream must not send its history;
                # every message is acked once its deliveries have succeeded or given up.
                return await self.platform.bus.consumer(durable, event_types, stream=stream,
                                                        deliver=DeliverPolicy.NEW, max_ack_pending=MAX_INFLIGHT)
            except asyncio.CancelledError:
                raise
            except Exception as error:  # NATS not reachable yet: the gateway serves meanwhile
                log.warning("webhooks out: cannot create consumer %s on %s yet: %s", durable, stream, error)
                await asyncio.sleep(1.0)

    async def _dispatch(self, msg: Msg) -> None:
        subscriptions = self.subscriptions.by_group  # as read after this message was fetched, or later
        try:
            group = group_of(msg.subject)
            # A group without subscriptions (most, in a fleet's burst of status events): nothing to read.
            if subscriptions.get(group):
                async with heartbeat(msg, every=self.settings.ack_wait_s / 3):
                    event = from_nats(msg.headers, msg.data)
                    published = msg.metadata.timestamp
                    targets = [
                        subscription for subscription in subscriptions[group]
                        if event["type"] in subscription.event_types
                        and (published is None or subscription.created_at - CLOCK_LEEWAY <= published)
                    ]
                    if targets:
                        body = to_structured(event)
                        await asyncio.gather(*(self._deliver(s, str(event["id"]), str(event["type"]), body)
                                               for s in targets))
        except asyncio.CancelledError:
            with contextlib.suppress(Exception):
                await msg.nak()
            raise
        except MalformedEvent as error:  # no subscriber could make sense of it either
            log.warning("webhooks out: not delivering %s: %s", msg.subject, error)
        with contextlib.suppress(Exception):
            await msg.ack()

    async def _deliver(self, subscription: Subscription, event_id: str, event_type: str, body: bytes) -> None:
        """Deliver until the receiver answers 2xx or the attempts run out; never raises."""
        assert self._client is not None
        settings = self.settings
        webhook_id = delivery_id(event_id, subscription.id)
        problem = "no attempt made"
        status: int | None = None
        attempts = max(1, settings.webhook_delivery_attempts)
        started = time.monotonic()

        def noted(delivered: bool, error: str | None, attempt: int) -> None:
            self.log.note(subscription.group, subscription.id, event_id=event_id, event_type=event_type,
                          delivered=delivered, status=status, error=error, attempts=attempt, started=started,
                          ended=time.monotonic())
        _delivering.set(True)  # this task's own context: httpx's line of these requests is left out
        for attempt in range(1, attempts + 1):
            timestamp = int(time.time())
            headers = {
                "Content-Type": STRUCTURED,
                "webhook-id": webhook_id,
                "webhook-timestamp": str(timestamp),
                "webhook-signature": sign(subscription.secret, webhook_id, timestamp, body),
            }
            try:
                response = await self._client.post(subscription.url, content=body, headers=headers)
            except ForbiddenTarget as refused:  # no connection was made; trying again would not change that
                problem = f"{refused.reason}: {refused.message}"
                attempts = attempt
                break
            except httpx.HTTPError as error:
                problem = f"{type(error).__name__}: {error}" if str(error) else type(error).__name__
                status = None
            else:
                status = response.status_code
                if response.is_success:
                    noted(True, None, attempt)
                    self.delivered += 1
                    metrics.webhook_deliveries.labels(subscription.group, subscription.id, "delivered").inc()
                    log.debug("webhooks out: delivered event %s to subscription %s (HTTP %d)",
                              event_id, subscription.id, response.status_code)
                    return
                problem = f"HTTP {response.status_code}"
            if attempt < attempts:
                metrics.webhook_deliveries.labels(subscription.group, subscription.id, "retried").inc()
                delay = backoff(settings.webhook_delivery_backoff_s, attempt)
                log.info("webhooks out: delivery %s of event %s to subscription %s failed (attempt %d, "
                         "retry in %.1f s): %s", webhook_id, event_id, subscription.id, attempt, delay, problem)
                await asyncio.sleep(delay)
        self.failed += 1
        noted(False, problem, attempts)
        metrics.webhook_deliveries.labels(subscription.group, subscription.id, "failed").inc()
        # The URL may carry a token of the receiver's and the secret is never logged: the id says which.
        log.warning("webhooks out: gave up delivering event %s to subscription %s of group %s after %d "
                    "attempts: %s", event_id, subscription.id, subscription.group, attempts, problem)
