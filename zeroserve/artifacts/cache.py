"""The local model cache: the directory where artifacts are staged on this machine, one
sub-directory per URI, fetched once with ``kserve-storage`` (which knows ``file://``, ``s3://``,
``gs://``, ``https://``, ``hf://`` and more) or, for an S3 object store secret, with boto3 and that
secret's keys. A copy fetched with a group's keys is cached apart from everyone else's, so another
group cannot reach it by naming the same bucket. Staging runs in a thread, and so do the checks of
a ``file://`` URI (which walk its directory for links): downloads, copies and walks never block the
event loop. Downloads stream to disk (kserve-storage and boto3 write in chunks); a ``file://``
artifact is linked, not copied, and takes no room.

The cache is bounded (``model_cache_max_bytes``): a staged artifact is placed once the least
recently used entries that no deployment uses are evicted to make room for it (``entries``). The
backend says what its deployments use (``add_user``), and ``holding`` keeps an entry from eviction
while a deployment is being applied; an artifact larger than the bound is refused, never thrashed.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import os
import shutil
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from pathlib import Path
from typing import TYPE_CHECKING

from zeroserve.artifacts import entries
from zeroserve.artifacts.entries import Entry
from zeroserve.artifacts.object_stores import download_s3, object_store_of
from zeroserve.artifacts.uris import FileRoots, Source, check_uri, cluster_refusal, resolve
from zeroserve.core import metrics
from zeroserve.errors import (
    ArtifactNotFound,
    ArtifactTooLarge,
    InvalidArtifactUri,
    ModelCacheFull,
    ZeroserveError,
)
from zeroserve.events import content_id
from zeroserve.redaction import redact
from zeroserve.settings import Settings

if TYPE_CHECKING:
    from zeroserve.core.store import ObjectStoreSecret, Registry

log = logging.getLogger(__name__)

# zeroserve's own files in the data directory (keys, addresses): no file:// artifact may lead to them.
PRIVATE_FILES = ("token.key", "credentials.json", "nats.url", "gateway.url")
# How often a download that is still under way says how far it got.
PROGRESS_S = 10.0
# Told how staging is getting on, in words (a deployment's log takes them).
Progress = Callable[[str], Awaitable[None]]


def _size(count: int) -> str:
    """``count`` bytes as a person reads them: 812 bytes, 3.2 MiB, 48.0 GiB."""
    if count < 1024:
        return f"{count} bytes"
    value, unit = count / 1024, "KiB"
    for larger in ("MiB", "GiB", "TiB"):
        if value < 1024:
            break
        value, unit = value / 1024, larger
    return f"{value:.1f} {unit}"


class ModelCache:
    """The directory of staged artifacts, one sub-directory per URI (per group and URI for private copies)."""

    def __init__(self, settings: Settings) -> None:
        self.root = settings.model_cache_dir.resolve()
        self.roots = FileRoots(settings.allowed_file_roots, uploads=settings.uploads_dir, private=[
            settings.nats_dir, settings.model_cache_dir, *(settings.data_dir / name for name in PRIVATE_FILES)])
        # On a cluster KServe reads an artifact, not this cache: pvc:// is readable, ai:// is not.
        self.cluster = settings.backend == "kserve"
        self.max_bytes = settings.model_cache_max_bytes
        # One staging per copy at a time: an artifact and a deployment of it often arrive together.
        self._staging: dict[Path, asyncio.Lock] = {}
        # Placing, evicting and finding entries, one at a time: an entry found staged is not being
        # evicted, and one being evicted is not handed out. Downloads run outside it, side by side.
        self._placing = asyncio.Lock()
        self._holds: collections.Counter[Path] = collections.Counter()
        self._users: list[Callable[[], Iterable[Path]]] = []
        # Who wants to hear how a download is getting on (a deployment's log), by entry.
        self._watchers: dict[Path, list[Progress]] = collections.defaultdict(list)
        # This process's partial directories carry it: any other one is a crashed download's, swept.
        self._partial_tag = uuid.uuid4().hex[:12]

    def check(self, uri: str, group: str | None = None) -> None:
        """Refuse a URI that zeroserve must not or cannot read (an ``ai://`` URI: its form only)."""
        check_uri(uri, self.roots, group, cluster=self.cluster)

    def deployable(self, uri: str) -> None:
        """Refuse, when a deployment is asked for, an artifact its model servers could not read."""
        if self.cluster and (reason := cluster_refusal(uri)) is not None:
            raise InvalidArtifactUri(reason)

    async def locate(self, uri: str, group: str, secrets: Registry[ObjectStoreSecret]) -> Source:
        """Where ``uri`` really is for ``group``: ``ai://`` through the group's object store secret."""
        await asyncio.to_thread(self.check, uri, group)
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
        return target if (target / entries.COMPLETE).exists() else None

    @staticmethod
    def touch(path: Path) -> bool:
        """Record a use of the entry at ``path``, for the least-recently-used order; False if it is not staged."""
        return entries.touch(path)

    # -- what is in use ---------------------------------------------------------------------------

    def add_user(self, users: Callable[[], Iterable[Path]]) -> None:
        """``users()`` names the entries someone uses now (the backend: its deployments'): never evicted."""
        self._users.append(users)

    def in_use(self) -> set[Path]:
        used = {path for path, count in self._holds.items() if count > 0}
        for users in self._users:
            used.update(users())
        return used

    @contextlib.asynccontextmanager
    async def holding(self, uri: str, group: str | None = None,
                      progress: Progress | None = None) -> AsyncIterator[Path]:
        """The artifact staged (as ``stage``), kept from eviction until the block ends."""
        path = await self.stage(uri, group, progress)
        # No await between stage's return and this: no placement can evict it in between.
        self._holds[path] += 1
        try:
            yield path
        finally:
            self._holds[path] -= 1
            if self._holds[path] <= 0:
                del self._holds[path]

    # -- staging ----------------------------------------------------------------------------------

    async def stage(self, uri: str | Source, group: str | None = None, progress: Progress | None = None) -> Path:
        """The local directory holding the artifact's files, downloading them once.

        With ``group``, a plain URI first finds the copy that group staged with its own keys (an
        ``ai://`` artifact of an S3 object store, resolved and staged when it was registered).
        ``progress`` hears that it must be staged and, while the download lasts, how far it got
        (whoever started that download).
        """
        source = uri if isinstance(uri, Source) else Source(uri)
        if group is not None and not source.private:
            private = self.path(source.uri, group)
            async with self._placing:
                if entries.touch(private):
                    return private
        if object_store_of(source.uri) is not None:
            raise InvalidArtifactUri(f"{source.uri!r} must be located through its resource group's object store "
                                     "secret before it can be staged")
        await asyncio.to_thread(self.check, source.uri)
        target = self.path(source.uri, source.group if source.private else None)
        if progress is not None and not (target / entries.COMPLETE).exists():
            await progress(f"staging {redact(source.uri)} into the model cache")
            self._watchers[target].append(progress)
        try:
            return await self._stage(source, target)
        finally:
            if progress is not None and progress in self._watchers.get(target, ()):
                self._watchers[target].remove(progress)
                if not self._watchers[target]:
                    del self._watchers[target]

    async def _stage(self, source: Source, target: Path) -> Path:
        async with self._staging.setdefault(target, asyncio.Lock()):
            async with self._placing:
                if entries.touch(target):
                    return target
            partial = self.root / f"{target.name}.{self._partial_tag}{entries.PARTIAL}"
            size = await self._download(source, target, partial)
            try:
                await self._place(source, target, partial, size)
            finally:  # placed: renamed away, nothing to remove; refused: its files go
                await asyncio.to_thread(shutil.rmtree, partial, True)
            return target

    async def _download(self, source: Source, target: Path, partial: Path) -> int:
        """Fetch into ``partial`` in a thread, saying how far it got while it takes long; its bytes."""
        fetching = asyncio.ensure_future(asyncio.to_thread(self._fetch, source, partial))
        while True:
            done, _ = await asyncio.wait({fetching}, timeout=PROGRESS_S)
            if done:
                return fetching.result()
            so_far = await asyncio.to_thread(entries.size_of, partial)
            said = f"staging {redact(source.uri)}: {_size(so_far)} so far"
            log.info("%s", said)
            for progress in list(self._watchers.get(target, ())):
                await progress(said)

    def _fetch(self, source: Source, partial: Path) -> int:
        from kserve_storage import Storage  # heavy (boto3, azure, gcs): import when first needed

        uri = source.uri
        local = uri.startswith("file:")
        path = str(self.roots.real_path(uri)) if local else uri
        if local and not Path(path).exists():
            raise ArtifactNotFound(f"nothing at {uri}")
        shutil.rmtree(partial, ignore_errors=True)  # an earlier attempt's leftovers cannot get in the way
        partial.mkdir(parents=True)
        try:
            if source.s3 is not None:
                download_s3(uri, source.s3, partial)
            else:
                Storage.download(path, out_dir=str(partial))
            return entries.size_of(partial)
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

    # -- the bound --------------------------------------------------------------------------------

    async def _place(self, source: Source, target: Path, partial: Path, size: int) -> None:
        """Make room for ``size`` bytes, evicting the least recently used entries no one uses, and
        move ``partial`` into place as ``target``; refuse what cannot fit."""
        uri = redact(source.uri)
        if size > self.max_bytes:
            raise ArtifactTooLarge(f"{uri} holds {_size(size)}, more than the whole model cache "
                                   f"({_size(self.max_bytes)}, setting ZEROSERVE_MODEL_CACHE_MAX_BYTES)")
        async with self._placing:
            in_use = self.in_use()
            placed = await asyncio.to_thread(self._make_room, target, partial, size, uri, in_use)
            if isinstance(placed, int):
                raise ModelCacheFull(
                    f"{uri} ({_size(size)}) does not fit in the model cache ({_size(self.max_bytes)}, setting "
                    f"ZEROSERVE_MODEL_CACHE_MAX_BYTES): {_size(placed)} of it hold artifacts that deployments "
                    "use, which are never evicted; stop a deployment or raise the bound")
            evicted, used = placed
        metrics.model_cache_bytes.set(used)
        for entry in evicted:
            metrics.model_cache_evictions.inc()
            log.warning("evicted %s (%s, least recently used, no deployment uses it) from the model cache "
                        "to make room for %s", entry.uri, _size(entry.bytes), uri)
        log.info("staged %s into %s (%s)", uri, target, _size(size))

    def _make_room(self, target: Path, partial: Path, size: int, uri: str,
                   in_use: set[Path]) -> tuple[list[Entry], int] | int:
        """Blocking: the entries evicted and the bytes in use after placing, or the bytes in use
        that kept it from fitting."""
        staged = [e for e in entries.read_entries(self.root, self._partials()) if e.path != target]
        used = sum(e.bytes for e in staged)
        evicted = entries.least_recently_used(staged, in_use, used + size - self.max_bytes)
        if evicted is None:
            return sum(e.bytes for e in staged if e.path in in_use)
        for entry in evicted:
            entries.remove(entry.path)
        entries.mark_complete(partial, uri, size)
        shutil.rmtree(target, ignore_errors=True)
        os.rename(partial, target)
        return evicted, used - sum(e.bytes for e in evicted) + size

    def _partials(self) -> list[Path]:
        """This process's partial directories (downloads under way): not swept as a crash's leftovers."""
        if not self.root.is_dir():
            return []
        return [p for p in self.root.iterdir() if p.name.endswith(f".{self._partial_tag}{entries.PARTIAL}")]
