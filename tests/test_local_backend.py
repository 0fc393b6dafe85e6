"""The local backend on its own: GPU bookkeeping, refusals, and the activator's bounds."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest
from conftest import until
from models import train_iris_sklearn

from zeroserve.artifacts.cache import ModelCache
from zeroserve.backends.local import LocalBackend
from zeroserve.core.bus import Bus
from zeroserve.deployments.logs import DeploymentLogs
from zeroserve.errors import ArtifactNotFound, InvalidConfiguration, ModelLoadFailed, NoGPU, Overloaded
from zeroserve.serving.gpus import GpuInventory
from zeroserve.serving.spec import ServiceSpec
from zeroserve.settings import Settings
from zeroserve.templates.plans import load_resource_plans
from zeroserve.templates.render import render
from zeroserve.templates.serving import load_templates


@pytest.fixture
async def bus(nats_server, settings) -> Bus:
    bus = await Bus.connect(nats_server.url, settings)
    yield bus
    await bus.close()


def inference_service(settings: Settings, model_dir: Path, plan: str = "starter", **parameters: str) -> dict:
    template = load_templates(settings.templates_dir)["sklearn"]
    return render(template, deployment_id="iris", group="default",
                  parameters={"resourcePlan": plan, **parameters}, artifacts={"model": model_dir.as_uri()},
                  plans=load_resource_plans(settings), settings=settings)


async def backend_with(settings: Settings, bus: Bus, gpus: GpuInventory) -> LocalBackend:
    logs = DeploymentLogs(bus)
    logs.start()
    return LocalBackend(settings, ModelCache(settings), logs, gpus)


def environment(pid: int) -> dict[str, str]:
    raw = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    return dict(item.decode().split("=", 1) for item in raw if b"=" in item)


def parent_of(pid: int) -> int:
    return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])


@pytest.mark.slow
async def test_a_gpu_replica_gets_its_own_gpu_and_a_cpu_replica_none(settings, bus):
    model_dir = train_iris_sklearn(settings.data_dir / "iris")
    backend = await backend_with(settings, bus, GpuInventory([0, 1]))
    try:
        assert await backend.apply(inference_service(settings, model_dir, "infer.s", maxReplicas="2"))
        forks = backend.autoscaler.forks
        assert forks is not None
        await asyncio.wait_for(forks.wait_ready(), 60)  # CPU replicas are forked from here on
        async with backend.activator.assign("default", "iris") as first:
            assert first.cold
            assert first.replica.gpus == [0]
            assert backend.gpus.free == 1
            # Forked from the fork server, which never loaded NVIDIA's driver (it says so when ready),
            # with its GPU named before anything in it could touch CUDA: the replica says which.
            assert forks.gpu_forks
            assert parent_of(first.replica.process.pid) == forks._process.pid
            await until(lambda: any("with GPU 0" in line for line in first.replica.last_lines),
                        what="the replica to say it serves with GPU 0")
        await backend.stop("default", "iris")
        assert backend.gpus.free == 2, "a stopped replica gives its GPU back"

        assert await backend.apply(inference_service(settings, model_dir, "starter"))
        async with backend.activator.assign("default", "iris") as cpu:
            assert cpu.replica.gpus == []
            env = environment(cpu.replica.process.pid)
            assert env["CUDA_VISIBLE_DEVICES"] == ""
            assert parent_of(cpu.replica.process.pid) == forks._process.pid, "a CPU replica is a fork"
            # The starter plan's one CPU: one core (what a replica's code sees: test_replica_bounds.py).
            if len(os.sched_getaffinity(0)) > 1:
                assert len(os.sched_getaffinity(cpu.replica.process.pid)) == 1
    finally:
        await backend.close()


async def test_a_plan_with_more_gpus_than_the_machine_has_is_refused_with_nogpu(settings, bus):
    model_dir = train_iris_sklearn(settings.data_dir / "iris")
    backend = await backend_with(settings, bus, GpuInventory([]))
    try:
        with pytest.raises(NoGPU, match="asks for 1 GPU"):
            await backend.apply(inference_service(settings, model_dir, "infer.m"))
        assert backend.services == {}
    finally:
        await backend.close()


async def test_an_unknown_model_format_or_an_empty_model_directory_is_refused(settings, bus):
    model_dir = train_iris_sklearn(settings.data_dir / "iris")
    backend = await backend_with(settings, bus, GpuInventory([]))
    try:
        isvc = inference_service(settings, model_dir)
        isvc["spec"]["predictor"]["model"]["modelFormat"]["name"] = "tensorflow"
        with pytest.raises(ModelLoadFailed, match="no local runtime for model format 'tensorflow'"):
            await backend.apply(isvc)
        empty = settings.data_dir / "empty"
        empty.mkdir()
        (empty / ".hidden").write_text("")
        with pytest.raises(ArtifactNotFound, match="No model found"):
            await backend.apply(inference_service(settings, empty))
    finally:
        await backend.close()


def test_the_backend_reads_replicas_and_gpus_from_the_inference_service(settings, tmp_path):
    isvc = inference_service(settings, tmp_path, "infer.s", minReplicas="1", maxReplicas="3", scaleTarget="2")
    spec = ServiceSpec.from_inference_service(isvc)
    assert (spec.min_replicas, spec.max_replicas, spec.target_concurrency, spec.gpus) == (1, 3, 2, 1)
    assert spec.model_format == "sklearn" and spec.storage_uri == tmp_path.as_uri()
    with pytest.raises(InvalidConfiguration):
        ServiceSpec.from_inference_service({"metadata": {}, "spec": {}})


def test_a_predictor_of_containers_runs_here_as_the_custom_runtime_serving_its_storage_uri(settings, tmp_path):
    template = load_templates(settings.templates_dir)["custom"]
    isvc = render(template, deployment_id="mine", group="default", artifacts={"model": tmp_path.as_uri()},
                  parameters={"image": "docker.io/example/predictor:1", "resourcePlan": "infer.s"},
                  plans=load_resource_plans(settings), settings=settings)
    spec = ServiceSpec.from_inference_service(isvc)
    assert (spec.model_format, spec.storage_uri, spec.gpus) == ("custom", tmp_path.as_uri(), 1)

    del isvc["spec"]["predictor"]["containers"][0]["env"]
    with pytest.raises(InvalidConfiguration, match="give the kserve-container container env STORAGE_URI"):
        ServiceSpec.from_inference_service(isvc)


@pytest.mark.slow
async def test_requests_beyond_the_activator_queue_get_overloaded_not_a_hang(settings, bus):
    settings.activator_queue_limit = 2
    model_dir = train_iris_sklearn(settings.data_dir / "iris")
    backend = await backend_with(settings, bus, GpuInventory([]))

    async def hold() -> bool:
        async with backend.activator.assign("default", "iris") as assignment:
            return assignment.cold

    try:
        await backend.apply(inference_service(settings, model_dir))
        waiting = [asyncio.create_task(hold()) for _ in range(2)]
        await asyncio.sleep(0.05)
        with pytest.raises(Overloaded):
            await hold()
        assert await asyncio.gather(*waiting) == [True, True]
    finally:
        await backend.close()
