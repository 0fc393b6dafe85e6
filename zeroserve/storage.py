"""Where model files come from and where they are kept on this machine.

An artifact URI is checked before it is registered (scheme known; a ``file://`` URI must resolve,
symlinks followed, inside one of the configured roots, so ``..`` or a symlink cannot reach the
rest of the disk), then staged into the local model cache with ``kserve-storage``, which knows
``file://``, ``s3://``, ``gs://``, ``https://``, ``hf://`` and more. Staging runs in a thread:
downloads and copies never block the event loop.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import shutil
import tempfile
from pathlib import Path
from urllib.parse import unquote, urlparse

from zeroserve.errors import ArtifactNotFound, InvalidArtifactUri, ZeroserveError
from zeroserve.settings import Settings

log = logging.getLogger(__name__)

REMOTE_SCHEMES = {"s3", "gs", "https", "http", "hf", "hdfs", "webhdfs"}
_COMPLETE = ".zeroserve-staged"


def redact(url: str) -> str:
    """``url`` without what may be a secret: a password in it, a (pre-signed) query string."""
    parsed = urlparse(url)
    netloc = parsed.netloc
    if parsed.password is not None:
        netloc = netloc.replace(f":{parsed.password}@", ":***@", 1)
    return parsed._replace(netloc=netloc, query="***" if parsed.query else "").geturl()


class ModelCache:
    """The directory of staged artifacts, one sub-directory per URI."""

    def __init__(self, settings: Settings) -> None:
        self.root = settings.model_cache_dir.resolve()
        self.file_roots = settings.allowed_file_roots
        # One staging per URI at a time: an artifact and a deployment of it often arrive together.
        self._staging: dict[str, asyncio.Lock] = {}

    def check(self, uri: str) -> None:
        """Refuse a URI that zeroserve must not or cannot read."""
        parsed = urlparse(uri)
        if parsed.scheme == "file":
            self.local_source(uri)
        elif parsed.scheme not in REMOTE_SCHEMES:
            known = ", ".join(sorted({"file", *REMOTE_SCHEMES}))
            raise InvalidArtifactUri(f"unsupported artifact URI {uri!r}: use one of {known}")

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

    def path(self, uri: str) -> Path:
        return self.root / hashlib.sha256(uri.encode()).hexdigest()[:24]

    def staged(self, uri: str) -> Path | None:
        target = self.path(uri)
        return target if (target / _COMPLETE).exists() else None

    async def stage(self, uri: str) -> Path:
        """The local directory holding the artifact's files, downloading them once."""
        self.check(uri)
        async with self._staging.setdefault(uri, asyncio.Lock()):
            ready = self.staged(uri)
            if ready is not None:
                return ready
            return await asyncio.to_thread(self._stage, uri)

    def _stage(self, uri: str) -> Path:
        from kserve_storage import Storage  # heavy (boto3, azure, gcs): import when first needed

        target = self.path(uri)
        source = str(self.local_source(uri)) if uri.startswith("file:") else uri
        if uri.startswith("file:") and not Path(source).exists():
            raise ArtifactNotFound(f"nothing at {uri}")
        self.root.mkdir(parents=True, exist_ok=True)
        # A fresh directory per attempt: a crashed earlier attempt's leftovers cannot get in the way.
        partial = Path(tempfile.mkdtemp(prefix=f"{target.name}.", suffix=".partial", dir=self.root))
        try:
            Storage.download(source, out_dir=str(partial))
        except Exception as error:  # kserve-storage raises plain exceptions of many kinds
            shutil.rmtree(partial, ignore_errors=True)
            if uri.startswith("file:"):
                raise ArtifactNotFound(f"cannot read {uri}: {error}") from error
            # The error text of a download may repeat the URL, credentials and all.
            detail = str(error).replace(uri, redact(uri))
            raise ZeroserveError(f"cannot download {redact(uri)}: {detail}", reason="ArtifactDownloadFailed") from error
        (partial / _COMPLETE).touch()
        shutil.rmtree(target, ignore_errors=True)
        partial.rename(target)
        log.info("staged %s into %s", redact(uri), target)
        return target
