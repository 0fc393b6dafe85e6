"""Artifact URIs: which ones zeroserve reads, and where one really is. A URI is checked before it
is registered (a scheme zeroserve knows; a ``file://`` URI must resolve, symlinks followed, inside one
of the allowed roots, so that ``..`` or a link cannot reach the rest of the disk, and never to
zeroserve's own files in them or to another group's uploads: several groups share the machine);
``resolve`` turns an
``ai://`` URI into a ``Source``, the concrete URI staging fetches (``s3://bucket/pathPrefix/path`` or
``file://<directory>/<path>``) and, for S3, how to reach it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING
from urllib.parse import unquote, urlparse

from zeroserve.artifacts.object_stores import (
    LOCAL,
    OBJECT_STORE_NAME,
    OBJECT_STORE_SCHEME,
    OBJECT_STORE_TYPES,
    S3,
    S3Access,
)
from zeroserve.errors import InvalidArtifactUri
from zeroserve.redaction import redact

if TYPE_CHECKING:
    from zeroserve.core.store import ObjectStoreSecret

REMOTE_SCHEMES = {"s3", "gs", "https", "http", "hf", "hdfs", "webhdfs"}
# Read by KServe's storage-initializer on a cluster, never here: a PersistentVolumeClaim of the model's namespace.
CLUSTER_SCHEMES = {"pvc"}


def unreadable(url: str) -> str | None:
    """Why urllib cannot read ``url`` (an unclosed [IPv6] host, a port that is not a number), or None.
    Such URLs pass the API's patterns; asked here, they are refused with the reason, not a 500."""
    try:
        urlparse(url).port  # noqa: B018  (reading it raises for a port that is not one)
    except ValueError as error:
        return str(error)
    return None


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


class FileRoots:
    """The directories a ``file://`` URI may lead into, symlinks followed; inside them, ``private``
    paths (zeroserve's own state: keys, NATS, the model cache) no URI may reach, and ``uploads``, where
    a group's URIs reach only that group's own directory (gateway/uploads.py)."""

    def __init__(self, roots: Sequence[Path], *, private: Sequence[Path] = (), uploads: Path | None = None) -> None:
        self.roots = list(roots)
        self.private = [path.resolve() for path in private]
        self.uploads = uploads.resolve() if uploads is not None else None

    def real_path(self, uri: str, group: str | None = None) -> Path:
        """The real path behind a ``file://`` URI, if it lies inside an allowed root (and, for a
        group, not in another group's uploads)."""
        parsed = urlparse(uri)
        if parsed.netloc not in ("", "localhost"):
            raise InvalidArtifactUri(f"file URI {uri!r} names a host; use file:///absolute/path")
        path = Path(unquote(parsed.path))
        if not path.is_absolute():
            raise InvalidArtifactUri(f"file URI {uri!r} must be absolute: file:///absolute/path")
        real = path.resolve()
        self.confine(uri, real, group)
        if real.is_dir():
            # kserve-storage links the files it finds: a link inside the root must not lead out of it.
            for entry in real.rglob("*"):
                if entry.is_symlink():
                    self.confine(uri, entry.resolve(), group)
        return real

    def directory(self, directory: str) -> Path:
        """The real path of a local object store's directory, if it lies inside an allowed root."""
        path = Path(directory)
        if not path.is_absolute():
            raise InvalidArtifactUri(f"a local object store needs an absolute directory, not {directory!r}")
        real = path.resolve()
        self.confine(path.as_uri(), real)
        return real

    def confine(self, uri: str, real: Path, group: str | None = None) -> None:
        if not any(_within(real, root) for root in self.roots):
            roots = ", ".join(str(r) for r in self.roots)
            raise InvalidArtifactUri(f"file URI {uri!r} leads outside the allowed roots ({roots}): upload the model "
                                     "(`zeroserve deploy PATH` does), or have the operator add its directory to "
                                     "ZEROSERVE_FILE_ROOTS")
        if any(_within(real, private) or _within(private, real) for private in self.private):
            raise InvalidArtifactUri(f"file URI {uri!r} leads to zeroserve's own files (keys, NATS, the model cache)")
        if self.uploads is None or group is None:
            return
        own = self.uploads / group
        if _within(own, real) and real != own:
            raise InvalidArtifactUri(f"file URI {uri!r} holds the uploads of other resource groups")
        if _within(real, self.uploads) and not _within(real, own):
            raise InvalidArtifactUri(f"file URI {uri!r} leads into another resource group's uploads")


def _within(path: Path, directory: Path) -> bool:
    return path == directory or path.is_relative_to(directory)


def check_uri(uri: str, roots: FileRoots, group: str | None = None, *, cluster: bool = False) -> None:
    """Refuse a URI that zeroserve must not or cannot read (for ``group``; an ``ai://`` URI: its form only);
    ``cluster``: the kserve backend's model servers read it, so ``pvc://`` is one."""
    if (problem := unreadable(uri)) is not None:
        raise InvalidArtifactUri(f"artifact URI {redact(uri)[:200]!r} cannot be read: {problem}")
    parsed = urlparse(uri)
    if parsed.scheme == "file":
        roots.real_path(uri, group)
    elif parsed.scheme == OBJECT_STORE_SCHEME:
        if not OBJECT_STORE_NAME.fullmatch(parsed.netloc):
            raise InvalidArtifactUri(f"artifact URI {uri!r} must be ai://<object store secret name>/<path>")
        object_path(uri)
    elif parsed.scheme in CLUSTER_SCHEMES:
        if not cluster:
            raise InvalidArtifactUri(f"artifact URI {uri!r} names a Kubernetes volume, which only a cluster reads "
                                     "(ZEROSERVE_BACKEND=kserve): on this machine use file://, s3://, https:// or ai://")
    elif parsed.scheme not in REMOTE_SCHEMES:
        known = ", ".join(sorted({"file", OBJECT_STORE_SCHEME, *REMOTE_SCHEMES, *(CLUSTER_SCHEMES if cluster else ())}))
        raise InvalidArtifactUri(f"unsupported artifact URI {uri!r}: use one of {known}")


def cluster_refusal(uri: str) -> str | None:
    """Why KServe on a cluster cannot read ``uri`` by itself, or None. An ``ai://`` URI is read through
    an object store secret, whose keys the kserve backend does not hand to KServe's storage-initializer."""
    if urlparse(uri).scheme != OBJECT_STORE_SCHEME:
        return None
    return (f"artifact URI {uri!r} is read through an object store secret, which the kserve backend does not pass "
            "to KServe: register the model at a URI the cluster reads by itself (s3:// with the cluster's own "
            "credentials, gs://, https://, pvc://)")


def object_path(uri: str) -> str:
    """The path an ``ai://`` URI names inside its object store: no ``.`` or ``..`` in it."""
    path = unquote(urlparse(uri).path).strip("/")
    if any(part in ("..", ".") for part in PurePosixPath(path).parts):
        raise InvalidArtifactUri(f"artifact URI {uri!r} may not contain '.' or '..' in its path")
    return path


def resolve(uri: str, secret: ObjectStoreSecret, group: str, roots: FileRoots) -> Source:
    """An ``ai://`` URI resolved through one object store secret."""
    relative = object_path(uri)
    if secret.type == LOCAL:
        return Source(_local_object(uri, secret, relative, roots, group).as_uri())
    if secret.type == S3:
        if not secret.bucket:
            raise InvalidArtifactUri(f"object store secret {secret.name!r} has no bucket")
        key = "/".join(part for part in ((secret.path_prefix or "").strip("/"), relative) if part)
        return Source(f"s3://{secret.bucket}/{key}", s3=S3Access.of(secret), group=group)
    raise InvalidArtifactUri(f"object store secret {secret.name!r} is of type {secret.type!r}, which zeroserve "
                             f"cannot read (it reads {', '.join(OBJECT_STORE_TYPES)})")


def _local_object(uri: str, secret: ObjectStoreSecret, relative: str, roots: FileRoots, group: str) -> Path:
    base = roots.directory(secret.path_prefix or "")
    real = (base / relative).resolve()
    # Confined to the secret's directory, not only to the roots: the secret is what the group was given.
    links = [entry.resolve() for entry in real.rglob("*") if entry.is_symlink()] if real.is_dir() else []
    for inside in [real, *links]:
        if not (inside == base or inside.is_relative_to(base)):
            raise InvalidArtifactUri(f"artifact URI {uri!r} leads outside the directory of object store "
                                     f"secret {secret.name!r}")
    roots.real_path(real.as_uri(), group)
    return real
