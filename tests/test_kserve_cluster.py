"""The cluster path end to end, as far as an emulator reaches: the same events that deploy a model on
one machine drive an InferenceService on "Kubernetes" (kmock's emulator over HTTP), with this test
playing the KServe controller. And the parts that make one process of several: roles and the Lease.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from aiohttp import web
from conftest import operator, until
from kube import Cluster, Controller, condition
from models import train_iris_sklearn
from prometheus_client.parser import text_string_to_metric_families
from typer.testing import CliRunner

from zeroserve.backends.kserve.backend import assess
from zeroserve.backends.kserve.leader_election import Lease
from zeroserve.cli import app
from zeroserve.events import (
    ArtifactCreated,
    DeploymentDeleted,
    DeploymentRequested,
    DeploymentStopped,
    Status,
    new_event,
)
from zeroserve.node import Node
from zeroserve.settings import Settings

GROUP = "default"


async def test_the_same_events_drive_a_deployment_to_running_and_stopped_on_the_kserve_backend(
    settings: Settings, cluster: Cluster, tmp_path: Path, listen: Any,
) -> None:
    settings = settings.model_copy(update=dict(
        backend="kserve", kubeconfig=cluster.kubeconfig(tmp_path / "kubeconfig"), kserve_log_poll_s=0.2,
        lease_namespace="zeroserve", pod_name="watcher-0",
    ))
    controller = Controller(cluster)
    async with Node(settings) as zeroserve:
        assert zeroserve.platform is not None
        statuses = await listen(zeroserve, "zeroserve.default.deployment.status")

        async def publish(data: Any) -> None:
            assert zeroserve.platform is not None
            await zeroserve.platform.bus.publish(new_event(data, source="/tests"), GROUP)

        async def deployment() -> Any:
            assert zeroserve.platform is not None
            return await zeroserve.platform.store.deployments.get(GROUP, "iris")

        model = train_iris_sklearn(settings.data_dir / "sources" / "iris")
        await publish(ArtifactCreated(id="iris-model", name="iris", url=model.as_uri()))
        await publish(DeploymentRequested(id="iris", executable_id="sklearn", input_artifacts={"model": "iris-model"},
                                          parameters={"resourcePlan": "infer.s"}))

        # The function applied the InferenceService; until KServe says ready, the deployment is PENDING.
        isvc = await until(lambda: cluster.isvc(GROUP, "iris"), what="the InferenceService")
        assert isvc["metadata"]["labels"]["zeroserve.io/deployment-id"] == "iris"
        assert isvc["spec"]["predictor"]["model"]["resources"]["limits"]["nvidia.com/gpu"] == 1
        await statuses.wait_for(lambda e: e["id"] == "iris" and e["status"] == "PENDING")

        # The controller's part: the predictor comes up, at a URL (here a loopback stand-in for Knative's route).
        async with knative_route() as route:
            controller.pod(GROUP, "iris", "iris-predictor-00001-deployment-1")
            controller.ready(GROUP, "iris", url=route.url)
            running = await statuses.wait_for(lambda e: e["id"] == "iris" and e["status"] == "RUNNING")
            assert running["deploymentUrl"] == f"{zeroserve.url}/v2/inference/deployments/iris"
            assert running["backendUrl"] == route.url
            # The pod and the InferenceService are watched apart: the record may say RUNNING an
            # instant before it counts the pod that is ready, and then says so.
            async def running_with_its_pod() -> Any:
                record = await deployment()
                return record if (record.status, record.running_replicas) == (Status.RUNNING, 1) else None

            record = await until(running_with_its_pod, timeout=10, what="RUNNING with 1 running replica")
            assert record.resource_plan == "infer.s"

            # The deployment URL works: the gateway checks the token and forwards to the InferenceService.
            async with operator(zeroserve) as http:
                answer = await http.post(f"{running['deploymentUrl']}/v1/models/iris:predict",
                                         json={"instances": [[6.8, 2.8, 4.8, 1.4]]})
            assert answer.status_code == 200 and answer.json() == {"predictions": [1]}
            (seen,) = route.requests
            assert seen["path"] == "/v1/models/iris:predict" and seen["body"] == {"instances": [[6.8, 2.8, 4.8, 1.4]]}
            assert "authorization" not in seen["headers"]  # zeroserve's token stays with zeroserve

        # Stop: the function annotates the object; KServe (this test) confirms; the deployment is STOPPED.
        async def kserve_confirms_the_stop() -> None:
            await until(lambda: (cluster.isvc(GROUP, "iris") or {})["metadata"]["annotations"].get(
                "serving.kserve.io/stop") == "true", what="the stop annotation")
            controller.delete_pod(GROUP, "iris-predictor-00001-deployment-1")
            controller.status(GROUP, "iris", {"conditions": [condition("Stopped", "True"),
                                                             condition("Ready", "False", "Stopped")]})

        confirming = asyncio.create_task(kserve_confirms_the_stop())
        await publish(DeploymentStopped(id="iris"))
        await statuses.wait_for(lambda e: e["id"] == "iris" and e["status"] == "STOPPED")
        await confirming
        stopped = cluster.isvc(GROUP, "iris")
        assert stopped is not None and stopped["metadata"]["annotations"]["serving.kserve.io/stop"] == "true"
        assert assess(stopped).status == Status.STOPPED
        assert (await deployment()).status == Status.STOPPED

        # Delete: the object goes with the record.
        await publish(DeploymentDeleted(id="iris"))
        await until(lambda: cluster.isvc(GROUP, "iris") is None, what="the InferenceService's deletion")
        assert await until(_gone(deployment), what="the record's deletion")
        # Nothing reported after the stop turned the deployment back: the watcher left it alone.
        after_stop = [e["status"] for e in statuses.json() if e["id"] == "iris"]
        assert after_stop[after_stop.index("STOPPED"):] == ["STOPPED", "STOPPED"]  # stopped, then deleted


async def test_a_deployment_in_kserve_standard_mode_runs_scales_from_zero_through_the_gateways_metrics_and_stops(
    settings: Settings, cluster: Cluster, tmp_path: Path, listen: Any,
) -> None:
    settings = settings.model_copy(update=dict(
        backend="kserve", kubeconfig=cluster.kubeconfig(tmp_path / "kubeconfig"), kserve_log_poll_s=0.2,
        lease_namespace="zeroserve", pod_name="watcher-0", kserve_prometheus_url="http://prometheus:9090",
    ))
    controller = Controller(cluster)
    async with Node(settings) as zeroserve, knative_route() as service:
        assert zeroserve.platform is not None
        bus = zeroserve.platform.bus
        statuses = await listen(zeroserve, "zeroserve.default.deployment.status")
        model = train_iris_sklearn(settings.data_dir / "sources" / "iris")
        await bus.publish(new_event(ArtifactCreated(id="iris-model", name="iris", url=model.as_uri()),
                                    source="/tests"), GROUP)
        await bus.publish(new_event(DeploymentRequested(
            id="iris", executable_id="sklearn", input_artifacts={"model": "iris-model"},
            parameters={"deploymentMode": "Standard"}), source="/tests"), GROUP)

        isvc = await until(lambda: cluster.isvc(GROUP, "iris"), what="the InferenceService")
        annotations = isvc["metadata"]["annotations"]
        assert annotations["serving.kserve.io/deploymentMode"] == "Standard"
        assert annotations["serving.kserve.io/autoscalerClass"] == "keda"
        await statuses.wait_for(lambda e: e["id"] == "iris" and e["status"] == "PENDING")

        # KServe's part: a Deployment and a Service (here a loopback stand-in), no Knative route; KEDA
        # keeps it at zero replicas, which KServe reports as ready.
        controller.status(GROUP, "iris", {
            "deploymentMode": "Standard", "url": "http://iris-default.example.com", "address": {"url": service.url},
            "conditions": [condition("PredictorReady", "True"), condition("Ready", "True")],
            "modelStatus": {"states": {"activeModelState": "Loaded", "targetModelState": "Loaded"},
                            "transitionStatus": "UpToDate"}})
        running = await statuses.wait_for(lambda e: e["id"] == "iris" and e["status"] == "RUNNING")
        assert running["deploymentUrl"] == f"{zeroserve.url}/v2/inference/deployments/iris"
        assert running["backendUrl"] == service.url

        async with operator(zeroserve) as http:
            infer = f"{running['deploymentUrl']}/v1/models/iris:predict"
            body = {"instances": [[6.8, 2.8, 4.8, 1.4]]}
            # At zero nothing in the cluster would take the request (no activator in Standard mode): the
            # gateway says so, and counts it where KEDA's trigger reads it.
            before = sample(await http.get(f"{zeroserve.url}/metrics"), "zeroserve_inference_requests_total",
                            code="503")
            refused = await http.post(infer, json=body)
            assert refused.status_code == 503 and refused.headers["retry-after"] == "15"
            assert refused.json()["error"]["code"] == "ScaledToZero"
            assert service.requests == []
            metrics = await http.get(f"{zeroserve.url}/metrics")
            assert sample(metrics, "zeroserve_inference_requests_total", code="503") == before + 1

            # KEDA scales the Deployment to one replica; once its pod is ready the request goes through.
            controller.pod(GROUP, "iris", "iris-predictor-7d9f8b6c5-x2x7q")

            async def one_replica() -> Any:
                assert zeroserve.platform is not None
                record = await zeroserve.platform.store.deployments.get(GROUP, "iris")
                return record if record is not None and record.running_replicas == 1 else None

            await until(one_replica, timeout=10, what="RUNNING with 1 running replica")
            answer = await http.post(infer, json=body)
            assert answer.status_code == 200 and answer.json() == {"predictions": [1]}
            (seen,) = service.requests
            assert seen["path"] == "/v1/models/iris:predict"
            # Answered: none in flight now (the trigger that scales past one replica reads this).
            metrics = await http.get(f"{zeroserve.url}/metrics")
            assert sample(metrics, "zeroserve_inference_requests_in_flight") == 0

            # An update into Knative mode: KServe cannot make it in place, and the API says so now.
            knative = await http.post(f"{zeroserve.url}/v2/lm/configurations", json={
                "name": "iris-knative", "executableId": "sklearn", "scenarioId": "model-serving",
                "parameterBindings": [{"key": "deploymentMode", "value": "Knative"}],
                "inputArtifactBindings": [{"key": "model", "artifactId": "iris-model"}]})
            assert knative.status_code == 201, knative.text
            update = await http.patch(f"{zeroserve.url}/v2/lm/deployments/iris",
                                      json={"configurationId": knative.json()["id"]})
            assert update.status_code == 412 and update.json()["error"]["code"] == "DeploymentModeChanged"
            assert "runs in KServe's Standard mode" in update.json()["error"]["message"]

        async def kserve_confirms_the_stop() -> None:
            await until(lambda: (cluster.isvc(GROUP, "iris") or {})["metadata"]["annotations"].get(
                "serving.kserve.io/stop") == "true", what="the stop annotation")
            controller.delete_pod(GROUP, "iris-predictor-7d9f8b6c5-x2x7q")
            controller.status(GROUP, "iris", {"conditions": [condition("Stopped", "True"),
                                                             condition("Ready", "False", "Stopped")]})

        confirming = asyncio.create_task(kserve_confirms_the_stop())
        await bus.publish(new_event(DeploymentStopped(id="iris"), source="/tests"), GROUP)
        await statuses.wait_for(lambda e: e["id"] == "iris" and e["status"] == "STOPPED")
        await confirming


def sample(answer: Any, name: str, **labels: str) -> float:
    """One sample of iris's in the gateway's /metrics (0 when there is none yet)."""
    assert answer.status_code == 200
    wanted = {"group": GROUP, "deployment": "iris", **labels}
    for family in text_string_to_metric_families(answer.text):
        for found in family.samples:
            if found.name == name and found.labels == wanted:
                return float(found.value)
    return 0.0


class Route:
    def __init__(self) -> None:
        self.url = ""
        self.requests: list[dict[str, Any]] = []

    async def handle(self, request: web.Request) -> web.Response:
        self.requests.append({"path": request.path, "body": await request.json(),
                              "headers": {k.lower(): v for k, v in request.headers.items()}})
        return web.json_response({"predictions": [1]})


@contextlib.asynccontextmanager
async def knative_route() -> AsyncIterator[Route]:
    """What a Knative route answers for a ready InferenceService, on loopback."""
    route = Route()
    server = web.Server(route.handle)
    runner = web.ServerRunner(server)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    route.url = f"http://127.0.0.1:{site._server.sockets[0].getsockname()[1]}"  # type: ignore[union-attr]
    try:
        yield route
    finally:
        await runner.cleanup()


def _gone(deployment: Any) -> Any:
    async def check() -> bool:
        return await deployment() is None
    return check


# --- roles ---------------------------------------------------------------------------------------


def test_split_roles_need_the_kserve_backend_and_a_shared_nats(tmp_path: Path) -> None:
    runner = CliRunner()
    env = {"ZEROSERVE_DATA_DIR": str(tmp_path)}
    local = runner.invoke(app, ["up", "--role", "gateway"], env=env)
    assert local.exit_code == 1
    assert "needs ZEROSERVE_BACKEND=kserve" in str(local.exception or local.output)

    no_nats = runner.invoke(app, ["up", "--role", "watcher"], env={**env, "ZEROSERVE_BACKEND": "kserve"})
    assert no_nats.exit_code == 1
    assert "set ZEROSERVE_NATS_URL" in str(no_nats.exception or no_nats.output)

    cluster_env = {**env, "ZEROSERVE_BACKEND": "kserve", "ZEROSERVE_NATS_URL": "nats://127.0.0.1:1"}
    no_public_url = runner.invoke(app, ["up", "--role", "gateway"], env=cluster_env)
    assert no_public_url.exit_code == 1
    assert "set ZEROSERVE_PUBLIC_URL" in str(no_public_url.exception or no_public_url.output)

    unknown = runner.invoke(app, ["up", "--role", "janitor"], env=env)
    assert unknown.exit_code == 2 and "janitor" in unknown.output


async def test_a_functions_only_process_runs_no_gateway_and_no_watcher(
    settings: Settings, cluster: Cluster, tmp_path: Path, nats_server: Any,
) -> None:
    settings = settings.model_copy(update=dict(
        backend="kserve", kubeconfig=cluster.kubeconfig(tmp_path / "kubeconfig"), nats_url=nats_server.url,
        public_url="https://zeroserve.example.com"))
    async with Node(settings, ["functions"]) as functions:
        assert functions.runner is not None and functions._gateway is None
        assert functions._tasks == []  # webhooks out run with the watcher, which KEDA never scales to zero
        assert not (settings.data_dir / "gateway.url").exists()


# --- the Lease -----------------------------------------------------------------------------------


class Clock:
    def __init__(self) -> None:
        self.now = datetime(2026, 11, 30, 10, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now


def test_one_holder_at_a_time_and_the_lease_passes_on_when_its_holder_stops_renewing(cluster: Cluster) -> None:
    clock = Clock()
    first = Lease(cluster.api(), "zeroserve", "zeroserve-watcher", "watcher-a", 15, clock=clock)
    second = Lease(cluster.api(), "zeroserve", "zeroserve-watcher", "watcher-b", 15, clock=clock)

    assert first.try_acquire() is True  # nobody had it: created, held by watcher-a
    assert second.try_acquire() is False
    clock.now += timedelta(seconds=10)
    assert first.try_acquire() is True  # renewed
    clock.now += timedelta(seconds=10)
    assert second.try_acquire() is False  # renewed 10 s ago: still watcher-a's

    clock.now += timedelta(seconds=16)  # watcher-a stopped renewing
    assert second.try_acquire() is True
    assert first.try_acquire() is False
    lease = cluster.lease("zeroserve", "zeroserve-watcher")
    assert lease["spec"]["holderIdentity"] == "watcher-b"
    assert lease["spec"]["leaseTransitions"] == 1


async def test_work_under_a_lease_stops_when_the_lease_is_lost_and_starts_again_when_it_is_back(
    cluster: Cluster,
) -> None:
    clock = Clock()
    holder = Lease(cluster.api(), "zeroserve", "zeroserve-watcher", "watcher-a", 3, clock=clock)
    starts: list[datetime] = []
    stopped = asyncio.Event()

    async def work() -> None:
        starts.append(clock.now)
        try:
            await asyncio.Event().wait()
        finally:
            stopped.set()

    holding = asyncio.create_task(holder.hold(work))
    try:
        await until(lambda: len(starts) == 1, what="work under the lease")
        # Another replica takes the Lease over (it saw it expire): this one must stop working.
        rival = Lease(cluster.api(), "zeroserve", "zeroserve-watcher", "watcher-b", 3, clock=clock)
        clock.now += timedelta(seconds=10)
        assert await asyncio.to_thread(rival.try_acquire)
        await asyncio.wait_for(stopped.wait(), 10)
        # The rival goes away; once its Lease expires, the work starts here again.
        clock.now += timedelta(seconds=10)
        await until(lambda: len(starts) == 2, what="work under the lease taken back")
        assert cluster.lease("zeroserve", "zeroserve-watcher")["spec"]["holderIdentity"] == "watcher-a"
    finally:
        holding.cancel()
        await asyncio.gather(holding, return_exceptions=True)


async def test_a_watcher_process_works_under_the_lease_named_in_its_settings(
    settings: Settings, cluster: Cluster, tmp_path: Path, nats_server: Any,
) -> None:
    settings = settings.model_copy(update=dict(
        backend="kserve", kubeconfig=cluster.kubeconfig(tmp_path / "kubeconfig"), nats_url=nats_server.url,
        lease_namespace="zeroserve", lease_name="zeroserve-watcher", pod_name="watcher-7f9c-x2x7q",
        public_url="https://zeroserve.example.com"))
    async with Node(settings, ["watcher"]) as watcher:
        assert watcher.runner is None and watcher._gateway is None
        assert {task.get_name() for task in watcher._tasks} == {"watcher", "webhooks-out"}
        lease = await until(lambda: _lease_or_none(cluster), what="the Lease")
        assert lease["spec"]["holderIdentity"] == "watcher-7f9c-x2x7q"
        assert lease["spec"]["leaseDurationSeconds"] == 15


def _lease_or_none(cluster: Cluster) -> dict[str, Any] | None:
    try:
        return cluster.lease("zeroserve", "zeroserve-watcher")
    except KeyError:
        return None
