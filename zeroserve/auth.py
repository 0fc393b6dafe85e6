"""API clients and the bearer tokens they get, as SAP AI Core's OAuth client-credentials flow gives them.

A client is an id, a secret and the resource groups it may use (``*``: every group, and the
admin routes). ``zeroserve clients create`` prints the secret once; the store keeps only a salted
scrypt hash. ``POST /oauth/token`` trades id + secret for a short-lived HS256 JWT whose ``groups``
claim lists the client's groups, so checking a request costs a signature check, not a store read.
A deleted client's tokens stay valid until they expire (``token_ttl_s``).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import secrets
import time
from dataclasses import dataclass

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


class Unauthorized(ZeroserveError):
    reason = "Unauthorized"


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


class Auth:
    def __init__(self, clients: Registry[RegisteredClient], key: bytes, ttl_s: float) -> None:
        self.clients = clients
        self._key = key
        self.ttl_s = ttl_s

    @classmethod
    def open(cls, settings: Settings, store: Store) -> Auth:
        return cls(store.clients, signing_key(settings), settings.token_ttl_s)

    async def create_client(self, groups: list[str], name: str | None = None) -> tuple[RegisteredClient, str]:
        """A new client for these groups, and its secret (shown once, stored hashed)."""
        if not groups:
            raise Unauthorized("a client needs at least one resource group (or * for all)", reason="InvalidClient")
        for group in groups:
            if group != ALL_GROUPS and not is_id(group):
                raise Unauthorized(f"invalid resource group {group!r}: must match {ID_PATTERN}",
                                   reason="InvalidClient")
        secret = secrets.token_urlsafe(32)
        client = RegisteredClient(id=f"zs-{secrets.token_hex(8)}", secret_hash=_hash(secret), groups=groups, name=name)
        await self.clients.put(Store.GLOBAL, client.id, client)
        return client, secret

    async def token(self, client_id: str, secret: str) -> tuple[str, int]:
        """A bearer token for a client whose secret matches, and its lifetime in seconds."""
        client = await self.clients.get(Store.GLOBAL, client_id) if is_id(client_id) else None
        # The same work and the same answer for an unknown id and a wrong secret.
        if not _verify(secret, client.secret_hash if client else _DUMMY_HASH) or client is None:
            raise Unauthorized("unknown client or wrong secret", reason="invalid_client")
        now = int(time.time())
        lifetime = int(self.ttl_s)
        claims = {"iss": ISSUER, "sub": client.id, "groups": client.groups, "iat": now, "exp": now + lifetime}
        return jwt.encode(claims, self._key, algorithm=_ALGORITHM), lifetime

    def verify(self, token: str) -> Claims:
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
