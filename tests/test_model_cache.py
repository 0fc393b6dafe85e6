"""The bounded model cache: least-recently-used eviction of artifacts no deployment uses, artifacts
too large for it refused, staging side by side, entries left by a crash, a large download streamed,
and deployments whose artifact was evicted staging it again (real nats-server, real replicas)."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import http.server
import io
import logging
import shutil
import tarfile
import threading
import tracemalloc
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import operator
from models import IRIS_ROWS, train_iris_sklearn
from prometheus_client import REGISTRY

from zeroserve.artifacts.cache import ModelCache
from zeroserve.errors import ArtifactTooLarge, ModelCacheFull
from zeroserve.events import ArtifactCreated, DeploymentRequested, DeploymentStopped, new_event
from zeroserve.node import Node

MiB = 1 << 20


def archive(path: Path, size: int, model: Path | None = None) -> str:
    """A tar of ``size`` bytes of weights (and a model's files): staging unpacks it into the cache,
    where it takes that room (a plain local directory is linked and takes none). Its file:// URI."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(path, "w") as tar:
        weights = tarfile.TarInfo("weights.bin")
        weights.size = size
        tar.addfile(weights, io.BytesIO(bytes(size)))
        if model is not None:
            for file in model.iterdir():
                tar.add(file, arcname=file.name)
    return path.as_uri()


def evictions() -> float:
    return REGISTRY.get_sample_value("zeroserve_model_cache_evictions_total") or 0.0


def cache_bytes() -> float | None:
    return REGISTRY.get_sample_value("zeroserve_model_cache_bytes")


@pytest.fixture
def sources(settings) -> Path:
    settings.model_cache_max_bytes = 3 * MiB
    return settings.data_dir / "sources"


async def test_staging_past_the_bound_evicts_the_least_recently_used_artifact(settings, sources, caplog):
    cache = ModelCache(settings)
    a, b, c, d = (archive(sources / f"{name}.tar", MiB) for name in "abcd")
    for uri in (a, b, c):
        await cache.stage(uri)
    await cache.stage(a)  # used again: b is now the least recently used
    before = evictions()
    with caplog.at_level(logging.WARNING, logger="zeroserve.artifacts.cache"):
        await cache.stage(d)

    assert cache.staged(b) is None
    assert all(cache.staged(uri) is not None for uri in (a, c, d))
    assert evictions() == before + 1
    assert cache_bytes() == 3 * MiB
    assert any("evicted" in r.getMessage() and "b.tar" in r.getMessage() for r in caplog.records)


async def test_an_artifact_in_use_is_never_evicted(settings, sources):
    cache = ModelCache(settings)
    a, b, c, d = (archive(sources / f"{name}.tar", MiB) for name in "abcd")
    async with cache.holding(a) as held:  # as the local backend holds a deployment's artifact
        for uri in (b, c, d):
            await cache.stage(uri)
        assert cache.staged(a) == held
        with pytest.raises(ModelCacheFull) as full:
            # b, c, d are all newer than a: only a could make room, and it is in use.
            await cache.stage(archive(sources / "e.tar", 3 * MiB - 1))
    assert "deployments use" in full.value.message and "ZEROSERVE_MODEL_CACHE_MAX_BYTES" in full.value.message
    assert cache.staged(a) == held, "refused without evicting anything"
    assert [p for p in cache.root.iterdir() if p.name.endswith(".partial")] == [], "the refused download is gone"


async def test_an_artifact_larger_than_the_whole_cache_is_refused_without_evicting_anything(settings, sources):
    cache = ModelCache(settings)
    small = archive(sources / "small.tar", MiB)
    await cache.stage(small)
    before = evictions()
    with pytest.raises(ArtifactTooLarge) as refused:
        await cache.stage(archive(sources / "huge.tar", 4 * MiB))
    assert refused.value.reason == "ArtifactTooLarge"
    assert "4.0 MiB, more than the whole model cache (3.0 MiB" in refused.value.message
    assert cache.staged(small) is not None and evictions() == before
    assert [p.name for p in cache.root.iterdir()] == [cache.staged(small).name]


async def test_artifacts_staged_side_by_side_stay_under_the_bound(settings, sources):
    cache = ModelCache(settings)
    uris = [archive(sources / f"{n}.tar", MiB) for n in range(6)]
    await cache.stage(uris[0])
    await asyncio.gather(*(cache.stage(uri) for uri in uris[1:]))  # each fits: none is refused

    kept = [uri for uri in uris if cache.staged(uri) is not None]
    assert len(kept) == 3, "as many as fit, no more"
    assert sum(p.stat().st_size for p in cache.root.rglob("weights.bin")) <= settings.model_cache_max_bytes
    assert all(not p.name.endswith(".partial") for p in cache.root.iterdir())


async def test_what_a_crash_left_half_staged_never_counts_and_is_swept(settings, sources):
    uri = archive(sources / "model.tar", MiB)
    cache = ModelCache(settings)
    target = cache.path(uri)
    # A download cut short (a partial directory of an earlier process) and an eviction cut short
    # (its marker removed first): neither is staged, and the next placement sweeps both.
    (cache.root / f"{target.name}.0123456789ab.partial").mkdir(parents=True)
    (cache.root / f"{target.name}.0123456789ab.partial" / "weights.bin").write_bytes(bytes(MiB))
    target.mkdir()
    (target / "weights.bin").write_bytes(b"half")
    assert cache.staged(uri) is None

    staged = await cache.stage(uri)
    assert (staged / "weights.bin").stat().st_size == MiB
    assert [p.name for p in cache.root.iterdir()] == [target.name]


def sparse_file(path: Path, size: int) -> None:
    """``size`` bytes that take no room at the source: the download still moves every one."""
    with open(path, "wb") as file:
        file.truncate(size)


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args: object) -> None:
        pass


@contextlib.contextmanager
def http_server(directory: Path) -> Iterator[str]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_Quiet, directory=str(directory)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


@pytest.mark.slow
async def test_a_large_download_streams_to_disk_without_reading_it_into_memory(settings, tmp_path):
    settings.model_cache_max_bytes = 1 << 30
    served = tmp_path / "served"
    served.mkdir()
    size = 300 * MiB
    sparse_file(served / "weights.bin", size)
    cache = ModelCache(settings)
    with http_server(served) as url:
        tracemalloc.start()
        try:
            staged = await cache.stage(f"{url}/weights.bin")
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
    assert (staged / "weights.bin").stat().st_size == size
    assert peak < 32 * MiB, f"staging {size} bytes held {peak} bytes of Python objects at once"


# -- deployments (real nats-server, real replicas) ----------------------------------------------------


async def publish(zeroserve: Node, data) -> None:
    assert zeroserve.platform is not None
    await zeroserve.platform.bus.publish(new_event(data, source="/tests"), "default")


async def predict(zeroserve: Node, deployment_id: str) -> dict:
    url = f"{zeroserve.url}/v2/inference/deployments/{deployment_id}/v1/models/{deployment_id}:predict"
    async with operator(zeroserve, timeout=60) as client:
        answer = await client.post(url, json={"instances": IRIS_ROWS})
    assert answer.status_code == 200, answer.text
    return answer.json()


@pytest.mark.slow
async def test_a_deployment_holds_its_artifact_and_an_evicted_one_is_staged_again_when_it_starts_again(
        settings, sources, listen):
    settings.model_cache_max_bytes = int(1.5 * MiB)
    iris = archive(sources / "iris.tar", MiB, model=train_iris_sklearn(sources / "iris"))
    other = archive(sources / "other.tar", MiB)
    async with Node(settings) as zeroserve:
        artifacts = await listen(zeroserve, "zeroserve.default.artifact.status")
        statuses = await listen(zeroserve, "zeroserve.default.deployment.status")
        await publish(zeroserve, ArtifactCreated(id="iris-model", name="iris", url=iris))
        await artifacts.wait_for(lambda e: e["id"] == "iris-model" and e["status"] == "staged")
        await publish(zeroserve, DeploymentRequested(id="iris", executable_id="sklearn",
                                                     input_artifacts={"model": "iris-model"}))
        running = await statuses.wait_for(lambda e: e["id"] == "iris" and e["status"] == "RUNNING")
        assert running["runningReplicas"] == 0

        # RUNNING at zero replicas: it will cold-start from its artifact, which therefore stays.
        await publish(zeroserve, ArtifactCreated(id="other", name="other", url=other))
        refused = await artifacts.wait_for(lambda e: e["id"] == "other" and e["status"] != "registered")
        assert refused["status"] == "rejected" and refused["reason"] == "ModelCacheFull"
        assert (await predict(zeroserve, "iris"))["predictions"] == [1, 1]

        # Stopped, it uses nothing: the next artifact evicts its one.
        await publish(zeroserve, DeploymentStopped(id="iris"))
        await statuses.wait_for(lambda e: e["id"] == "iris" and e["status"] == "STOPPED")
        await publish(zeroserve, ArtifactCreated(id="other-again", name="other", url=other))
        await artifacts.wait_for(lambda e: e["id"] == "other-again" and e["status"] == "staged")
        assert zeroserve.platform.models.staged(iris) is None

        # Started again: its artifact is staged again (evicting the other), said in its log, and it
        # serves from zero.
        logs = await listen(zeroserve, "zeroserve.default.deployment.log")
        since = len(statuses.json())
        await publish(zeroserve, DeploymentRequested(id="iris", executable_id="sklearn",
                                                     input_artifacts={"model": "iris-model"}))
        await statuses.wait_for(lambda e: e["id"] == "iris" and e["status"] == "RUNNING", since=since)
        assert zeroserve.platform.models.staged(iris) is not None
        assert zeroserve.platform.models.staged(other) is None
        assert f"staging {iris} into the model cache" in [e["message"] for e in logs.json()]
        assert (await predict(zeroserve, "iris"))["predictions"] == [1, 1]


@pytest.mark.slow
async def test_a_cold_start_stages_an_artifact_whose_entry_went_again(settings, listen):
    model_dir = train_iris_sklearn(settings.data_dir / "sources" / "iris")
    async with Node(settings) as zeroserve:
        artifacts = await listen(zeroserve, "zeroserve.default.artifact.status")
        statuses = await listen(zeroserve, "zeroserve.default.deployment.status")
        logs = await listen(zeroserve, "zeroserve.default.deployment.log")
        await publish(zeroserve, ArtifactCreated(id="iris-model", name="iris", url=model_dir.as_uri()))
        staged = await artifacts.wait_for(lambda e: e["id"] == "iris-model" and e["status"] == "staged")
        await publish(zeroserve, DeploymentRequested(id="iris", executable_id="sklearn",
                                                     input_artifacts={"model": "iris-model"}))
        await statuses.wait_for(lambda e: e["id"] == "iris" and e["status"] == "RUNNING")

        shutil.rmtree(staged["localPath"])  # gone from under a deployment at zero (by hand)
        since = len(logs.json())
        assert (await predict(zeroserve, "iris"))["predictions"] == [1, 1]
        await logs.wait_for(lambda e: e["message"] == f"staging {model_dir.as_uri()} into the model cache",
                            since=since)
        assert zeroserve.platform.models.staged(model_dir.as_uri()) == Path(staged["localPath"])
