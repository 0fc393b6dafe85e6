"""A Kubernetes API for tests: kmock's emulator served over real HTTP, and a test that plays the
KServe controller through the official client, as the real controller writes through the API.

The emulator runs in a thread with an event loop of its own, because the official client blocks
(DEPENDENCY-NOTES). ``drop()`` restarts its HTTP server on the same port, which breaks every open
watch the way a restarted API server or a lost connection does; the objects survive it.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import kmock
import yaml
from kubernetes import client

ISVC = kmock.resource("serving.kserve.io", "v1beta1", "inferenceservices")
PODS = kmock.resource("", "v1", "pods")
LEASES = kmock.resource("coordination.k8s.io", "v1", "leases")
G, V, P = "serving.kserve.io", "v1beta1", "inferenceservices"


class Cluster:
    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.emulator: kmock.KubernetesEmulator | None = None
        self.server: kmock.Server | None = None
        self.port: int | None = None
        self.logs: dict[tuple[str, str], str] = {}  # (pod, container) -> what it printed, with timestamps
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True, name="kmock")

    def start(self) -> Cluster:
        self._thread.start()
        self._run(self._start())
        return self

    async def _start(self) -> None:
        self.emulator = emulator = kmock.KubernetesEmulator()
        await emulator.__aenter__()
        # The CRD is installed and pods exist as a resource: lists answer [] rather than 404.
        emulator.resources["serving.kserve.io/v1beta1/inferenceservices"].kind = "InferenceService"
        emulator.resources["v1/pods"].kind = "Pod"
        emulator.resources["coordination.k8s.io/v1/leases"].kind = "Lease"
        # As the API server sends logs: text/plain (kmock would send bytes as application/octet-stream).
        emulator["get", PODS, kmock.subresource("log")] << kmock.headers({"Content-Type": "text/plain"}) << self._log
        await self._serve()

    def _log(self, request: kmock.Request) -> bytes:
        return self.logs.get((request.name or "", request.params.get("container", "")), "").encode()

    async def _serve(self) -> None:
        assert self.emulator is not None
        self.server = kmock.Server(self.emulator, port=self.port)  # type: ignore[call-arg]
        await self.server.__aenter__()
        self.port = self.server.url.port

    async def _stop_server(self) -> None:
        """Close the server and every connection to it now: open watches would hold it a minute."""
        assert self.server is not None and self.server._managed_server is not None
        for connection in self.server._managed_server.runner.server.connections:  # aiohttp's own server
            connection.force_close()
        await self.server.__aexit__(None, None, None)

    def _run(self, coroutine: Any, timeout: float = 30) -> Any:
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(timeout)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def drop(self, meanwhile: Callable[[], None] | None = None) -> None:
        """Break every open connection (watches too) by restarting the server; ``meanwhile`` runs
        while it is down (what a controller changed while zeroserve could not see it)."""

        async def down_and_up() -> None:
            await self._stop_server()
            if meanwhile is not None:
                meanwhile()
            await self._serve()

        self._run(down_and_up())

    def kubeconfig(self, path: Path) -> Path:
        path.write_text(yaml.safe_dump({
            "apiVersion": "v1", "kind": "Config", "current-context": "kmock",
            "clusters": [{"name": "kmock", "cluster": {"server": self.url}}],
            "users": [{"name": "tester", "user": {"token": "not-checked-by-the-emulator"}}],
            "contexts": [{"name": "kmock", "context": {"cluster": "kmock", "user": "tester"}}],
        }))
        return path

    def api(self) -> client.ApiClient:
        configuration = client.Configuration()
        configuration.host = self.url
        return client.ApiClient(configuration)

    def close(self) -> None:
        async def stop() -> None:
            if self.server is not None:
                await self._stop_server()
            if self.emulator is not None:
                await self.emulator.__aexit__(None, None, None)

        try:
            self._run(stop())
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self._thread.join(5)

    # -- state, read and written directly (what is there, whatever the API server is doing) -------

    def isvc(self, namespace: str, name: str) -> dict[str, Any] | None:
        assert self.emulator is not None
        key = (ISVC, namespace, name)
        if key not in self.emulator.objects or self.emulator.objects[key].deleted:
            return None
        return dict(self.emulator.objects[key].raw)

    def requests(self, method: str) -> list[kmock.Request]:
        """The requests of this method the API server got for InferenceServices, oldest first."""
        assert self.emulator is not None
        return list(self.emulator[method, ISVC])

    def watch_requests(self) -> int:
        """How many watches of InferenceServices and pods were opened so far."""
        assert self.emulator is not None
        return sum(1 for resource in (ISVC, PODS) for request in self.emulator["get", resource]
                   if request.params.get("watch") == "true")

    def lease(self, namespace: str, name: str) -> dict[str, Any]:
        assert self.emulator is not None
        return dict(self.emulator.objects[LEASES, namespace, name].raw)

    def patch_isvc(self, namespace: str, name: str, patch: dict[str, Any]) -> None:
        """Change an object without the API (the server may be down): only for ``drop(meanwhile)``."""
        assert self.emulator is not None
        self.emulator.objects[ISVC, namespace, name].patch(patch)


class Controller:
    """The KServe controller's part, played through the official client."""

    def __init__(self, cluster: Cluster) -> None:
        self.objects = client.CustomObjectsApi(cluster.api())
        self.core = client.CoreV1Api(self.objects.api_client)

    def status(self, namespace: str, name: str, status: dict[str, Any]) -> None:
        self.objects.patch_namespaced_custom_object_status(G, V, namespace, P, name, {"status": status})

    def ready(self, namespace: str, name: str, url: str | None = None) -> None:
        self.status(namespace, name, {
            "url": url or f"http://{name}.{namespace}.example.com",
            "conditions": [condition("Ready", "True"), condition("PredictorReady", "True")],
            "modelStatus": {"states": {"activeModelState": "Loaded", "targetModelState": "Loaded"},
                            "transitionStatus": "UpToDate"},
        })

    def pod(self, namespace: str, isvc: str, name: str, *, ready: bool = True,
            unschedulable: str | None = None, waiting: str | None = None) -> None:
        """A predictor pod of ``isvc``, running and ready, or stuck as said."""
        conditions = [condition("PodScheduled", "True"), condition("Ready", "True" if ready else "False")]
        phase = "Running"
        if unschedulable:
            conditions = [condition("PodScheduled", "False", "Unschedulable", unschedulable)]
            phase = "Pending"
        container_state: dict[str, Any] = {"running": {}}
        if waiting:
            container_state = {"waiting": {"reason": waiting, "message": f"{waiting} for the image"}}
            phase = "Pending"
        body = {
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "namespace": namespace,
                         "labels": {"serving.kserve.io/inferenceservice": isvc, "component": "predictor"}},
            "spec": {"initContainers": [{"name": "storage-initializer", "image": "kserve/storage-initializer"}],
                     "containers": [{"name": "kserve-container", "image": "kserve/sklearnserver"}]},
            "status": {"phase": phase, "conditions": conditions,
                       "containerStatuses": [{"name": "kserve-container", "ready": ready and not waiting,
                                              "image": "kserve/sklearnserver", "imageID": "", "restartCount": 0,
                                              "state": container_state}]},
        }
        try:
            self.core.read_namespaced_pod(name, namespace, _preload_content=False)
        except client.ApiException:
            self.core.create_namespaced_pod(namespace, client.V1Pod.from_dict(body))
        else:  # the kubelet's part: it writes the status of the pods it runs
            self.core.patch_namespaced_pod_status(name, namespace, {"status": body["status"]})

    def delete_pod(self, namespace: str, name: str) -> None:
        self.core.delete_namespaced_pod(name, namespace)


def condition(kind: str, status: str, reason: str | None = None, message: str | None = None) -> dict[str, Any]:
    found = {"type": kind, "status": status, "lastTransitionTime": "2026-11-30T10:00:00Z"}
    if reason:
        found["reason"] = reason
    if message:
        found["message"] = message
    return found
