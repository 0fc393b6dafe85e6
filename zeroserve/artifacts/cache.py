"""The local model cache: the directory where artifacts are staged on this machine, one
sub-directory per URI, fetched once with ``kserve-storage`` (which knows ``file://``, ``s3://``,
``gs://``, ``https://``, ``hf://`` and more) or, for an S3 object store secret, with boto3 and that
secret's keys. A copy fetched with a group's keys is cached apart from everyone else's, so another
group cannot reach it by naming the same bucket. Staging runs in a thread, and so do the checks of
a ``file://`` URI (which walk its directory for links): downloads, copies and walks never block the
event loop.
"""

from __future__ import annotations

import asyncio
import logging
import shutil
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

from zeroserve.artifacts.object_stores import download_s3, object_store_of
from zeroserve.artifacts.uris import FileRoots, Source, check_uri, resolve
from zeroserve.errors import ArtifactNotFound, InvalidArtifactUri, ZeroserveError
from zeroserve.events import content_id
from zeroserve.redaction import redact
from zeroserve.settings import Settings

if TYPE_CHECKING:
    from zeroserve.core.store import ObjectStoreSecret, Registry

log = logging.getLogger(__name__)

_COMPLETE = ".zeroserve-staged"


class ModelCache:
    """The directory of staged artifacts, one sub-directory per URI (per group and URI for private copies)."""

    def __init__(self, settings: Settings) -> None:
        self.root = settings.model_cache_dir.resolve()
        self.roots = FileRoots(settings.allowed_file_roots)
        # One staging per copy at a time: an artifact and a deployment of it often arrive together.
        self._staging: dict[Path, asyncio.Lock] = {}

    def check(self, uri: str) -> None:
        """Refuse a URI that zeroserve must not or cannot read (an ``ai://`` URI: its form only)."""
        check_uri(uri, self.roots)

    async def locate(self, uri: str, group: str, secrets: Registry[ObjectStoreSecret]) -> Source:
        """Where ``uri`` really is for ``group``: ``ai://`` through the group's object store secret."""
        await asyncio.to_thread(self.check, uri)
        name = object_store_of(uri)
        if name is None:
            return Source(uri)
        secret = await secrets.get(group, name)
        if secret is None:
            raise InvalidArtifactUri(f"artifact URI {uri!r} names object store secret {name!r}, which resource "
                                     f"group {group} does not have: create it with POST /v2/admin/objectStoreSecrets")
        return await asyncio.to_thread(resolve, uri, secret, group, self.roots)

    def local_directory(self, directory: str) -> Path:
        """The real path of a local object store's directory, if it lies inside an allowed root."""
        return self.roots.directory(directory)

    def path(self, uri: str, group: str | None = None) -> Path:
        """Where a URI's files are kept: a group's private copy (fetched with its keys) apart from the rest."""
        identity = (uri,) if group is None else (group, uri)
        return self.root / content_id(*identity, length=24)

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
        await asyncio.to_thread(self.check, source.uri)
        target = self.path(source.uri, source.group if source.private else None)
        async with self._staging.setdefault(target, asyncio.Lock()):
            if (target / _COMPLETE).exists():
                return target
            return await asyncio.to_thread(self._stage, source, target)

    def _stage(self, source: Source, target: Path) -> Path:
        from kserve_storage import Storage  # heavy (boto3, azure, gcs): import when first needed

        uri = source.uri
        local = uri.startswith("file:")
        path = str(self.roots.real_path(uri)) if local else uri
        if local and not Path(path).exists():
            raise ArtifactNotFound(f"nothing at {uri}")
        self.root.mkdir(parents=True, exist_ok=True)
        # A fresh directory per attempt: a crashed earlier attempt's leftovers cannot get in the way.
        partial = Path(tempfile.mkdtemp(prefix=f"{target.name}.", suffix=".partial", dir=self.root))
        try:
            if source.s3 is not None:
                download_s3(uri, source.s3, partial)
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
