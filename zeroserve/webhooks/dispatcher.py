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

Deliveries go only to public addresses unless the operator allows a network with
``webhook_allowed_networks``: whoever holds a token of one group may register a URL, and a URL that
resolves to 169.254.169.254, to a service inside the cluster or to the gateway's own loopback (where
an Istio sidecar's admin API listens, say) would make zeroserve call what that user cannot reach.
The default refuses loopback too, on one machine as on a cluster: the same default is safe
everywhere, and a user of ``zeroserve up`` whose receiver runs on this machine gets a 400 that names
the setting to change. ``check_target`` refuses such a URL when it is registered; at delivery the
connection itself is checked (``TargetCheckedNetwork``): the host is resolved once, every address
checked, and only a checked address is connected to, so a name that resolves elsewhere by the time
of delivery (DNS rebinding) is refused too.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import contextvars
import hashlib
import hmac
import ipaddress
import json
import logging
import secrets
import socket
import time
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

import httpcore
import httpx
from cloudevents.http import CloudEvent
from nats.aio.msg import Msg
from nats.errors import TimeoutError as NatsTimeout
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy
from prometheus_client import Counter
from standardwebhooks import Webhook

from zeroserve.core.bus import EVENTS_STREAM, LOGS_STREAM, heartbeat
from zeroserve.core.store import Subscription
from zeroserve.errors import MalformedEvent, Rejected, ZeroserveError
from zeroserve.events import (
    OUT_TYPES,
    DeploymentLog,
    from_nats,
    group_of,
    subject_for,
)
from zeroserve.platform import Platform

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


class ForbiddenTarget(Rejected):
    """A webhook URL whose host is, or resolves to, an address that deliveries may not go to."""

    reason = "WebhookTargetNotAllowed"


class UnresolvableTarget(Rejected):
    reason = "WebhookTargetNotResolved"


Address = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network
_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")  # the IPv4 address is the last 32 bits (RFC 6052)
_ALLOWED_SETTING = "ZEROSERVE_WEBHOOK_ALLOWED_NETWORKS"


def _embedded_ipv4(address: Address) -> list[ipaddress.IPv4Address]:
    """IPv4 addresses an IPv6 one leads to: mapped (::ffff:a.b.c.d), 6to4 and NAT64."""
    if not isinstance(address, ipaddress.IPv6Address):
        return []
    found = [a for a in (address.ipv4_mapped, address.sixtofour) if a is not None]
    if address in _NAT64:
        found.append(ipaddress.IPv4Address(int(address) & 0xFFFFFFFF))
    return found


def not_public(address: Address) -> str | None:
    """What kind of non-public address this is ("loopback", "link-local", ...), or None if public."""
    for inner in _embedded_ipv4(address):
        kind = not_public(inner)
        if kind is not None:
            return kind
    for kind, test in (("loopback", "is_loopback"), ("link-local", "is_link_local"),
                       ("wildcard", "is_unspecified"), ("multicast", "is_multicast"),
                       ("private", "is_private"), ("reserved", "is_reserved")):
        if getattr(address, test):
            return kind
    # is_global leaves out what is neither private nor public, e.g. 100.64.0.0/10 (carrier-grade NAT).
    return None if address.is_global else "special-purpose"


def refusal(address: Address, allowed: Sequence[Network]) -> str | None:
    """Why a delivery may not go to ``address`` (its kind), or None when it may."""
    kind = not_public(address)
    if kind is None:
        return None
    # ::ffff:127.0.0.1 is 127.0.0.1 to a dual-stack socket; 6to4 and NAT64 addresses go through a relay.
    mapped = address.ipv4_mapped if isinstance(address, ipaddress.IPv6Address) else None
    candidates = [address] if mapped is None else [address, mapped]
    if any(candidate in network for candidate in candidates for network in allowed
           if candidate.version == network.version):
        return None
    return kind


def _address(text: str) -> Address:
    return ipaddress.ip_address(text.split("%", 1)[0])  # an IPv6 scope (fe80::1%eth0) is not the address


async def resolve(host: str, port: int, timeout: float) -> list[Address]:
    """Every address ``host`` resolves to (itself, if it is an address), in the resolver's order."""
    try:
        return [_address(host.strip("[]"))]
    except ValueError:
        pass
    loop = asyncio.get_running_loop()
    try:
        infos = await asyncio.wait_for(loop.getaddrinfo(host, port, type=socket.SOCK_STREAM), timeout)
    except TimeoutError:
        raise UnresolvableTarget(f"resolving {host} took longer than {timeout:g} s") from None
    except (OSError, UnicodeError) as error:
        raise UnresolvableTarget(f"{host} does not resolve: {error}") from None
    return list(dict.fromkeys(_address(str(info[4][0])) for info in infos))


def check_addresses(host: str, addresses: Iterable[Address], allowed: Sequence[Network]) -> None:
    """Raise ``ForbiddenTarget`` if any address of ``host`` is one deliveries may not go to."""
    for address in addresses:
        kind = refusal(address, allowed)
        if kind is not None:
            try:
                literal = _address(host.strip("[]")) == address
            except ValueError:
                literal = False
            named = f"{host} is" if literal else f"{host} resolves to {address},"
            raise ForbiddenTarget(
                f"{named} a {kind} address, not a public one: webhooks are delivered only to public addresses "
                f"unless the operator allows the network in {_ALLOWED_SETTING} (e.g. [\"127.0.0.0/8\"])")


async def check_target(url: str, allowed: Sequence[Network], timeout: float) -> None:
    """Refuse (``ForbiddenTarget``, ``UnresolvableTarget``) a URL deliveries could not go to."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    port = parts.port or (443 if parts.scheme == "https" else 80)
    check_addresses(host, await resolve(host, port, timeout), allowed)


class TargetCheckedNetwork(httpcore.AsyncNetworkBackend):
    """httpcore's network, connecting only to addresses that ``check_addresses`` lets through.

    The addresses checked are the ones connected to (not a second lookup that could answer
    otherwise), for every new connection; a kept-alive one was checked when it was made.
    """

    def __init__(self, allowed: Sequence[Network], inner: httpcore.AsyncNetworkBackend | None = None) -> None:
        self.allowed = list(allowed)
        self._inner = inner or httpcore.AnyIOBackend()

    async def connect_tcp(
        self, host: str, port: int, timeout: float | None = None, local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        try:
            addresses = await resolve(host, port, timeout or 30.0)
        except UnresolvableTarget as error:
            raise httpcore.ConnectError(error.message) from None
        check_addresses(host, addresses, self.allowed)
        failure: Exception = httpcore.ConnectError(f"{host} resolves to no address")
        for address in addresses:
            try:
                return await self._inner.connect_tcp(str(address), port, timeout=timeout,
                                                     local_address=local_address, socket_options=socket_options)
            except (httpcore.ConnectError, httpcore.ConnectTimeout) as error:
                failure = error
        raise failure

    async def connect_unix_socket(
        self, path: str, timeout: float | None = None, socket_options: Iterable[Any] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        raise ForbiddenTarget("webhooks are not delivered to unix sockets")

    async def sleep(self, seconds: float) -> None:
        await self._inner.sleep(seconds)


class DeliveryTransport(httpx.AsyncHTTPTransport):
    """httpx's transport over a ``TargetCheckedNetwork``, with no proxy from the environment."""

    def __init__(self, allowed: Sequence[Network], limits: httpx.Limits) -> None:
        super().__init__(trust_env=False, limits=limits)
        # httpx passes no network backend through to its connection pool: the same pool, made with ours.
        self._pool = httpcore.AsyncConnectionPool(
            ssl_context=httpx.create_ssl_context(trust_env=False),
            max_connections=limits.max_connections, max_keepalive_connections=limits.max_keepalive_connections,
            keepalive_expiry=limits.keepalive_expiry, network_backend=TargetCheckedNetwork(allowed),
        )


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
            transport=DeliveryTransport(self.settings.webhook_allowed_networks,
                                        httpx.Limits(max_connections=None, max_keepalive_connections=32)),
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
            else:
                if response.is_success:
                    self.delivered += 1
                    deliveries.labels(subscription.group, subscription.id, "delivered").inc()
                    log.debug("webhooks out: delivered event %s to subscription %s (HTTP %d)",
                              event_id, subscription.id, response.status_code)
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
