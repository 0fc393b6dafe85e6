"""Who may use NATS: the users a nats-server lets in, the embedded server's own credentials, and
how zeroserve presents its credentials when it connects.

nats-server reads its users from its configuration file (``render_authorization``), never from
its command line, which ``ps`` shows to every local user. The embedded server has one user,
``zeroserve``, with a password made at the first start (``EmbeddedCredentials``): 256 random bits
in ``<data_dir>/nats/credentials.json``, created with mode 0600 and refused if it is ever readable
by others, and reused on every later start. A user and password, not nkeys or a bcrypt hash in the
configuration: nkeys would need the ``nkeys`` and PyNaCl packages, and both a seed and a bcrypt
hash would lie beside the password zeroserve itself must read to connect, in the same 0600
directory, so they would add a dependency and a cost per connection without keeping anything
safer on one machine. A cluster gives one user per role with its own permissions
(``core/nats_permissions.py``).
"""

from __future__ import annotations

import json
import os
import secrets
import stat
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from zeroserve.errors import ZeroserveError
from zeroserve.settings import Settings

EMBEDDED_USER = "zeroserve"


@dataclass(frozen=True)
class NatsUser:
    """A user of nats-server; ``publish`` and ``subscribe`` are the subjects it is allowed (None: all).

    Its password is either the password itself or, with ``password_env``, the name of an environment
    variable of the nats-server process (a Kubernetes Secret's), which keeps it out of the file.
    """

    name: str
    password: str | None = None
    password_env: str | None = None
    publish: tuple[str, ...] | None = None
    subscribe: tuple[str, ...] | None = None

    def render(self) -> str:
        if (self.password is None) == (self.password_env is None):
            raise ValueError(f"NATS user {self.name}: give a password or the variable that holds one")
        password = f"${self.password_env}" if self.password_env else json.dumps(self.password)
        fields = [f"user: {json.dumps(self.name)}", f"password: {password}"]
        permissions = [f"{verb}: {{allow: [\n{_subjects(allowed)}      ]}}"
                       for verb, allowed in (("publish", self.publish), ("subscribe", self.subscribe))
                       if allowed is not None]
        if permissions:
            fields.append("permissions: {\n" + "".join(f"      {p}\n" for p in permissions) + "    }")
        return "{\n" + "".join(f"    {field}\n" for field in fields) + "  }"


def _subjects(subjects: Iterable[str]) -> str:
    return "".join(f"        {json.dumps(subject)}\n" for subject in subjects)


def render_authorization(users: Iterable[NatsUser]) -> str:
    """The ``authorization`` block of a nats-server configuration that lets in these users only."""
    rendered = [user.render() for user in users]
    if not rendered:
        raise ValueError("a NATS that lets nobody in is of no use: give at least one user")
    return "authorization {\n  users = [\n" + "".join(f"  {user}\n" for user in rendered) + "  ]\n}\n"


def write_private(path: Path, text: str) -> None:
    """Write ``path`` readable by its owner only from its first byte: a new file made with mode 0600
    (a umask can only take bits away), then moved over the old one."""
    partial = path.with_name(f".{path.name}.{secrets.token_hex(4)}")
    fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as file:
            file.write(text)
        os.replace(partial, path)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise


def check_private(path: Path) -> None:
    """Refuse a file of secrets that others may read or that another user owns."""
    info = path.stat()
    if info.st_uid != os.getuid():
        raise ZeroserveError(f"{path} belongs to another user (uid {info.st_uid}): zeroserve keeps its NATS "
                             "credentials only in files of its own", reason="NatsCredentialsExposed")
    if info.st_mode & 0o077:
        raise ZeroserveError(
            f"{path} is readable by others (mode {stat.S_IMODE(info.st_mode):04o}): anyone on this machine may "
            "have read the NATS password in it. Remove the file (the next start makes a new password) or, "
            f"if nobody else could have read it, make it private again: chmod 600 {path}",
            reason="NatsCredentialsExposed")


@dataclass(frozen=True)
class EmbeddedCredentials:
    """The user and password of the embedded nats-server, made once and kept with its data."""

    user: str
    password: str

    FILE = "credentials.json"

    @classmethod
    def load_or_create(cls, nats_dir: Path) -> EmbeddedCredentials:
        """Those kept in ``nats_dir``, made there at the first start (256 random bits)."""
        nats_dir.mkdir(parents=True, exist_ok=True)
        nats_dir.chmod(0o700)  # JetStream's files hold the registries: not for other users either
        path = nats_dir / cls.FILE
        if path.exists():
            check_private(path)
            try:
                kept = json.loads(path.read_text(encoding="utf-8"))
                return cls(user=str(kept["user"]), password=str(kept["password"]))
            except (ValueError, KeyError, TypeError):
                raise ZeroserveError(f"{path} is not the NATS credentials zeroserve wrote; remove it and the "
                                     "next start makes new ones", reason="NatsCredentialsUnreadable") from None
        made = cls(user=EMBEDDED_USER, password=secrets.token_urlsafe(32))
        write_private(path, json.dumps({"user": made.user, "password": made.password}))
        return made

    def user_of(self) -> NatsUser:
        """The server's side: this one user, allowed everything (the one process runs every role)."""
        return NatsUser(self.user, password=self.password)

    def in_url(self, url: str) -> str:
        """``url`` with these credentials in it, as nats-py and every NATS client read them.

        The password is URL-safe base64, so it needs no escaping; logs show such a URL only redacted.
        """
        parts = urlsplit(url)
        return urlunsplit(parts._replace(netloc=f"{self.user}:{self.password}@{parts.hostname}:{parts.port}"))


def connect_options(url: str, settings: Settings) -> dict[str, Any]:
    """What ``nats.connect`` needs, besides ``url``, to connect as the settings say: a user and
    password (from a Secret, on a cluster) unless the URL carries its own (the embedded server's
    always does), and the inbox prefix the role's permissions allow."""
    options: dict[str, Any] = {}
    if settings.nats_user is not None and not any(urlsplit(server.strip()).username for server in url.split(",")):
        options["user"] = settings.nats_user
        options["password"] = settings.nats_password.get_secret_value() if settings.nats_password else ""
    if settings.nats_inbox_prefix:
        options["inbox_prefix"] = settings.nats_inbox_prefix
    return options
