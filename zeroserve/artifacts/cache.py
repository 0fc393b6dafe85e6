"""Where model files come from and where they are kept on this machine.

An artifact URI is checked before it is registered (scheme known; a ``file://`` URI must resolve,
symlinks followed, inside one of the configured roots, so ``..`` or a symlink cannot reach the
rest of the disk), then staged into the local model cache with ``kserve-storage``, which knows
``file://``, ``s3://``, ``gs://``, ``https://``, ``hf://`` and more. AI Core's ``ai://<secret>/<path>``
URIs name an object store secret of the artifact's resource group: ``locate`` turns one into a
``Source``, a concrete URI (``s3://bucket/pathPrefix/path`` or ``file://<directory>/<path>``) and,
for S3, the secret's access keys, which are handed to boto3 for that one download and never to the
process environment. A copy fetched with a group's keys is cached apart from everyone else's, so
another group cannot reach it by naming the same bucket. Staging runs in a thread: downloads and
copies never block the event loop.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import re
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING
from urllib.parse import unquote, urlparse

from zeroserve.errors import ArtifactNotFound, InvalidArtifactUri, ZeroserveError
from zeroserve.settings import Settings

if TYPE_CHECKING:
    from zeroserve.core.store import ObjectStoreSecret, Registry

log = logging.getLogger(__name__)

REMOTE_SCHEMES = {"s3", "gs", "https", "http", "hf", "hdfs", "webhdfs"}
# AI Core's artifact URLs: ai://<object store secret>/<path inside its bucket or directory>.
OBJECT_STORE_SCHEME = "ai"
# The object store secret types zeroserve can read: SAP's S3, and a directory on this machine.
S3 = "S3"
LOCAL = "local"
OBJECT_STORE_TYPES = (S3, LOCAL)
ACCESS_KEY_ID = "AWS_ACCESS_KEY_ID"
SECRET_ACCESS_KEY = "AWS_SECRET_ACCESS_KEY"
# SAP's objectStoreName: an RFC 1123 subdomain (the POST body's pattern).
OBJECT_STORE_NAME = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_COMPLETE = ".zeroserve-staged"


def redact(url: str) -> str:
    """``url`` without what may be a secret: a password in it, a (pre-signed) query string."""
    try:
        parsed = urlparse(url)
    except ValueError:  # unreadable: nothing of it past the scheme is shown
        return f"{url.partition('://')[0][:20]}://..."
    netloc = parsed.netloc
    if parsed.password is not None:
        netloc = netloc.replace(f":{parsed.password}@", ":***@", 1)
    return parsed._replace(netloc=netloc, query="***" if parsed.query else "").geturl()


def unreadable(url: str) -> str | None:
    """Why urllib cannot read ``url`` (an unclosed [IPv6] host, a port that is not a number), or None.
    Such URLs pass the API's patterns; asked here, they are refused with the reason, not a 500."""
    try:
        urlparse(url).port  # noqa: B018  (reading it raises for a port that is not one)
    except ValueError as error:
        return str(error)
    return None


def object_store_of(uri: str) -> str | None:
    """The object store secret an ``ai://`` URI names; None for any other URI."""
    parsed = urlparse(uri)
    return parsed.netloc if parsed.scheme == OBJECT_STORE_SCHEME else None


def flag(value: str | None, default: bool) -> bool:
    """SAP's "0"/"1" string flags (verifyssl, usehttps); "false"/"true" read the same."""
    if value is None or value.strip() == "":
        return default
    return value.strip().lower() not in ("0", "false", "no")


@dataclass(frozen=True)
class S3Access:
    """How to reach one S3 object store: its keys stay out of repr, logs and events."""

    access_key_id: str = field(repr=False)
    secret_access_key: str = field(repr=False)
    endpoint_url: str | None = None
    region: str | None = None
    verify: bool = True

    def scrub(self, text: str) -> str:
        """``text`` with the keys cut out, for error messages built from what boto3 said."""
        for value in (self.secret_access_key, self.access_key_id):
            if value:
                text = text.replace(value, "***")
        return text

    @classmethod
    def of(cls, secret: ObjectStoreSecret) -> S3Access:
        endpoint = secret.endpoint
        if endpoint and "://" not in endpoint:
            # SAP gives a host name; usehttps says which scheme to put in front of it.
            endpoint = f"{'https' if flag(secret.usehttps, True) else 'http'}://{endpoint}"
        return cls(
            access_key_id=secret.data.get(ACCESS_KEY_ID, ""),
            secret_access_key=secret.data.get(SECRET_ACCESS_KEY, ""),
            endpoint_url=endpoint or None,
            region=secret.region or None,
            verify=flag(secret.verifyssl, True),
        )


@dataclass(frozen=True)
class Source:
    """What staging fetches: a concrete URI and, for an S3 object store secret, how to reach it."""

    uri: str
    s3: S3Access | None = None
    # Whose keys fetch it: such a copy is cached under the group, apart from every other.
    group: str | None = None

    @property
    def private(self) -> bool:
        return self.s3 is not None and self.group is not None


class ModelCache:
    """The directory of staged artifacts, one sub-directory per URI (per group and URI for private copies)."""

    def __init__(self, settings: Settings) -> None:
        self.root = settings.model_cache_dir.resolve()
        self.file_roots = settings.allowed_file_roots
        # One staging per copy at a time: an artifact and a deployment of it often arrive together.
        self._staging: dict[Path, asyncio.Lock] = {}

    def check(self, uri: str) -> None:
        """Refuse a URI that zeroserve must not or cannot read (an ``ai://`` URI: its form only)."""
        if (problem := unreadable(uri)) is not None:
            raise InvalidArtifactUri(f"artifact URI {redact(uri)[:200]!r} cannot be read: {problem}")
        parsed = urlparse(uri)
        if parsed.scheme == "file":
            self.local_source(uri)
        elif parsed.scheme == OBJECT_STORE_SCHEME:
            if not OBJECT_STORE_NAME.fullmatch(parsed.netloc):
                raise InvalidArtifactUri(f"artifact URI {uri!r} must be ai://<object store secret name>/<path>")
            self._relative_path(uri)
        elif parsed.scheme not in REMOTE_SCHEMES:
            known = ", ".join(sorted({"file", OBJECT_STORE_SCHEME, *REMOTE_SCHEMES}))
            raise InvalidArtifactUri(f"unsupported artifact URI {uri!r}: use one of {known}")

    async def locate(self, uri: str, group: str, secrets: Registry[ObjectStoreSecret]) -> Source:
        """Where ``uri`` really is for ``group``: ``ai://`` through the group's object store secret."""
        self.check(uri)
        name = object_store_of(uri)
        if name is None:
            return Source(uri)
        secret = await secrets.get(group, name)
        if secret is None:
            raise InvalidArtifactUri(f"artifact URI {uri!r} names object store secret {name!r}, which resource "
                                     f"group {group} does not have: create it with POST /v2/admin/objectStoreSecrets")
        return self.source(uri, secret, group)

    def source(self, uri: str, secret: ObjectStoreSecret, group: str) -> Source:
        """An ``ai://`` URI resolved through one object store secret."""
        relative = self._relative_path(uri)
        if secret.type == LOCAL:
            return Source(self._local_object(uri, secret, relative).as_uri())
        if secret.type == S3:
            if not secret.bucket:
                raise InvalidArtifactUri(f"object store secret {secret.name!r} has no bucket")
            key = "/".join(part for part in ((secret.path_prefix or "").strip("/"), relative) if part)
            return Source(f"s3://{secret.bucket}/{key}", s3=S3Access.of(secret), group=group)
        raise InvalidArtifactUri(f"object store secret {secret.name!r} is of type {secret.type!r}, which zeroserve "
                                 f"cannot read (it reads {', '.join(OBJECT_STORE_TYPES)})")

    def local_directory(self, directory: str) -> Path:
        """The real path of a local object store's directory, if it lies inside an allowed root."""
        path = Path(directory)
        if not path.is_absolute():
            raise InvalidArtifactUri(f"a local object store needs an absolute directory, not {directory!r}")
        real = path.resolve()
        self._check_inside_roots(path.as_uri(), real)
        return real

    def _local_object(self, uri: str, secret: ObjectStoreSecret, relative: str) -> Path:
        base = self.local_directory(secret.path_prefix or "")
        real = (base / relative).resolve()
        # Confined to the secret's directory, not only to the roots: the secret is what the group was given.
        links = [entry.resolve() for entry in real.rglob("*") if entry.is_symlink()] if real.is_dir() else []
        for inside in [real, *links]:
            if not (inside == base or inside.is_relative_to(base)):
                raise InvalidArtifactUri(f"artifact URI {uri!r} leads outside the directory of object store "
                                         f"secret {secret.name!r}")
        self.local_source(real.as_uri())
        return real

    @staticmethod
    def _relative_path(uri: str) -> str:
        path = unquote(urlparse(uri).path).strip("/")
        if any(part in ("..", ".") for part in PurePosixPath(path).parts):
            raise InvalidArtifactUri(f"artifact URI {uri!r} may not contain '.' or '..' in its path")
        return path

    def local_source(self, uri: str) -> Path:
        """The real path behind a ``file://`` URI, if it lies inside an allowed root."""
        parsed = urlparse(uri)
        if parsed.netloc not in ("", "localhost"):
            raise InvalidArtifactUri(f"file URI {uri!r} names a host; use file:///absolute/path")
        path = Path(unquote(parsed.path))
        if not path.is_absolute():
            raise InvalidArtifactUri(f"file URI {uri!r} must be absolute: file:///absolute/path")
        real = path.resolve()
        self._check_inside_roots(uri, real)
        if real.is_dir():
            # kserve-storage links the files it finds: a link inside the root must not lead out of it.
            for entry in real.rglob("*"):
                if entry.is_symlink():
                    self._check_inside_roots(uri, entry.resolve())
        return real

    def _check_inside_roots(self, uri: str, real: Path) -> None:
        if not any(real == root or real.is_relative_to(root) for root in self.file_roots):
            roots = ", ".join(str(r) for r in self.file_roots)
            raise InvalidArtifactUri(f"file URI {uri!r} leads outside the allowed roots ({roots})")

    def path(self, uri: str, group: str | None = None) -> Path:
        """Where a URI's files are kept: a group's private copy (fetched with its keys) apart from the rest."""
        identity = uri if group is None else f"{group}\n{uri}"
        return self.root / hashlib.sha256(identity.encode()).hexdigest()[:24]

    def staged(self, uri: str, group: str | None = None) -> Path | None:
        target = self.path(uri, group)
        return target if (target / _COMPLETE).exists() else None

    async def stage(self, uri: str | Source, group: str | None = None) -> Path:
        """The local directory holding the artifact's files, downloading them once.

        With ``group``, a plain URI first finds the copy that group staged with its own keys (an
        ``ai://`` artifact of an S3 object store, resolved and staged when it was registered).
        """
        source = uri if isinstance(uri, Source) else Source(uri)
        if group is not None and not source.private:
            private = self.staged(source.uri, group)
            if private is not None:
                return private
        if object_store_of(source.uri) is not None:
            raise InvalidArtifactUri(f"{source.uri!r} must be located through its resource group's object store "
                                     "secret before it can be staged")
        self.check(source.uri)
        target = self.path(source.uri, source.group if source.private else None)
        async with self._staging.setdefault(target, asyncio.Lock()):
            if (target / _COMPLETE).exists():
                return target
            return await asyncio.to_thread(self._stage, source, target)

    def _stage(self, source: Source, target: Path) -> Path:
        from kserve_storage import Storage  # heavy (boto3, azure, gcs): import when first needed

        uri = source.uri
        local = uri.startswith("file:")
        path = str(self.local_source(uri)) if local else uri
        if local and not Path(path).exists():
            raise ArtifactNotFound(f"nothing at {uri}")
        self.root.mkdir(parents=True, exist_ok=True)
        # A fresh directory per attempt: a crashed earlier attempt's leftovers cannot get in the way.
        partial = Path(tempfile.mkdtemp(prefix=f"{target.name}.", suffix=".partial", dir=self.root))
        try:
            if source.s3 is not None:
                _download_s3(uri, source.s3, partial)
            else:
                Storage.download(path, out_dir=str(partial))
        except ZeroserveError:
            shutil.rmtree(partial, ignore_errors=True)
            raise
        except Exception as error:  # kserve-storage and boto3 raise plain exceptions of many kinds
            shutil.rmtree(partial, ignore_errors=True)
            if local:
                raise ArtifactNotFound(f"cannot read {uri}: {error}") from error
            # The error text of a download may repeat the URL, credentials and all.
            detail = str(error).replace(uri, redact(uri))
            if source.s3 is not None:
                detail = source.s3.scrub(detail)
            raise ZeroserveError(f"cannot download {redact(uri)}: {detail}", reason="ArtifactDownloadFailed") from None
        (partial / _COMPLETE).touch()
        shutil.rmtree(target, ignore_errors=True)
        partial.rename(target)
        log.info("staged %s into %s", redact(uri), target)
        return target


class _NoCredentials(logging.Filter):
    """botocore logs each request at DEBUG with its headers and canonical form: the Authorization
    header names the access key (``Credential=<key id>/...``) and a session token would be there whole.
    Those parts are cut out of its records, whoever's keys they are."""

    _SECRET_PARTS = re.compile(
        r"(Credential=)[^/\s,&'\"]+"
        r"|('(?:X-Amz-Security-Token|x-amz-security-token)': b?')[^']*"
        r"|(x-amz-security-token:)\S+")

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        scrubbed = self._SECRET_PARTS.sub(lambda m: next(g for g in m.groups() if g) + "***", message)
        if scrubbed != message:
            record.msg, record.args = scrubbed, None
        return True


# Installed once, on import: before any download can log.
_NO_CREDENTIALS = _NoCredentials()
for _name in ("botocore.endpoint", "botocore.auth"):  # the two that log requests
    logging.getLogger(_name).addFilter(_NO_CREDENTIALS)


def _download_s3(uri: str, access: S3Access, out_dir: Path) -> None:
    """Every object under an ``s3://bucket/key`` prefix (or the one object at it) into ``out_dir``.

    boto3 gets the keys as arguments: kserve-storage reads them from the process environment,
    where every other download (and every model server this process starts) would see them too.
    """
    import boto3
    from botocore.config import Config

    parsed = urlparse(uri)
    bucket, key = parsed.netloc, unquote(parsed.path).lstrip("/")
    client = boto3.session.Session().client(
        "s3",
        aws_access_key_id=access.access_key_id or None,
        aws_secret_access_key=access.secret_access_key or None,
        endpoint_url=access.endpoint_url,
        region_name=access.region,
        verify=access.verify,
        config=Config(connect_timeout=15, read_timeout=30, retries={"max_attempts": 3, "mode": "standard"}),
    )
    folder = key.rstrip("/") + "/" if key else ""
    fetched = 0
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=key):
        for entry in page.get("Contents", []):
            name = entry["Key"]
            if name == key:
                relative = PurePosixPath(name).name
            elif name.startswith(folder) and not name.endswith("/"):
                relative = name[len(folder):]
            else:  # models/iris2/... under the prefix models/iris: another artifact
                continue
            if any(part in ("..", ".", "") for part in relative.split("/")):
                raise ArtifactNotFound(f"object {name!r} in {redact(uri)} has a path that cannot be a file here")
            target = out_dir / relative
            target.parent.mkdir(parents=True, exist_ok=True)
            client.download_file(bucket, name, str(target))
            fetched += 1
    if not fetched:
        raise ArtifactNotFound(f"no objects at {redact(uri)}")
