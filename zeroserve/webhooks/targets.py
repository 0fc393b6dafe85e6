"""Where webhooks may be delivered (the SSRF policy): public addresses only, unless the operator allows a network.

Whoever holds a token of one group may register a URL, and a URL that resolves to 169.254.169.254,
to a service inside the cluster or to the gateway's own loopback (where an Istio sidecar's admin API
listens, say) would make zeroserve call what that user cannot reach; ``webhook_allowed_networks``
opens a network. The default refuses loopback too, on one machine as on a cluster: the same default
is safe everywhere, and a user of ``zeroserve up`` whose receiver runs on this machine gets a 400
that names the setting to change. ``check_target`` refuses such a URL when it is registered; at
delivery the connection itself is checked (``TargetCheckedNetwork``, under ``DeliveryTransport``):
the host is resolved once, every address checked, and only a checked address is connected to, so a
name that resolves elsewhere by the time of delivery (DNS rebinding) is refused too.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Iterable, Sequence
from typing import Any
from urllib.parse import urlsplit

import httpcore
import httpx

from zeroserve.errors import Rejected


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
