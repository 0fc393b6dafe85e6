"""The embedded path end to end: events on a real nats-server deploy a real kserve model server
that starts on the first request and goes away when idle."""

from __future__ import annotations

import asyncio
import os

import httpx
import processes
import pytest
from conftest import operator
from models import IRIS_ROWS, train_iris_sklearn

from zeroserve.events import ArtifactCreated, DeploymentRequested, DeploymentStopped, Status, new_event
from zeroserve.node import Node

pytestmark = pytest.mark.slow


def replica_pids(zeroserve: Node) -> list[int]:
    """The model-server processes of the zeroserve this test runs in."""
    return processes.replica_pids(os.getpid())


async def publish(zeroserve: Node, data, group: str = "default", id: str | None = None):
    assert zeroserve.platform is not None
    return await zeroserve.platform.bus.publish(new_event(data, source="/tests", id=id), group)


async def request_sklearn(zeroserve: Node, id: str, artifact: str = "iris-model", **parameters: str):
    """Publish a deployment.requested of the sklearn template: a new deployment, or an update."""
    return await publish(zeroserve, DeploymentRequested(
        id=id, executable_id="sklearn", input_artifacts={"model": artifact}, parameters=parameters))


async def deploy_iris(zeroserve: Node, listen, deployment_id: str = "iris") -> dict:
    model_dir = train_iris_sklearn(zeroserve.settings.data_dir / "sources" / "iris")
    return await deploy_model(zeroserve, listen, deployment_id, model_dir, "iris-model",
                              minReplicas="0", maxReplicas="2")


async def deploy_model(zeroserve: Node, listen, deployment_id: str, model_dir, artifact_id: str,
                       **parameters: str) -> dict:
    """Register the model directory as an artifact and deploy it with the sklearn template: the RUNNING status."""
    artifacts = await listen(zeroserve, "zeroserve.default.artifact.status")
    statuses = await listen(zeroserve, "zeroserve.default.deployment.status")
    await publish(zeroserve, ArtifactCreated(id=artifact_id, name=deployment_id, url=model_dir.as_uri()))
    await artifacts.wait_for(lambda e: e["id"] == artifact_id and e["status"] == "staged")
    await request_sklearn(zeroserve, deployment_id, artifact_id, **parameters)
    return await statuses.wait_for(lambda e: e["id"] == deployment_id and e["status"] == "RUNNING")


async def test_an_event_deploys_a_model_that_serves_from_zero_and_returns_to_zero(settings, listen):
    settings.idle_window_s = 1.0
    async with Node(settings) as zeroserve:
        statuses = await listen(zeroserve, "zeroserve.default.deployment.status")
        logs = await listen(zeroserve, "zeroserve.default.deployment.log")
        running = await deploy_iris(zeroserve, listen)

        assert running["deploymentUrl"] == f"{zeroserve.url}/v2/inference/deployments/iris"
        assert running["runningReplicas"] == 0
        assert replica_pids(zeroserve) == []  # scale to zero: nothing runs before the first request
        seen = [e["status"] for e in statuses.json() if e["id"] == "iris"]
        assert seen[:3] == ["UNKNOWN", "PENDING", "RUNNING"]

        url = f"{running['deploymentUrl']}/v1/models/iris:predict"
        async with operator(zeroserve, timeout=60) as client:
            cold = await client.post(url, json={"instances": IRIS_ROWS})
            warm = await client.post(url, json={"instances": IRIS_ROWS})
            v2 = await client.post(f"{running['deploymentUrl']}/v2/models/iris/infer", json={"inputs": [
                {"name": "input-0", "shape": [2, 4], "datatype": "FP64", "data": sum(IRIS_ROWS, [])},
            ]})
        assert cold.status_code == 200, cold.text
        assert cold.json()["predictions"] == [1, 1]
        assert cold.headers["X-Cold-Start"] == "true"
        assert warm.headers["X-Cold-Start"] == "false"
        assert warm.json() == cold.json()
        # Where the cold start went, phase by phase (ms), in the response and in the deployment's logs.
        timing = {part.split(";dur=")[0].strip(): float(part.split(";dur=")[1])
                  for part in cold.headers["Server-Timing"].split(",")}
        assert list(timing) == ["activator", "queued", "replica-start", "model-load", "ready", "forward"]
        assert all(value >= 0 for value in timing.values())
        assert timing["activator"] >= timing["replica-start"] + timing["model-load"] + timing["ready"] - 1
        assert list(warm.headers["Server-Timing"].split(", ")[1:]) == [
            f"forward;dur={warm.headers['Server-Timing'].split('forward;dur=')[1]}"]  # warm: no start phases
        started = await logs.wait_for(lambda e: e["message"].startswith("cold start of replica-1 took"))
        assert "model-load" in started["message"] and "forward" in started["message"]
        assert v2.status_code == 200, v2.text
        assert v2.json()["outputs"][0]["data"] == [1, 1]
        assert len(replica_pids(zeroserve)) == 1

        up = await statuses.wait_for(lambda e: e["id"] == "iris" and e["runningReplicas"] == 1)
        assert up["status"] == "RUNNING"
        # Idle for longer than the window: back to zero, and the process is gone.
        await statuses.wait_for(lambda e: e["id"] == "iris" and e["runningReplicas"] == 0,
                                since=statuses.json().index(up) + 1)
        assert replica_pids(zeroserve) == []
        assert any(e["source"] == "replica-1" for e in logs.json()), "replica output reaches the log stream"

        await publish(zeroserve, DeploymentStopped(id="iris"))
        stopped = await statuses.wait_for(lambda e: e["id"] == "iris" and e["status"] == "STOPPED")
        assert stopped["runningReplicas"] == 0
        assert [e["status"] for e in statuses.json()][-2:] == ["STOPPING", "STOPPED"]
        async with operator(zeroserve, timeout=10) as client:
            after = await client.post(url, json={"instances": IRIS_ROWS})
        assert after.status_code == 503 and "STOPPED" in after.json()["error"]["message"]
    assert replica_pids(zeroserve) == []


async def test_stopping_a_deployment_releases_every_replica(zeroserve, listen):
    running = await deploy_iris(zeroserve, listen)
    statuses = await listen(zeroserve, "zeroserve.default.deployment.status")
    url = f"{running['deploymentUrl']}/v1/models/iris:predict"
    async with operator(zeroserve, timeout=60) as client:
        assert (await client.post(url, json={"instances": IRIS_ROWS})).status_code == 200
    assert len(replica_pids(zeroserve)) == 1
    await publish(zeroserve, DeploymentStopped(id="iris"))
    await statuses.wait_for(lambda e: e["id"] == "iris" and e["status"] == "STOPPED")
    assert replica_pids(zeroserve) == []


async def test_a_restart_keeps_every_deployment_and_running_ones_serve_again(settings, listen):
    async with Node(settings) as zeroserve:
        await deploy_iris(zeroserve, listen, "iris")
        await request_sklearn(zeroserve, "iris-stopped")
        statuses = await listen(zeroserve, "zeroserve.default.deployment.status")
        await statuses.wait_for(lambda e: e["id"] == "iris-stopped" and e["status"] == "RUNNING")
        await publish(zeroserve, DeploymentStopped(id="iris-stopped"))
        await statuses.wait_for(lambda e: e["id"] == "iris-stopped" and e["status"] == "STOPPED")

    async with Node(settings) as again:
        assert again.platform is not None
        records = {d.id: d for d in await again.platform.store.deployments.list("default")}
        assert records["iris"].status == "RUNNING"
        assert records["iris"].deployment_url == f"{again.url}/v2/inference/deployments/iris"
        assert records["iris"].running_replicas == 0
        assert records["iris-stopped"].status == "STOPPED"
        async with operator(again, timeout=60) as client:
            response = await client.post(f"{again.url}/v2/inference/deployments/iris/v1/models/iris:predict",
                                         json={"instances": IRIS_ROWS})
        assert response.status_code == 200, response.text
        assert response.headers["X-Cold-Start"] == "true"
        assert response.json()["predictions"] == [1, 1]


async def deploy_a_model_that_cannot_load(zeroserve: Node, listen) -> dict:
    """A deployment of a file that is no model, called: 503 ModelLoadFailed, and its DEAD status."""
    broken = zeroserve.settings.data_dir / "sources" / "broken"
    broken.mkdir(parents=True)
    (broken / "model.joblib").write_bytes(b"this is not a model")
    artifacts = await listen(zeroserve, "zeroserve.default.artifact.status")
    statuses = await listen(zeroserve, "zeroserve.default.deployment.status")
    await publish(zeroserve, ArtifactCreated(id="broken", name="broken", url=broken.as_uri()))
    await artifacts.wait_for(lambda e: e["id"] == "broken" and e["status"] == "staged")
    await request_sklearn(zeroserve, "broken", artifact="broken")
    running = await statuses.wait_for(lambda e: e["id"] == "broken" and e["status"] == "RUNNING")
    async with operator(zeroserve, timeout=60) as client:
        response = await client.post(f"{running['deploymentUrl']}/v1/models/broken:predict",
                                     json={"instances": IRIS_ROWS})
    assert response.status_code == 503
    assert response.json()["error"]["code"] == "ModelLoadFailed"
    dead = await statuses.wait_for(lambda e: e["id"] == "broken" and e["status"] == "DEAD")
    assert dead["reason"] == "ModelLoadFailed"
    return dead


async def test_a_model_that_fails_to_load_leaves_the_deployment_dead_with_its_last_lines(zeroserve, listen):
    dead = await deploy_a_model_that_cannot_load(zeroserve, listen)
    assert "last lines" in dead["message"]
    assert replica_pids(zeroserve) == []


async def test_a_gpu_plan_on_a_machine_without_gpus_is_dead_with_reason_nogpu(zeroserve, listen):
    await deploy_iris(zeroserve, listen)
    statuses = await listen(zeroserve, "zeroserve.default.deployment.status")
    await request_sklearn(zeroserve, "iris-gpu", resourcePlan="infer.s")
    dead = await statuses.wait_for(lambda e: e["id"] == "iris-gpu" and e["status"] == "DEAD")
    assert dead["reason"] == "NoGPU"
    assert "GPU" in dead["message"]


async def test_an_update_keeps_the_url_and_serves_throughout(zeroserve, listen):
    running = await deploy_iris(zeroserve, listen)
    url = f"{running['deploymentUrl']}/v1/models/iris:predict"
    statuses = await listen(zeroserve, "zeroserve.default.deployment.status")
    async with operator(zeroserve, timeout=60) as client:
        assert (await client.post(url, json={"instances": IRIS_ROWS})).status_code == 200
        old = replica_pids(zeroserve)
        await request_sklearn(zeroserve, "iris", minReplicas="0", maxReplicas="3")
        # Requests keep succeeding while the new version starts and the old one drains.
        answers = []
        for _ in range(200):
            answers.append((await client.post(url, json={"instances": IRIS_ROWS})).status_code)
            updated = [e for e in statuses.json() if e["id"] == "iris" and e.get("maxReplicas") == 3]
            if updated and set(replica_pids(zeroserve)).isdisjoint(old):
                break
            await asyncio.sleep(0.05)
    assert set(answers) == {200}
    assert updated[-1]["deploymentUrl"] == running["deploymentUrl"]
    assert updated[-1]["status"] == "RUNNING"
    assert set(replica_pids(zeroserve)).isdisjoint(old)
    assert "PENDING" not in [e["status"] for e in statuses.json()], "an update does not take the service down"


async def test_concurrent_requests_scale_up_to_max_replicas_and_no_further(zeroserve, listen):
    running = await deploy_iris(zeroserve, listen)
    await request_sklearn(zeroserve, "iris", minReplicas="0", maxReplicas="2", scaleTarget="1")
    statuses = await listen(zeroserve, "zeroserve.default.deployment.status")
    url = f"{running['deploymentUrl']}/v1/models/iris:predict"
    answers: list[int] = []
    busy = True

    async def client_loop(client: httpx.AsyncClient) -> None:
        while busy:
            answers.append((await client.post(url, json={"instances": IRIS_ROWS * 200})).status_code)

    async with operator(zeroserve, timeout=60) as client:
        loops = [asyncio.create_task(client_loop(client)) for _ in range(6)]
        try:
            await statuses.wait_for(lambda e: e["id"] == "iris" and e["runningReplicas"] == 2, timeout=60)
            await asyncio.sleep(3)  # the load goes on: a third replica would start now if it could
        finally:
            busy = False
            await asyncio.gather(*loops)
    assert set(answers) == {200}
    assert max(e["runningReplicas"] for e in statuses.json()) == 2
    assert len(replica_pids(zeroserve)) == 2


async def test_the_gateway_health_and_unknown_deployments_answer_clearly(zeroserve):
    async with operator(zeroserve, timeout=10) as client:
        health = await client.get(f"{zeroserve.url}/healthz")
        missing = await client.post(f"{zeroserve.url}/v2/inference/deployments/nope/v1/models/nope:predict", json={})
        bad_group = await client.post(f"{zeroserve.url}/v2/inference/deployments/iris/v1/models/iris:predict",
                                      json={}, headers={"AI-Resource-Group": "not a group"})
        bad_id = await client.post(f"{zeroserve.url}/v2/inference/deployments/a*b/v1/models/x:predict", json={})
    assert health.json() == {"status": "ok", "nats": True}
    assert bad_group.status_code == 400 and bad_group.json()["error"]["code"] == "InvalidResourceGroup"
    assert bad_id.status_code == 404 and bad_id.json()["error"]["code"] == "DeploymentNotFound"
    assert missing.status_code == 404
    assert missing.json() == {"error": {"code": "DeploymentNotFound",
                                        "message": "no deployment nope in resource group default"}}


@pytest.mark.parametrize("warm", [True, False], ids=["warm", "at-zero"])
async def test_an_update_to_a_model_that_fails_to_load_is_refused_and_the_old_version_keeps_serving(
    zeroserve, listen, warm
):
    running = await deploy_iris(zeroserve, listen)
    url = f"{running['deploymentUrl']}/v1/models/iris:predict"
    broken = zeroserve.settings.data_dir / "sources" / "broken"
    broken.mkdir(parents=True)
    (broken / "model.joblib").write_bytes(b"not a model")
    artifacts = await listen(zeroserve, "zeroserve.default.artifact.status")
    dead = await listen(zeroserve, "zeroserve.default.deadletter.>")
    logs = await listen(zeroserve, "zeroserve.default.deployment.log")
    await publish(zeroserve, ArtifactCreated(id="broken", name="broken", url=broken.as_uri()))
    await artifacts.wait_for(lambda e: e["id"] == "broken" and e["status"] == "staged")
    async with operator(zeroserve, timeout=60) as client:
        if warm:
            assert (await client.post(url, json={"instances": IRIS_ROWS})).status_code == 200
        await request_sklearn(zeroserve, "iris", artifact="broken")
        await logs.wait_for(lambda e: "update refused" in e["message"], timeout=60)
        after = await client.post(url, json={"instances": IRIS_ROWS})
    assert after.status_code == 200 and after.json()["predictions"] == [1, 1]
    assert dead.messages[0].headers["Zeroserve-Deadletter-Reason"] == "ModelLoadFailed"
    record = await zeroserve.platform.store.deployments.get("default", "iris")
    assert record.status == "RUNNING" and record.input_artifacts == {"model": "iris-model"}


async def test_replicas_kept_by_min_replicas_show_in_the_running_status(zeroserve, listen):
    model_dir = train_iris_sklearn(zeroserve.settings.data_dir / "sources" / "iris")
    artifacts = await listen(zeroserve, "zeroserve.default.artifact.status")
    statuses = await listen(zeroserve, "zeroserve.default.deployment.status")
    await publish(zeroserve, ArtifactCreated(id="iris-model", name="iris", url=model_dir.as_uri()))
    await artifacts.wait_for(lambda e: e["id"] == "iris-model" and e["status"] == "staged")
    await request_sklearn(zeroserve, "warm", minReplicas="1")
    await statuses.wait_for(lambda e: e["id"] == "warm" and e["status"] == "RUNNING")
    await statuses.wait_for(lambda e: e["id"] == "warm" and e["runningReplicas"] == 1)
    record = await zeroserve.platform.store.deployments.get("default", "warm")
    assert record.status == "RUNNING" and record.running_replicas == 1
    assert len(replica_pids(zeroserve)) == 1


async def test_a_restart_finishes_what_was_under_way(settings, listen):
    """Records left PENDING or STOPPING by a crash are brought to where they were going; DEAD stays DEAD."""
    async with Node(settings) as zeroserve:
        running = await deploy_iris(zeroserve, listen)
        store = zeroserve.platform.store
        iris = await store.deployments.get("default", "iris")
        for id, status in (("was-pending", Status.PENDING), ("was-stopping", Status.STOPPING),
                           ("was-dead", Status.DEAD)):
            await store.deployments.put("default", id, iris.model_copy(update={
                "id": id, "status": status, "reason": "ModelLoadFailed" if status == Status.DEAD else None,
                "inference_service": {**iris.inference_service,
                                      "metadata": {**iris.inference_service["metadata"], "name": id}},
            }))
        assert running["status"] == "RUNNING"
    async with Node(settings) as again:
        records = {d.id: d for d in await again.platform.store.deployments.list("default")}
        assert records["was-pending"].status == "RUNNING"
        assert records["was-stopping"].status == "STOPPED"
        assert records["was-dead"].status == "DEAD" and records["was-dead"].reason == "ModelLoadFailed"
        async with operator(again, timeout=60) as client:
            url = f"{again.url}/v2/inference/deployments/was-pending/v1/models/was-pending:predict"
            answer = await client.post(url, json={"instances": IRIS_ROWS})
        assert answer.status_code == 200, answer.text


async def test_a_replica_that_dies_under_min_replicas_is_replaced(zeroserve, listen):
    await deploy_iris(zeroserve, listen)
    statuses = await listen(zeroserve, "zeroserve.default.deployment.status")
    await request_sklearn(zeroserve, "iris", minReplicas="1")
    await statuses.wait_for(lambda e: e["id"] == "iris" and e["runningReplicas"] == 1 and e["minReplicas"] == 1)
    [victim] = replica_pids(zeroserve)
    os.kill(victim, 9)
    seen = len(statuses.json())
    await statuses.wait_for(lambda e: e["id"] == "iris" and e["runningReplicas"] == 0, since=seen)
    await statuses.wait_for(lambda e: e["id"] == "iris" and e["runningReplicas"] == 1, since=seen)
    assert replica_pids(zeroserve) and victim not in replica_pids(zeroserve)


async def test_a_start_slower_than_the_deadline_fails_that_request_only(zeroserve, listen):
    running = await deploy_iris(zeroserve, listen)
    url = f"{running['deploymentUrl']}/v1/models/iris:predict"
    zeroserve.platform.settings.replica_ready_timeout_s = 0.2
    async with operator(zeroserve, timeout=60) as client:
        slow = await client.post(url, json={"instances": IRIS_ROWS})
        assert slow.status_code == 504 and slow.json()["error"]["code"] == "ReplicaNotReady"
        zeroserve.platform.settings.replica_ready_timeout_s = 60
        await asyncio.sleep(1.1)  # the backend waits a moment before it tries a start again
        later = await client.post(url, json={"instances": IRIS_ROWS})
    assert later.status_code == 200, later.text
    record = await zeroserve.platform.store.deployments.get("default", "iris")
    assert record.status == "RUNNING"


async def test_requests_beyond_the_activator_queue_get_429_with_retry_after(zeroserve, listen):
    running = await deploy_iris(zeroserve, listen)
    zeroserve.platform.settings.activator_queue_limit = 1
    url = f"{running['deploymentUrl']}/v1/models/iris:predict"
    async with operator(zeroserve, timeout=60) as client:
        answers = await asyncio.gather(*(client.post(url, json={"instances": IRIS_ROWS}) for _ in range(4)))
    codes = sorted(a.status_code for a in answers)
    assert codes[0] == 200 and 429 in codes, codes
    refused = next(a for a in answers if a.status_code == 429)
    assert refused.headers["Retry-After"] == "1" and refused.json()["error"]["code"] == "Overloaded"


async def wait_for_the_fork_server(zeroserve: Node) -> None:
    """Until CPU replicas are forks (the fork server starts with the first deployment)."""
    assert zeroserve.platform is not None
    forks = zeroserve.platform.backend.autoscaler.forks  # type: ignore[attr-defined]
    assert forks is not None
    async with asyncio.timeout(60):
        await forks.wait_ready()


async def test_eight_deployments_at_zero_called_at_once_all_answer_cold(zeroserve, listen):
    await deploy_iris(zeroserve, listen, "iris-0")
    statuses = await listen(zeroserve, "zeroserve.default.deployment.status")
    ids = [f"iris-{number}" for number in range(1, 8)]
    for id in ids:
        await request_sklearn(zeroserve, id)
    running = {id: await statuses.wait_for(lambda e, id=id: e["id"] == id and e["status"] == "RUNNING")
               for id in ids}
    await wait_for_the_fork_server(zeroserve)
    urls = [f"{zeroserve.url}/v2/inference/deployments/iris-0/v1/models/iris-0:predict",
            *(f"{running[id]['deploymentUrl']}/v1/models/{id}:predict" for id in ids)]
    async with operator(zeroserve, timeout=60) as client:
        answers = await asyncio.gather(*(client.post(url, json={"instances": IRIS_ROWS}) for url in urls))
    assert [a.status_code for a in answers] == [200] * 8, [a.text for a in answers]
    assert all(a.json()["predictions"] == [1, 1] and a.headers["X-Cold-Start"] == "true" for a in answers)
    assert len(replica_pids(zeroserve)) == 8


async def test_a_forked_replica_whose_model_fails_to_load_leaves_the_deployment_dead_with_its_reason(
        zeroserve, listen):
    await deploy_iris(zeroserve, listen)
    await wait_for_the_fork_server(zeroserve)  # the replica below is a fork, which says "ready" on a pipe
    dead = await deploy_a_model_that_cannot_load(zeroserve, listen)
    assert "exited with code 3" in dead["message"] and "ModelLoadFailed: cannot unpickle" in dead["message"]
