"""The kserve backend against kmock's Kubernetes emulator, over real HTTP, with the official client.

No cluster runs here: the test plays the KServe controller by writing status and pods through the
API (``tests/kube.py``), and every object the backend writes is checked against KServe's CRD schema.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from conftest import until
from kube import Cluster, Controller, G, P, V, condition

from zeroserve.backends.base import Change
from zeroserve.backends.kserve.backend import KserveBackend, assess
from zeroserve.errors import InvalidConfiguration
from zeroserve.events import Status
from zeroserve.node import cancel
from zeroserve.platform import Platform
from zeroserve.settings import Settings
from zeroserve.templates.render import render
from zeroserve.templates.validation import validate_inference_service

GROUP = "default"


@pytest.fixture
def kserve_settings(settings: Settings, cluster: Cluster, tmp_path: Path) -> Settings:
    return settings.model_copy(update=dict(
        backend="kserve", kubeconfig=cluster.kubeconfig(tmp_path / "kubeconfig"),
        kserve_stop_timeout_s=10.0, kserve_log_poll_s=0.1, kserve_pending_deadline_s=60.0,
        kserve_prometheus_url="http://prometheus-operated.monitoring:9090",
    ))


@pytest.fixture
async def platform(kserve_settings: Settings, nats_server: Any) -> AsyncIterator[Platform]:
    platform = await Platform.open(kserve_settings, nats_server.url)
    yield platform
    await platform.close()


@pytest.fixture
def backend(platform: Platform) -> KserveBackend:
    assert isinstance(platform.backend, KserveBackend)  # ZEROSERVE_BACKEND=kserve picked it
    return platform.backend


@pytest.fixture
def controller(cluster: Cluster) -> Controller:
    return Controller(cluster)


def isvc_for(platform: Platform, id: str = "iris", **parameters: str) -> dict[str, Any]:
    return render(
        platform.templates["sklearn"], deployment_id=id, group=GROUP, parameters=parameters,
        artifacts={"model": "s3://models/iris/v1"}, plans=platform.plans, settings=platform.settings,
    )


class Changes:
    """What the backend's watch reports, collected in the background."""

    def __init__(self, backend: KserveBackend) -> None:
        self.seen: list[Change] = []
        self._arrived = asyncio.Event()
        self._task = asyncio.create_task(self._collect(backend))

    async def _collect(self, backend: KserveBackend) -> None:
        async for change in backend.watch():
            self.seen.append(change)
            self._arrived.set()

    async def wait_for(self, count: int, timeout: float = 10) -> list[Change]:
        try:
            async with asyncio.timeout(timeout):
                while len(self.seen) < count:
                    self._arrived.clear()
                    await self._arrived.wait()
        except TimeoutError:
            raise AssertionError(f"{count} changes expected within {timeout}s; seen: {self.seen}") from None
        return self.seen

    async def quiet(self, seconds: float = 0.5) -> list[Change]:
        """What was reported after nothing more arrived for a while."""
        await asyncio.sleep(seconds)
        return self.seen

    async def close(self) -> None:
        await cancel([self._task])  # and again, should Python 3.11 lose the first cancellation


@contextlib.asynccontextmanager
async def watching(backend: KserveBackend, cluster: Cluster) -> AsyncIterator[Changes]:
    """The backend's watch, from the moment its watches of InferenceServices and pods are open.

    The emulator keeps no resourceVersion, so a change between a list and the watch that follows
    it would be seen only at the next list; a real API server replays it from the list's version.
    """
    before = cluster.watch_requests()
    changes = Changes(backend)
    try:
        for _ in range(1000):  # 10 s at most
            if cluster.watch_requests() >= before + 2:
                break
            await asyncio.sleep(0.01)
        else:
            raise AssertionError("the backend opened no watch within 10 s")
        yield changes
    finally:
        await changes.close()


def statuses(changes: list[Change]) -> list[tuple[Status | None, str | None, int | None]]:
    return [(c.status, c.reason, c.running_replicas) for c in changes]


# --- apply, update, stop, delete ---------------------------------------------------------------


async def test_apply_creates_the_inference_service_in_the_group_namespace_in_knative_mode(
    platform: Platform, cluster: Cluster,
) -> None:
    ready = await platform.backend.apply(isvc_for(platform, scaleTarget="8"))

    assert ready is False  # KServe makes it ready later; the watch says when
    created = cluster.isvc(GROUP, "iris")
    assert created is not None
    validate_inference_service(created)
    assert created["metadata"]["annotations"]["serving.kserve.io/deploymentMode"] == "Knative"
    assert created["metadata"]["labels"]["zeroserve.io/deployment-id"] == "iris"
    assert created["metadata"]["labels"]["zeroserve.io/resource-group"] == GROUP
    predictor = created["spec"]["predictor"]
    assert (predictor["minReplicas"], predictor["maxReplicas"]) == (0, 2)
    assert (predictor["scaleMetric"], predictor["scaleTarget"]) == ("concurrency", 8)
    assert predictor["model"]["storageUri"] == "s3://models/iris/v1"


async def test_a_gpu_plan_lands_on_gpu_nodes_with_a_gpu_limit_and_the_taint_tolerated(
    platform: Platform, cluster: Cluster,
) -> None:
    await platform.backend.apply(isvc_for(platform, "llm", resourcePlan="infer.s"))

    created = cluster.isvc(GROUP, "llm")
    assert created is not None
    validate_inference_service(created)
    predictor = created["spec"]["predictor"]
    assert predictor["model"]["resources"]["limits"]["nvidia.com/gpu"] == 1
    assert predictor["nodeSelector"] == {platform.settings.gpu_node_label: "Tesla-T4"}
    assert {"key": platform.settings.gpu_taint_key, "operator": "Exists", "effect": "NoSchedule"} in predictor[
        "tolerations"]


async def test_an_update_replaces_the_spec_in_place_and_can_send_a_canary_share_of_traffic(
    platform: Platform, cluster: Cluster, controller: Controller,
) -> None:
    await platform.backend.apply(isvc_for(platform, resourcePlan="infer.s"))
    controller.ready(GROUP, "iris", url="http://iris.default.example.com")

    update = isvc_for(platform, resourcePlan="starter", canaryTrafficPercent="10")
    update["spec"]["predictor"]["model"]["storageUri"] = "s3://models/iris/v2"
    await platform.backend.apply(update)

    updated = cluster.isvc(GROUP, "iris")
    assert updated is not None
    validate_inference_service(updated)
    predictor = updated["spec"]["predictor"]
    assert predictor["model"]["storageUri"] == "s3://models/iris/v2"
    assert predictor["canaryTrafficPercent"] == 10
    # What the new version no longer asks for is gone, not merged in: no GPU, no GPU node.
    assert "nvidia.com/gpu" not in predictor["model"]["resources"]["limits"]
    assert "nodeSelector" not in predictor and "tolerations" not in predictor
    # A JSON patch, said as such: a real API server reads a list sent as a merge patch as garbage.
    assert cluster.requests("patch")[-1].headers["Content-Type"] == "application/json-patch+json"
    # The same object: its status (and so its URL) is KServe's to change, not the update's.
    assert updated["status"]["url"] == "http://iris.default.example.com"
    assert updated["metadata"]["labels"]["ai.sap.com/resourcePlan"] == "starter"


async def test_stop_annotates_the_object_and_returns_once_kserve_says_stopped(
    platform: Platform, cluster: Cluster, controller: Controller,
) -> None:
    await platform.backend.apply(isvc_for(platform))

    async def kserve_stops_it() -> None:
        for _ in range(200):
            annotations = (cluster.isvc(GROUP, "iris") or {}).get("metadata", {}).get("annotations", {})
            if annotations.get("serving.kserve.io/stop") == "true":
                controller.status(GROUP, "iris", {"conditions": [condition("Stopped", "True")]})
                return
            await asyncio.sleep(0.05)

    stopping = asyncio.create_task(kserve_stops_it())
    await asyncio.wait_for(platform.backend.stop(GROUP, "iris"), 10)
    await stopping
    stopped = cluster.isvc(GROUP, "iris")
    assert stopped is not None and stopped["metadata"]["annotations"]["serving.kserve.io/stop"] == "true"
    assert assess(stopped).status == Status.STOPPED

    # Requested again: it starts again (the stop annotation is lifted), same object.
    await platform.backend.apply(isvc_for(platform))
    again = cluster.isvc(GROUP, "iris")
    assert again is not None and again["metadata"]["annotations"]["serving.kserve.io/stop"] == "false"


async def test_a_stop_kserve_never_confirms_returns_after_the_timeout_and_says_so_in_the_logs(
    platform: Platform, cluster: Cluster, listen: Any, kserve_settings: Settings,
) -> None:
    platform.settings = platform.backend.settings = kserve_settings.model_copy(  # type: ignore[attr-defined]
        update={"kserve_stop_timeout_s": 0.3})
    await platform.backend.apply(isvc_for(platform))
    logs = await listen_to(platform, "zeroserve.default.deployment.log")

    await asyncio.wait_for(platform.backend.stop(GROUP, "iris"), 10)

    note = await logs.wait_for(lambda e: "not confirmed the stop" in e["message"], timeout=10)
    assert note["id"] == "iris" and note["source"] == "control-plane"
    assert (cluster.isvc(GROUP, "iris") or {})["metadata"]["annotations"]["serving.kserve.io/stop"] == "true"


async def test_delete_removes_the_object_and_deleting_what_is_gone_is_fine(
    platform: Platform, cluster: Cluster,
) -> None:
    await platform.backend.apply(isvc_for(platform))
    await platform.backend.delete(GROUP, "iris")
    assert cluster.isvc(GROUP, "iris") is None
    await platform.backend.delete(GROUP, "iris")  # a retried delete: nothing left, no error


# --- Standard mode ------------------------------------------------------------------------------


def raw_status(name: str, *, url: str | None = None) -> dict[str, Any]:
    """What KServe writes for a ready Standard-mode InferenceService: no Knative route, the predictor's
    Service as its address, Ready as the Deployment's Available condition says (a Deployment at zero
    replicas is available)."""
    return {
        "deploymentMode": "Standard",
        "url": f"http://{name}-{GROUP}.example.com",
        "address": {"url": url or f"http://{name}-predictor.{GROUP}.svc.cluster.local"},
        "conditions": [condition("IngressReady", "True"), condition("PredictorReady", "True"),
                       condition("Ready", "True")],
        "modelStatus": {"states": {"activeModelState": "Loaded", "targetModelState": "Loaded"},
                        "transitionStatus": "UpToDate"},
    }


async def test_a_standard_mode_deployment_scales_to_zero_with_keda_and_is_read_back_as_knatives_is(
    platform: Platform, cluster: Cluster, controller: Controller, backend: KserveBackend,
) -> None:
    async with watching(backend, cluster) as changes:
        await backend.apply(isvc_for(platform, deploymentMode="Standard", scaleTarget="5"))
        created = cluster.isvc(GROUP, "iris")
        assert created is not None
        validate_inference_service(created)
        annotations = created["metadata"]["annotations"]
        assert (annotations["serving.kserve.io/deploymentMode"], annotations["serving.kserve.io/autoscalerClass"]) \
            == ("Standard", "keda")
        predictor = created["spec"]["predictor"]
        assert predictor["minReplicas"] == 0 and "scaleMetric" not in predictor
        assert [m["external"]["target"]["value"] for m in predictor["autoScaling"]["metrics"]] == ["5", "1"]
        await changes.wait_for(1)

        controller.status(GROUP, "iris", raw_status("iris"))  # ready, no pod: KEDA keeps it at zero
        await changes.wait_for(2)
        controller.pod(GROUP, "iris", "iris-predictor-7d9f8b6c5-x2x7q")  # KEDA saw a request: one replica
        await changes.wait_for(3)
        controller.delete_pod(GROUP, "iris-predictor-7d9f8b6c5-x2x7q")  # idle again: back to zero
        await changes.wait_for(4)
        await changes.quiet()

    assert statuses(changes.seen) == [
        (Status.PENDING, None, 0), (Status.RUNNING, None, 0), (Status.RUNNING, None, 1), (Status.RUNNING, None, 0),
    ]
    # The gateway forwards to the predictor's Service inside the cluster, as it does to Knative's address.
    assert {c.backend_url for c in changes.seen[1:]} == {"http://iris-predictor.default.svc.cluster.local"}


async def test_a_standard_mode_deployment_stops_as_a_knative_one_does(
    platform: Platform, cluster: Cluster, controller: Controller, backend: KserveBackend,
) -> None:
    await backend.apply(isvc_for(platform, deploymentMode="Standard"))
    controller.status(GROUP, "iris", raw_status("iris"))

    async def kserve_stops_it() -> None:  # KServe deletes the Deployment, its HPA or ScaledObject
        await until(lambda: (cluster.isvc(GROUP, "iris") or {})["metadata"]["annotations"].get(
            "serving.kserve.io/stop") == "true", what="the stop annotation")
        controller.status(GROUP, "iris", {"conditions": [condition("Stopped", "True"),
                                                         condition("Ready", "False", "Stopped")]})

    confirming = asyncio.create_task(kserve_stops_it())
    await asyncio.wait_for(backend.stop(GROUP, "iris"), 10)
    await confirming
    stopped = cluster.isvc(GROUP, "iris")
    assert stopped is not None and assess(stopped).status == Status.STOPPED
    assert stopped["metadata"]["annotations"]["serving.kserve.io/deploymentMode"] == "Standard"


async def test_an_update_cannot_move_a_deployment_to_the_other_mode_in_place(
    platform: Platform, cluster: Cluster,
) -> None:
    await platform.backend.apply(isvc_for(platform))

    with pytest.raises(InvalidConfiguration, match="runs in Knative mode, and KServe cannot change that in place: "
                                                   "stop and delete the deployment") as refused:
        await platform.backend.apply(isvc_for(platform, deploymentMode="Standard"))

    assert refused.value.reason == "DeploymentModeChanged"
    kept = cluster.isvc(GROUP, "iris")
    assert kept is not None and kept["metadata"]["annotations"]["serving.kserve.io/deploymentMode"] == "Knative"
    assert len(cluster.requests("patch")) == 0  # KServe's webhook would have refused the patch


# --- the watch ---------------------------------------------------------------------------------


async def test_the_watch_follows_a_status_progression_written_by_the_controller(
    platform: Platform, cluster: Cluster, controller: Controller, backend: KserveBackend,
) -> None:
    async with watching(backend, cluster) as changes:
        await backend.apply(isvc_for(platform))
        await changes.wait_for(1)
        controller.pod(GROUP, "iris", "iris-predictor-1", unschedulable="0/3 nodes are available: 3 Insufficient cpu.")
        await changes.wait_for(2)
        controller.ready(GROUP, "iris", url="http://iris.default.example.com")
        await changes.wait_for(3)
        controller.pod(GROUP, "iris", "iris-predictor-1", ready=True)
        await changes.wait_for(4)
        controller.status(GROUP, "iris", {"modelStatus": {
            "states": {"activeModelState": "FailedToLoad", "targetModelState": "FailedToLoad"},
            "transitionStatus": "BlockedByFailedLoad",
            "lastFailureInfo": {"reason": "ModelLoadFailed", "message": "no model.joblib in s3://models/iris/v1"}}})
        seen = await changes.wait_for(5)
        await changes.quiet()

    assert statuses(changes.seen) == [
        (Status.PENDING, None, 0),
        (Status.PENDING, "Unschedulable", 0),
        (Status.RUNNING, None, 0),
        (Status.RUNNING, None, 1),
        (Status.DEAD, "ModelLoadFailed", 1),
    ]
    assert seen[1].message == "0/3 nodes are available: 3 Insufficient cpu."
    assert seen[2].backend_url == "http://iris.default.example.com"
    assert seen[4].message == "no model.joblib in s3://models/iris/v1"
    assert {(c.group, c.id) for c in seen} == {(GROUP, "iris")}


async def test_replicas_come_and_go_with_the_predictor_pods(
    platform: Platform, cluster: Cluster, controller: Controller, backend: KserveBackend,
) -> None:
    await backend.apply(isvc_for(platform))
    controller.ready(GROUP, "iris")
    async with watching(backend, cluster) as changes:
        await changes.wait_for(1)
        controller.pod(GROUP, "iris", "iris-predictor-1")
        controller.pod(GROUP, "iris", "iris-predictor-2")
        controller.pod(GROUP, "other", "other-predictor-1")  # another InferenceService's pod
        await changes.wait_for(3)
        controller.delete_pod(GROUP, "iris-predictor-1")
        controller.delete_pod(GROUP, "iris-predictor-2")
        await changes.wait_for(5)
        await changes.quiet()

    assert [c.running_replicas for c in changes.seen] == [0, 1, 2, 1, 0]
    assert {c.status for c in changes.seen} == {Status.RUNNING}


async def test_a_watch_resumes_after_a_dropped_connection_without_losing_or_repeating_a_status(
    platform: Platform, cluster: Cluster, controller: Controller, backend: KserveBackend,
) -> None:
    await backend.apply(isvc_for(platform, "iris"))
    await backend.apply(isvc_for(platform, "wine"))
    controller.ready(GROUP, "iris")
    async with watching(backend, cluster) as changes:
        await changes.wait_for(2)
        # While zeroserve cannot see it, the controller makes wine ready; iris does not change.
        await asyncio.to_thread(cluster.drop, lambda: cluster.patch_isvc(GROUP, "wine", {"status": {
            "url": "http://wine.default.example.com", "conditions": [condition("Ready", "True")]}}))
        await changes.wait_for(3, timeout=15)
        # And the resumed watch follows what happens next.
        controller.pod(GROUP, "wine", "wine-predictor-1")
        await changes.wait_for(4)
        await changes.quiet(1.0)

    assert [(c.id, c.status, c.running_replicas) for c in changes.seen] == [
        ("iris", Status.RUNNING, 0),
        ("wine", Status.PENDING, 0),
        ("wine", Status.RUNNING, 0),  # the change made while disconnected: reported once
        ("wine", Status.RUNNING, 1),
    ]


async def test_pending_past_the_deadline_is_dead_with_the_reason_it_waited_for(
    platform: Platform, cluster: Cluster, controller: Controller, kserve_settings: Settings,
    backend: KserveBackend,
) -> None:
    backend.settings = kserve_settings.model_copy(update={"kserve_pending_deadline_s": 1.0})
    await backend.apply(isvc_for(platform, "llm", resourcePlan="infer.s"))
    controller.pod(GROUP, "llm", "llm-predictor-1",
                   unschedulable="0/3 nodes are available: 3 Insufficient nvidia.com/gpu.")
    async with watching(backend, cluster) as changes:
        seen = await changes.wait_for(2)
        await changes.quiet()

    assert statuses(changes.seen) == [(Status.PENDING, "Unschedulable", 0), (Status.DEAD, "Unschedulable", 0)]
    assert seen[1].message is not None and "Insufficient nvidia.com/gpu" in seen[1].message
    assert "still pending after" in seen[1].message


async def test_a_pod_that_cannot_pull_its_image_keeps_the_deployment_pending_with_that_reason(
    platform: Platform, cluster: Cluster, controller: Controller, backend: KserveBackend,
) -> None:
    await backend.apply(isvc_for(platform))
    controller.pod(GROUP, "iris", "iris-predictor-1", ready=False, waiting="ImagePullBackOff")
    async with watching(backend, cluster) as changes:
        seen = await changes.wait_for(1)
        await changes.quiet()
    assert statuses(seen) == [(Status.PENDING, "ImagePullBackOff", 0)]
    assert seen[0].message == "kserve-container: ImagePullBackOff for the image"


async def test_model_and_storage_initializer_logs_become_deployment_log_events_once(
    platform: Platform, cluster: Cluster, controller: Controller, backend: KserveBackend,
) -> None:
    logs = await listen_to(platform, "zeroserve.default.deployment.log")
    await backend.apply(isvc_for(platform))
    cluster.logs[("iris-predictor-1", "storage-initializer")] = (
        "2026-11-30T10:00:00.100000000Z Copying contents of s3://models/iris/v1 to local\n")
    cluster.logs[("iris-predictor-1", "kserve-container")] = (
        "2026-11-30T10:00:02.000000000Z INFO Registering model: iris\n")
    controller.pod(GROUP, "iris", "iris-predictor-1")
    async with watching(backend, cluster) as changes:
        await changes.wait_for(1)
        await logs.wait_for(lambda e: "Registering model" in e["message"])
        cluster.logs[("iris-predictor-1", "kserve-container")] += (
            "2026-11-30T10:00:03.500000000Z INFO Uvicorn running on http://0.0.0.0:8080\n")
        await logs.wait_for(lambda e: "Uvicorn running" in e["message"])
        await asyncio.sleep(0.5)  # several more polls: nothing may come twice

    records = [(e["source"], e["message"], e["timestamp"]) for e in logs.json()]
    assert records == [
        ("iris-predictor-1/storage-initializer", "Copying contents of s3://models/iris/v1 to local",
         "2026-11-30T10:00:00.100000Z"),
        ("iris-predictor-1/kserve-container", "INFO Registering model: iris", "2026-11-30T10:00:02Z"),
        ("iris-predictor-1/kserve-container", "INFO Uvicorn running on http://0.0.0.0:8080",
         "2026-11-30T10:00:03.500000Z"),
    ]


async def test_an_inference_service_deleted_outside_zeroserve_leaves_its_deployment_dead(
    platform: Platform, cluster: Cluster, controller: Controller, backend: KserveBackend,
) -> None:
    await backend.apply(isvc_for(platform))
    controller.ready(GROUP, "iris")
    async with watching(backend, cluster) as changes:
        await changes.wait_for(1)
        controller.objects.delete_namespaced_custom_object(G, V, GROUP, P, "iris")  # kubectl delete, say
        seen = await changes.wait_for(2)
        await changes.quiet()
    assert statuses(changes.seen) == [(Status.RUNNING, None, 0), (Status.DEAD, "InferenceServiceDeleted", 0)]
    assert seen[1].message == "InferenceService default/iris was deleted outside zeroserve"


async def test_an_inference_service_that_only_claims_to_be_a_deployment_is_ignored(
    platform: Platform, cluster: Cluster, controller: Controller, backend: KserveBackend,
) -> None:
    await backend.apply(isvc_for(platform))
    # Someone with rights in the namespace labels an object of theirs as another group's "iris".
    impostor = isvc_for(platform, "impostor")
    impostor["metadata"]["labels"].update(
        {"zeroserve.io/deployment-id": "iris", "zeroserve.io/resource-group": "other"})
    controller.objects.create_namespaced_custom_object(G, V, GROUP, P, impostor)
    controller.ready(GROUP, "impostor", url="http://attacker.example.com")
    controller.pod(GROUP, "impostor", "impostor-predictor-1")
    async with watching(backend, cluster) as changes:
        await changes.wait_for(1)
        await changes.quiet()
    assert [(c.group, c.id, c.status, c.backend_url) for c in changes.seen] == [
        (GROUP, "iris", Status.PENDING, None)]


async def test_a_deployment_requested_again_after_it_died_is_reported_again(
    platform: Platform, cluster: Cluster, controller: Controller, backend: KserveBackend,
) -> None:
    await backend.apply(isvc_for(platform))
    controller.status(GROUP, "iris", {"modelStatus": {
        "states": {"activeModelState": "FailedToLoad", "targetModelState": "FailedToLoad"},
        "transitionStatus": "BlockedByFailedLoad", "lastFailureInfo": {"message": "no model.joblib"}}})
    async with watching(backend, cluster) as changes:
        await changes.wait_for(1)
        await asyncio.sleep(0.01)  # a later applied-at
        await backend.apply(isvc_for(platform))  # the same request again: KServe has nothing new to say
        await changes.wait_for(2)
        await changes.quiet()
    # Each request's outcome is reported, so the deployment's new PENDING does not wait forever.
    assert statuses(changes.seen) == [(Status.DEAD, "ModelLoadFailed", 0), (Status.DEAD, "ModelLoadFailed", 0)]


async def test_a_watch_started_again_after_one_ended_reports_again(
    platform: Platform, cluster: Cluster, controller: Controller, backend: KserveBackend,
) -> None:
    await backend.apply(isvc_for(platform))
    async with watching(backend, cluster) as first:  # the watcher that lost its Lease, say
        await first.wait_for(1)
    controller.ready(GROUP, "iris")
    async with watching(backend, cluster) as second:  # ... and took it back
        seen = await second.wait_for(1)
    assert statuses(seen) == [(Status.RUNNING, None, 0)]


@pytest.mark.parametrize(("model_status", "expected"), [
    # An update whose model fails to load while the previous version serves: still RUNNING.
    ({"states": {"activeModelState": "Loaded", "targetModelState": "FailedToLoad"},
      "transitionStatus": "BlockedByFailedLoad", "lastFailureInfo": {"message": "bad pickle"}},
     (Status.RUNNING, "ModelLoadFailed", "the update failed, the previous version serves: bad pickle")),
    # A first version that fails to load: DEAD.
    ({"states": {"activeModelState": "FailedToLoad", "targetModelState": "FailedToLoad"},
      "transitionStatus": "BlockedByFailedLoad", "lastFailureInfo": {"message": "bad pickle"}},
     (Status.DEAD, "ModelLoadFailed", "bad pickle")),
    # A spec KServe refuses: DEAD with KServe's reason, not taken for a load failure.
    ({"states": {"activeModelState": "", "targetModelState": "FailedToLoad"}, "transitionStatus": "InvalidSpec",
      "lastFailureInfo": {"reason": "NoSupportingRuntime", "message": "no runtime for sklearn v9"}},
     (Status.DEAD, "NoSupportingRuntime", "no runtime for sklearn v9")),
])
def test_kserve_model_status_becomes_the_sap_status_a_user_can_act_on(
    model_status: dict[str, Any], expected: tuple[Status, str, str],
) -> None:
    isvc = {"metadata": {"name": "iris", "namespace": GROUP}, "status": {
        "url": "http://iris.default.example.com", "address": {"url": "http://iris.default.svc.cluster.local"},
        "conditions": [condition("Ready", "True")], "modelStatus": model_status}}
    found = assess(isvc)
    assert (found.status, found.reason, found.message) == expected
    if found.status == Status.RUNNING:  # reached inside the cluster at its cluster-local address
        assert found.url == "http://iris.default.svc.cluster.local"


async def listen_to(platform: Platform, subject: str) -> Any:
    from conftest import Listener

    listener = Listener()
    await platform.bus.nc.subscribe(subject, cb=listener.handle)
    await platform.bus.nc.flush()
    return listener
