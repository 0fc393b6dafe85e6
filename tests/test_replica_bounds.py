"""A replica on this machine within its plan, as a user sees it: the plan's CPU and memory read from
the rendered InferenceService, a replica past its memory stopped and its deployment DEAD with
``MemoryLimitExceeded``, a model that runs out of GPU memory (loading or serving) DEAD with
``GpuOutOfMemory``, and a plan with more GPUs than the machine has refused with ``NoGPU``; all with
the replica's last lines. The GPU inventory is injected (``Settings.gpus``): the build machines have
none, and torch raises its own ``OutOfMemoryError`` from a custom predictor
(tests/data/predictors/faulty)."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
from conftest import operator, with_templates
from test_end_to_end import publish

from zeroserve.events import ArtifactCreated, DeploymentRequested
from zeroserve.node import Node
from zeroserve.serving.bounds import ReplicaBounds, quantity
from zeroserve.serving.runtimes.faults import describe, is_gpu_out_of_memory
from zeroserve.serving.spec import ServiceSpec
from zeroserve.settings import Settings
from zeroserve.templates.plans import load_resource_plans
from zeroserve.templates.render import render
from zeroserve.templates.serving import load_templates

DATA = Path(__file__).parent / "data"
# Far above what a replica of the faulty predictor holds by itself (about 100 MB spawned, less forked).
SMALL_MEMORY = 300_000_000


@pytest.fixture
def settings(settings: Settings, tmp_path: Path) -> Settings:
    """The shipped templates and one for the custom runtime on any plan; a small plan; one GPU."""
    with_templates(settings, tmp_path / "templates", DATA / "templates" / "custom-planned.yaml")
    settings.resource_plans = {"small": {"cpu": "1", "memory": str(SMALL_MEMORY)},
                               "infer.2x": {"cpu": "3", "memory": "10G", "gpus": 2}}
    settings.gpus = [0]
    return settings


def test_the_plan_s_cpu_and_memory_become_the_replica_s_bounds(settings: Settings, tmp_path: Path) -> None:
    template = load_templates(settings.templates_dir)["custom-planned"]
    plans = load_resource_plans(settings)
    for plan, cpu, memory in (("starter", 1.0, 3_000_000_000), ("infer.s", 3.0, 10_000_000_000),
                              ("small", 1.0, SMALL_MEMORY)):
        isvc = render(template, deployment_id="d0", group="default", parameters={"resourcePlan": plan},
                      artifacts={"model": tmp_path.as_uri()}, plans=plans, settings=settings)
        assert ServiceSpec.from_inference_service(isvc).bounds == ReplicaBounds(cpu=cpu, memory=memory)
    assert [quantity(text) for text in ("500m", "2", "3Gi", "1.5G", "128974848", "1e3")] == [
        0.5, 2.0, 3 * 2**30, 1.5e9, 128974848.0, 1000.0]
    with pytest.raises(ValueError):
        quantity("lots")


def test_a_plan_gets_as_many_cores_and_threads_as_its_cpu_and_the_machine_allow() -> None:
    machine = sorted(os.sched_getaffinity(0))
    half = ReplicaBounds(cpu=0.5)
    if len(machine) > 1:
        assert half.cores == 1 and half.environment()["OMP_NUM_THREADS"] == "1"
        assert half.placement(1) == {machine[0]} and half.placement(2) == {machine[1]}
    big = ReplicaBounds(cpu=len(machine) + 1)
    assert big.cores is None and big.placement(1) is None
    assert big.environment()["OMP_NUM_THREADS"] == str(len(machine))
    assert ReplicaBounds().environment() == {}


def test_torch_s_gpu_out_of_memory_is_recognised_by_type_message_and_cause() -> None:
    import torch

    error = torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
    assert is_gpu_out_of_memory(error)
    assert is_gpu_out_of_memory(RuntimeError("CUDA error: out of memory"))
    try:
        try:
            raise error
        except torch.cuda.OutOfMemoryError as inner:
            raise ValueError("the model could not be moved to cuda:0") from inner
    except ValueError as wrapped:
        assert is_gpu_out_of_memory(wrapped)
        assert describe(wrapped) == "CUDA out of memory. Tried to allocate 2.00 GiB"
    assert not is_gpu_out_of_memory(MemoryError())
    assert not is_gpu_out_of_memory(RuntimeError("DefaultCPUAllocator: can't allocate memory"))


async def deploy_faulty(zeroserve: Node, listen, deployment_id: str, fault: dict, plan: str) -> str:
    """The faulty predictor deployed on ``plan`` with ``fault`` (RUNNING at zero): its predict URL."""
    statuses = await listen(zeroserve, "zeroserve.default.deployment.status")
    artifacts = await listen(zeroserve, "zeroserve.default.artifact.status")
    source = zeroserve.settings.data_dir / "sources" / deployment_id
    shutil.copytree(DATA / "predictors" / "faulty", source)
    (source / "fault.json").write_text(json.dumps(fault))
    await publish(zeroserve, ArtifactCreated(id=f"{deployment_id}-code", name=deployment_id, url=source.as_uri()))
    await artifacts.wait_for(lambda e: e["id"] == f"{deployment_id}-code" and e["status"] == "staged")
    await publish(zeroserve, DeploymentRequested(id=deployment_id, executable_id="custom-planned",
                                                 input_artifacts={"model": f"{deployment_id}-code"},
                                                 parameters={"resourcePlan": plan}))
    running = await statuses.wait_for(lambda e: e["id"] == deployment_id and e["status"] in ("RUNNING", "DEAD"))
    assert running["status"] == "RUNNING", running
    return f"{running['deploymentUrl']}/v1/models/{deployment_id}:predict"


@pytest.mark.slow
async def test_a_replica_runs_on_its_plan_s_cores_with_as_many_threads(settings: Settings, listen) -> None:
    async with Node(settings) as zeroserve:
        url = await deploy_faulty(zeroserve, listen, "within", {}, "small")
        async with operator(zeroserve, timeout=60) as client:
            answer = await client.post(url, json={"instances": [[1.0]]})
    assert answer.status_code == 200, answer.text
    assert answer.json() == {"cores": 1, "threads": "1"}  # the small plan's one CPU


async def dead_after_calls(zeroserve: Node, listen, deployment_id: str, url: str) -> dict:
    """Call until the deployment is DEAD: its status; a call after that is refused with its reason."""
    statuses = await listen(zeroserve, "zeroserve.default.deployment.status")
    async with operator(zeroserve, timeout=60) as client:
        await client.post(url, json={"instances": [[1.0]]})  # answered, or cut short as the replica goes
        dead = await statuses.wait_for(lambda e: e["id"] == deployment_id and e["status"] == "DEAD", timeout=60)
        after = await client.post(url, json={"instances": [[1.0]]})
    assert after.status_code == 503 and after.json()["error"]["code"] == dead["reason"], after.text
    return dead


@pytest.mark.slow
async def test_a_replica_past_its_plan_s_memory_is_stopped_and_the_deployment_is_dead_with_memory_limit_exceeded(
    settings: Settings, listen,
) -> None:
    async with Node(settings) as zeroserve:
        for where in ("load", "predict"):
            deployment_id = f"hog-at-{where}"
            url = await deploy_faulty(zeroserve, listen, deployment_id,
                                      {"allocate": 2 * SMALL_MEMORY, "at": where}, "small")
            dead = await dead_after_calls(zeroserve, listen, deployment_id, url)
            assert dead["reason"] == "MemoryLimitExceeded", dead
            assert "more than its plan's 300 MB: stopped" in dead["message"]
            used = int(dead["message"].split(" used ")[1].split(" MB")[0])
            assert used > 300, dead["message"]
            assert f"allocating {2 * SMALL_MEMORY} bytes at {where}" in dead["message"], "its last lines"


@pytest.mark.slow
async def test_a_model_out_of_gpu_memory_is_dead_with_gpu_out_of_memory_and_a_plan_beyond_the_gpus_with_nogpu(
    settings: Settings, listen,
) -> None:
    async with Node(settings) as zeroserve:
        for where in ("load", "predict"):
            deployment_id = f"oom-at-{where}"
            url = await deploy_faulty(zeroserve, listen, deployment_id, {"gpu_out_of_memory": where}, "infer.s")
            dead = await dead_after_calls(zeroserve, listen, deployment_id, url)
            assert dead["reason"] == "GpuOutOfMemory", dead
            assert "ran out of GPU memory; last lines:" in dead["message"]
            assert "GpuOutOfMemory: CUDA out of memory. Tried to allocate 2.00 GiB" in dead["message"]
            assert "faulty predictor loading" in dead["message"]

        statuses = await listen(zeroserve, "zeroserve.default.deployment.status")
        await publish(zeroserve, DeploymentRequested(id="two-gpus", executable_id="custom-planned",
                                                     input_artifacts={"model": "oom-at-load-code"},
                                                     parameters={"resourcePlan": "infer.2x"}))
        dead = await statuses.wait_for(lambda e: e["id"] == "two-gpus" and e["status"] == "DEAD")
        assert dead["reason"] == "NoGPU"
        assert "asks for 2 GPU(s) per replica and this machine has 1" in dead["message"]
