"""Webhooks, signed the Standard Webhooks way: the signatures, and the delivery of events to subscribers.

Both directions use the same scheme (https://www.standardwebhooks.com): an HMAC-SHA256 over
``<webhook-id>.<webhook-timestamp>.<body>``, sent as ``webhook-signature: v1,<base64>``, with a
secret written ``whsec_<base64>``. ``sign`` and ``verify`` wrap the reference library for the
inbound routes (``gateway/webhooks.py``); ``Dispatcher`` is the outbound side: it reads the
announcements of the platform (status, log and configuration events) from JetStream through
durable consumers and delivers each to the subscriptions of its resource group as a structured
CloudEvent, with retries and back-off, one subscription never waiting for another. A message is
acked only when every delivery of it has succeeded or given up, so a crash redelivers it; the
``webhook-id`` of a delivery is derived from the event and the subscription, so a receiver can
drop the repeat.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import hashlib
import hmac
import json
import logging
import secrets
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
from cloudevents.http import CloudEvent
from nats.aio.msg import Msg
from nats.errors import TimeoutError as NatsTimeout
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy
from prometheus_client import Counter
from standardwebhooks import Webhook

from zeroserve.bus import EVENTS_STREAM, LOGS_STREAM, heartbeat
from zeroserve.errors import MalformedEvent, ZeroserveError
from zeroserve.events import (
    OUT_TYPES,
    DeploymentLog,
    from_nats,
    group_of,
    subject_for,
)
from zeroserve.platform import Platform
from zeroserve.store import Subscription

log = logging.getLogger(__name__)

SECRET_PREFIX = "whsec_"
STRUCTURED = "application/cloudevents+json"
# Durable consumer names: one per stream, shared by every gateway of a cluster.
EVENTS_DURABLE = "webhooks-out"
LOGS_DURABLE = "webhooks-out-logs"
# Messages being delivered at once, per stream. A dead URL keeps each of its messages for the whole
# retry schedule (minutes), so this is large: the others must keep flowing past it meanwhile.
MAX_INFLIGHT = 10_000
FETCH_WAIT_S = 1.0
# The gateway's clock and the NATS server's may differ a little; an event stamped just before a
# subscription was made is still one its creator expects to see.
CLOCK_LEEWAY = timedelta(seconds=2)

deliveries = Counter(
    "zeroserve_webhook_deliveries", "Outbound webhook deliveries, by outcome (delivered, failed = gave up)",
    ["group", "subscription", "outcome"],
)


class InvalidSignature(ZeroserveError):
    reason = "InvalidSignature"


def new_secret() -> str:
    """A signing secret as Standard Webhooks writes it: ``whsec_`` + base64 of 32 random bytes."""
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(32)).decode()


def sign(secret: str | bytes, webhook_id: str, timestamp: int, body: bytes) -> str:
    """The ``webhook-signature`` header value for a body sent at ``timestamp`` (Unix seconds).

    ``secret`` is a ``whsec_`` string, or the raw key bytes (as MLflow uses its secret).
    """
    return Webhook(secret).sign(webhook_id, datetime.fromtimestamp(timestamp, UTC), body.decode())


def verify(
    secret: str | bytes, webhook_id: str | None, timestamp: str | None, signature: str | None, body: bytes,
    tolerance_s: float, now: float | None = None,
) -> int:
    """Check a signed webhook; returns its timestamp, raises ``InvalidSignature`` saying what is wrong.

    The library's own ``Webhook.verify`` has a fixed five-minute window, and the window here is a
    setting, so the timestamp is checked here and the library computes the expected signature.
    """
    missing = [name for name, value in (("webhook-id", webhook_id), ("webhook-timestamp", timestamp),
                                        ("webhook-signature", signature)) if not value]
    if missing:
        raise InvalidSignature(f"missing header(s): {', '.join(missing)}", reason="MissingSignature")
    assert webhook_id and timestamp and signature
    if not timestamp.isdigit():
        raise InvalidSignature(f"webhook-timestamp must be Unix seconds, not {timestamp[:40]!r}",
                               reason="InvalidTimestamp")
    sent = int(timestamp)
    skew = (time.time() if now is None else now) - sent
    if abs(skew) > tolerance_s:
        raise InvalidSignature(
            f"webhook-timestamp is {abs(skew):.0f} s in the {'past' if skew > 0 else 'future'}: "
            f"outside the {tolerance_s:.0f} s window (a replay, or a clock that is off)", reason="StaleTimestamp")
    try:
        expected = base64.b64decode(sign(secret, webhook_id, sent, body).split(",", 1)[1])
    except UnicodeDecodeError:
        raise InvalidSignature("the body is not UTF-8 text", reason="InvalidBody") from None
    for candidate in signature.split():
        version, _, encoded = candidate.partition(",")
        if version != "v1":
            continue
        try:
            given = base64.b64decode(encoded, validate=True)
        except (binascii.Error, ValueError):
            continue
        if hmac.compare_digest(given, expected):
            return sent
    raise InvalidSignature("no webhook-signature matches the body with this source's secret",
                           reason="SignatureMismatch")


def delivery_id(event_id: str, subscription_id: str) -> str:
    """The ``webhook-id`` of one event's delivery to one subscription: the same on every attempt."""
    return "msg_" + hashlib.sha256(f"{event_id}\0{subscription_id}".encode()).hexdigest()[:32]


def structured(event: CloudEvent) -> bytes:
    """The event in the CloudEvents JSON format (structured content mode)."""
    document: dict[str, Any] = {
        name: value.isoformat() if isinstance(value, datetime) else value
        for name, value in event.get_attributes().items()
    }
    data = event.get_data()
    if isinstance(data, bytes | bytearray):
        document["data_base64"] = base64.b64encode(bytes(data)).decode()
    elif data is not None:
        document["data"] = data
    return json.dumps(document, ensure_ascii=False, separators=(",", ":")).encode()


class Subscriptions:
    """Every subscription, by group, read again only when the bucket has changed since the last read."""

    def __init__(self, platform: Platform) -> None:
        self.registry = platform.store.subscriptions
        self._by_group: dict[str, list[Subscription]] = {}
        self._sequence = -1
        self._lock = asyncio.Lock()

    async def current(self) -> dict[str, list[Subscription]]:
        # Asked after a fetch returns, so a subscription written before its first event was published
        # is always seen; checking the bucket's last sequence is one request, a full read is many.
        async with self._lock:
            status = await self.registry.kv.status()
            sequence = status.stream_info.state.last_seq
            if sequence != self._sequence:
                by_group: dict[str, list[Subscription]] = {}
                for subscription in await self.registry.list():
                    by_group.setdefault(subscription.group, []).append(subscription)
                self._by_group, self._sequence = by_group, sequence
            return self._by_group


class Dispatcher:
    """Delivers the platform's announcements to the subscriptions of their group, until cancelled."""

    def __init__(self, platform: Platform, client: httpx.AsyncClient | None = None) -> None:
        self.platform = platform
        self.settings = platform.settings
        self.subscriptions = Subscriptions(platform)
        self._client = client
        self._inflight: set[asyncio.Task[None]] = set()
        self._room = asyncio.Event()
        # Counted here too (cheaply) for whoever holds the dispatcher; Prometheus has them by subscription.
        self.delivered = 0
        self.failed = 0

    async def run(self) -> None:
        client = self._client or httpx.AsyncClient(
            trust_env=False, follow_redirects=False, timeout=self.settings.webhook_delivery_timeout_s,
            limits=httpx.Limits(max_connections=None, max_keepalive_connections=32),
        )
        try:
            self._client = client
            pulls = [
                await self._consumer(EVENTS_STREAM, EVENTS_DURABLE,
                                     [t for t in OUT_TYPES if t != DeploymentLog.event_type]),
                await self._consumer(LOGS_STREAM, LOGS_DURABLE, [DeploymentLog.event_type]),
            ]
            log.info("webhooks out: delivering %s", ", ".join(OUT_TYPES))
            await asyncio.gather(*(self._pull(pull) for pull in pulls))
        finally:
            for task in list(self._inflight):
                task.cancel()  # _dispatch hands the message back: redelivered at the next start
            await asyncio.gather(*self._inflight, return_exceptions=True)
            await client.aclose()

    async def _consumer(self, stream: str, durable: str, event_types: list[str]) -> JetStreamContext.PullSubscription:
        config = ConsumerConfig(
            durable_name=durable,
            ack_policy=AckPolicy.EXPLICIT,
            ack_wait=self.settings.ack_wait_s,
            # A dispatcher that starts for the first time on an old stream must not send its history.
            deliver_policy=DeliverPolicy.NEW,
            filter_subjects=[subject_for(t, "*") for t in event_types],
            max_deliver=-1,  # every message is acked once its deliveries have succeeded or given up
            max_ack_pending=MAX_INFLIGHT,
        )
        js = self.platform.bus.js
        while True:
            try:
                await js.add_consumer(stream, config=config)
                return await js.pull_subscribe_bind(durable=durable, stream=stream)
            except asyncio.CancelledError:
                raise
            except Exception as error:  # NATS not reachable yet: the gateway serves meanwhile
                log.warning("webhooks out: cannot create consumer %s on %s yet: %s", durable, stream, error)
                await asyncio.sleep(1.0)

    async def _pull(self, pull: JetStreamContext.PullSubscription) -> None:
        while True:
            room = MAX_INFLIGHT - len(self._inflight)
            if room <= 0:
                self._room.clear()
                await self._room.wait()
                continue
            try:
                messages = await pull.fetch(batch=min(room, 64), timeout=FETCH_WAIT_S)
            except (TimeoutError, NatsTimeout):
                continue
            except asyncio.CancelledError:
                raise
            except Exception as error:  # connection trouble: fetch again shortly
                log.warning("webhooks out: fetch failed: %s", error)
                await asyncio.sleep(0.5)
                continue
            try:
                subscriptions = await self.subscriptions.current()
            except asyncio.CancelledError:
                raise
            except Exception as error:
                log.warning("webhooks out: cannot read subscriptions, handing %d events back: %s",
                            len(messages), error)
                for msg in messages:
                    with contextlib.suppress(Exception):
                        await msg.nak(delay=1.0)
                continue
            for msg in messages:
                task = asyncio.create_task(self._dispatch(msg, subscriptions))
                self._inflight.add(task)
                task.add_done_callback(self._done)

    def _done(self, task: asyncio.Task[None]) -> None:
        self._inflight.discard(task)
        self._room.set()

    async def _dispatch(self, msg: Msg, subscriptions: dict[str, list[Subscription]]) -> None:
        try:
            async with heartbeat(msg, every=self.settings.ack_wait_s / 3):
                group = group_of(msg.subject)
                event = from_nats(msg.headers, msg.data)
                published = msg.metadata.timestamp
                targets = [
                    subscription for subscription in subscriptions.get(group, [])
                    if event["type"] in subscription.event_types
                    and (published is None or subscription.created_at - CLOCK_LEEWAY <= published)
                ]
                if targets:
                    body = structured(event)
                    await asyncio.gather(*(self._deliver(s, str(event["id"]), body) for s in targets))
        except asyncio.CancelledError:
            with contextlib.suppress(Exception):
                await msg.nak()
            raise
        except MalformedEvent as error:  # no subscriber could make sense of it either
            log.warning("webhooks out: not delivering %s: %s", msg.subject, error)
        with contextlib.suppress(Exception):
            await msg.ack()

    async def _deliver(self, subscription: Subscription, event_id: str, body: bytes) -> None:
        """Deliver until the receiver answers 2xx or the attempts run out; never raises."""
        assert self._client is not None
        settings = self.settings
        webhook_id = delivery_id(event_id, subscription.id)
        problem = "no attempt made"
        attempts = max(1, settings.webhook_delivery_attempts)
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
            except httpx.HTTPError as error:
                problem = f"{type(error).__name__}: {error}" if str(error) else type(error).__name__
            else:
                if response.is_success:
                    self.delivered += 1
                    deliveries.labels(subscription.group, subscription.id, "delivered").inc()
                    return
                problem = f"HTTP {response.status_code}"
            if attempt < attempts:
                backoff = settings.webhook_delivery_backoff_s
                delay = backoff[min(attempt - 1, len(backoff) - 1)] if backoff else 0.0
                log.info("webhooks out: delivery %s of event %s to subscription %s failed (attempt %d, "
                         "retry in %.1f s): %s", webhook_id, event_id, subscription.id, attempt, delay, problem)
                await asyncio.sleep(delay)
        self.failed += 1
        deliveries.labels(subscription.group, subscription.id, "failed").inc()
        # The URL may carry a token of the receiver's and the secret is never logged: the id says which.
        log.warning("webhooks out: gave up delivering event %s to subscription %s of group %s after %d "
                    "attempts: %s", event_id, subscription.id, subscription.group, attempts, problem)
