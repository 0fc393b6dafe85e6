"""API clients and the bearer tokens they get, as SAP AI Core's OAuth client-credentials flow gives them.

A client is an id, a secret and the resource groups it may use (``*``: every group, and the
admin routes). ``zeroserve clients create`` prints the secret once; the store keeps only a salted
scrypt hash. ``POST /oauth/token`` trades id + secret for a short-lived HS256 JWT whose ``groups``
claim lists the client's groups, so checking a request costs a signature check, not a store read,
and a token checked once is remembered until it expires (``TokenCache``), so the next request
costs a dictionary lookup. A deleted client's tokens stay valid until they expire (``token_ttl_s``).
Hashing a secret takes tens of milliseconds, so it runs in a few threads of its own, never on the
event loop, and failed logins are throttled per client id and per source address (``LoginThrottle``)
before any hashing: a flood of wrong secrets costs at most a few hashes a minute per address.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import math
import os
import secrets
import time
from collections import OrderedDict
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TypeVar

import jwt

from zeroserve.core.store import RegisteredClient, Registry, Store
from zeroserve.errors import ZeroserveError
from zeroserve.events import ID_PATTERN, is_id
from zeroserve.settings import Settings

ALL_GROUPS = "*"
ISSUER = "zeroserve"
_ALGORITHM = "HS256"
# scrypt at n=2**14, r=8 costs ~16 MB and ~50 ms: fine once per token, slow for a guesser.
_SCRYPT = {"n": 2**14, "r": 8, "p": 1}
# Logins that may wait for a hashing thread; beyond them a login is refused at once (``Throttled``).
_HASH_QUEUE = 32
_T = TypeVar("_T")


class Unauthorized(ZeroserveError):
    reason = "Unauthorized"


class Throttled(ZeroserveError):
    """Too many failed logins lately (or too many logins waiting to be checked): retry after a while."""

    reason = "TooManyFailedLogins"

    def __init__(self, message: str, retry_after_s: float) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


@dataclass(frozen=True)
class Claims:
    """Who called, as their token says."""

    client_id: str
    groups: tuple[str, ...]
    expires_at: float

    def may_use(self, group: str) -> bool:
        return ALL_GROUPS in self.groups or group in self.groups

    @property
    def admin(self) -> bool:
        return ALL_GROUPS in self.groups


class LoginThrottle:
    """Failed logins counted per key (``client:<id>``, ``address:<ip>``) in a window that opens at a
    key's first failure: at ``limit`` failures the key is refused until its window closes. Refusals
    do not count, so a client's right secret works again once its window has passed, however long a
    flood goes on. At most ``capacity`` keys are kept: the least recently failed go first."""

    def __init__(self, limit: int, window_s: float, capacity: int = 10_000) -> None:
        self.limit = limit
        self.window_s = window_s
        self.capacity = capacity
        # key -> [window opened (monotonic), failures in it]; oldest last failure first.
        self._failures: OrderedDict[str, list[float]] = OrderedDict()

    def retry_after(self, keys: tuple[str, ...]) -> float | None:
        """Seconds until every one of ``keys`` may try again, or None if none is at its limit."""
        now = time.monotonic()
        waits = [0.0]
        for key in keys:
            opened, count = self._failures.get(key, (now, 0))
            if count >= self.limit:
                waits.append(opened + self.window_s - now)
        return max(waits) if max(waits) > 0 else None

    def failed(self, keys: tuple[str, ...]) -> None:
        now = time.monotonic()
        for key in keys:
            entry = self._failures.pop(key, None)
            if entry is None or entry[0] + self.window_s <= now:
                entry = [now, 0]
            entry[1] += 1
            self._failures[key] = entry
        # The front failed longest ago: a closed window there is forgotten, and the bound holds.
        while self._failures:
            opened, _ = next(iter(self._failures.values()))
            if opened + self.window_s > now and len(self._failures) <= self.capacity:
                break
            self._failures.popitem(last=False)


class TokenCache:
    """Tokens already verified, with their claims, until they expire: the least recently used of
    more than ``capacity`` are forgotten (and verified again if they come back)."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._claims: OrderedDict[str, Claims] = OrderedDict()

    def get(self, token: str) -> Claims | None:
        claims = self._claims.get(token)
        if claims is not None:
            self._claims.move_to_end(token)
        return claims

    def put(self, token: str, claims: Claims) -> None:
        self._claims[token] = claims
        if len(self._claims) > self.capacity:
            self._claims.popitem(last=False)

    def drop(self, token: str) -> None:
        self._claims.pop(token, None)


class Auth:
    def __init__(self, clients: Registry[RegisteredClient], key: bytes, ttl_s: float, *,
                 throttle: LoginThrottle | None = None, hashing_threads: int = 1, cached_tokens: int = 4096) -> None:
        self.clients = clients
        self._key = key
        self.ttl_s = ttl_s
        self.throttle = throttle or LoginThrottle(limit=10, window_s=60.0)
        self.verified = TokenCache(cached_tokens)
        self._hashing = ThreadPoolExecutor(max_workers=hashing_threads, thread_name_prefix="zeroserve-scrypt")
        self._hashes_pending = 0
        self._hashes_bound = hashing_threads + _HASH_QUEUE

    @classmethod
    def open(cls, settings: Settings, store: Store) -> Auth:
        throttle = LoginThrottle(settings.login_failure_limit, settings.login_failure_window_s)
        return cls(store.clients, signing_key(settings), settings.token_ttl_s, throttle=throttle,
                   hashing_threads=settings.login_hashing_threads, cached_tokens=settings.token_cache_size)

    async def _off_loop(self, work: Callable[..., _T], *args: str) -> _T:
        """Hashing in the threads kept for it; refused at once when too many already wait for one."""
        if self._hashes_pending >= self._hashes_bound:
            raise Throttled("too many logins at once: retry in a second", retry_after_s=1.0)
        self._hashes_pending += 1
        try:
            return await asyncio.get_running_loop().run_in_executor(self._hashing, work, *args)
        finally:
            self._hashes_pending -= 1

    async def create_client(self, groups: list[str], name: str | None = None) -> tuple[RegisteredClient, str]:
        """A new client for these groups, and its secret (shown once, stored hashed)."""
        if not groups:
            raise Unauthorized("a client needs at least one resource group (or * for all)", reason="InvalidClient")
        for group in groups:
            if group != ALL_GROUPS and not is_id(group):
                raise Unauthorized(f"invalid resource group {group!r}: must match {ID_PATTERN}",
                                   reason="InvalidClient")
        secret = secrets.token_urlsafe(32)
        secret_hash = await self._off_loop(_hash, secret)
        client = RegisteredClient(id=f"zs-{secrets.token_hex(8)}", secret_hash=secret_hash, groups=groups, name=name)
        await self.clients.put(Store.GLOBAL, client.id, client)
        return client, secret

    async def token(self, client_id: str, secret: str, address: str | None = None) -> tuple[str, int]:
        """A bearer token for a client whose secret matches, and its lifetime in seconds.

        ``Throttled`` (before any hashing) once the client id or the caller's ``address`` has failed
        ``throttle.limit`` times in the throttle's window."""
        keys = _throttle_keys(client_id, address)
        wait = self.throttle.retry_after(keys)
        if wait is not None:
            raise Throttled(f"too many failed logins: retry in {math.ceil(wait)} s", retry_after_s=wait)
        client = await self.clients.get(Store.GLOBAL, client_id) if is_id(client_id) else None
        # The same work and the same answer for an unknown id and a wrong secret.
        if not await self._off_loop(_verify, secret, client.secret_hash if client else _DUMMY_HASH) or client is None:
            self.throttle.failed(keys)
            raise Unauthorized("unknown client or wrong secret", reason="invalid_client")
        now = int(time.time())
        lifetime = int(self.ttl_s)
        claims = {"iss": ISSUER, "sub": client.id, "groups": client.groups, "iat": now, "exp": now + lifetime}
        return jwt.encode(claims, self._key, algorithm=_ALGORITHM), lifetime

    def throttled(self, client_id: str | None, address: str | None) -> float | None:
        """Seconds until this client id and address may try to log in again; None if they may now."""
        return self.throttle.retry_after(_throttle_keys(client_id, address))

    def verify(self, token: str) -> Claims:
        """The claims of a valid token: from the cache when it was verified before, expiry checked each time."""
        claims = self.verified.get(token)
        if claims is None:
            claims = self._decode(token)
            self.verified.put(token, claims)
        if claims.expires_at <= time.time():
            self.verified.drop(token)
            raise Unauthorized("the token has expired: get a new one from /oauth/token")
        return claims

    def _decode(self, token: str) -> Claims:
        try:
            claims = jwt.decode(token, self._key, algorithms=[_ALGORITHM], issuer=ISSUER,
                                options={"require": ["exp", "iss", "sub"]})
        except jwt.ExpiredSignatureError:
            raise Unauthorized("the token has expired: get a new one from /oauth/token") from None
        except jwt.InvalidTokenError:
            raise Unauthorized("the token is not valid") from None
        groups = claims.get("groups")
        if not isinstance(groups, list) or not all(isinstance(g, str) for g in groups):
            raise Unauthorized("the token is not valid")
        return Claims(client_id=claims["sub"], groups=tuple(groups), expires_at=float(claims["exp"]))


def _throttle_keys(client_id: str | None, address: str | None) -> tuple[str, ...]:
    # Any malformed id shares one key: it can be no client's, and its length costs no memory.
    keys = () if client_id is None else (f"client:{client_id if is_id(client_id) else '?'}",)
    return keys + ((f"address:{address}",) if address else ())


def signing_key(settings: Settings) -> bytes:
    """The token signing key: from settings, or generated once into data_dir/token.key (mode 0600)."""
    if settings.token_signing_key is not None:
        key = settings.token_signing_key.get_secret_value().encode()
        if len(key) < 32:
            raise ZeroserveError("ZEROSERVE_TOKEN_SIGNING_KEY must be at least 32 characters",
                                 reason="InvalidSettings")
        return key
    path = settings.data_dir / "token.key"
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return path.read_bytes()
    with os.fdopen(fd, "wb") as file:
        file.write(secrets.token_bytes(32))
    return path.read_bytes()


def _hash(secret: str) -> str:
    salt = secrets.token_bytes(16)
    digest = hashlib.scrypt(secret.encode(), salt=salt, **_SCRYPT)
    return "scrypt$" + base64.b64encode(salt).decode() + "$" + base64.b64encode(digest).decode()


def _verify(secret: str, stored: str) -> bool:
    try:
        _, salt, digest = stored.split("$")
        expected = base64.b64decode(digest)
        actual = hashlib.scrypt(secret.encode(), salt=base64.b64decode(salt), **_SCRYPT)
    except ValueError:
        return False
    return hmac.compare_digest(actual, expected)


_DUMMY_HASH = _hash(secrets.token_urlsafe(32))
