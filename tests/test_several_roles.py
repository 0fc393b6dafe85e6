"""Several of each role at once, as a cluster runs them: two gateways, two function runners and two watchers,
each a ``zeroserve up --role ...`` process with a data directory of its own (as pods have), against one
nats-server and kmock's Kubernetes emulator over HTTP (the kserve backend). The test plays KServe's controller
and a load balancer that sends each call to either gateway. What a user sees must not depend on which replica
answered: each event handled once, every step announced once, a token and a stream good at either gateway,
each webhook delivered once, and one watcher at a time, the other taking over when it dies.
"""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import nats
import pytest
import pytest_asyncio
from aiohttp import web
from conftest import free_port, until
from kube import Cluster, Controller, condition
from kubernetes import client
from pydantic import SecretStr
from typer.testing import CliRunner

import zeroserve
from zeroserve.cli import app
from zeroserve.core.nats_server import NatsServer
from zeroserve.core.store import LAST_DELIVERIES
from zeroserve.events import ArtifactCreated, DeploymentDeleted, DeploymentRequested, DeploymentStopped, new_event
from zeroserve.gateway.security import CONSOLE_COOKIE, CONSOLE_HEADER
from zeroserve.node import Node
from zeroserve.roles import checked_roles
from zeroserve.settings import Settings


def with_the_fleet(test: Any) -> Any:
    """A test of the six processes (started once for the module), in the module's event loop."""
    return pytest.mark.slow(pytest.mark.asyncio(loop_scope="module")(test))


GROUP = "default"
DEFAULT = {"AI-Resource-Group": GROUP}
PUBLIC_URL = "https://zeroserve.example.com"  # the load balancer's: both gateways sit behind it
DEPLOYMENTS = 6
LEASE_S = 3
STATUS = "io.zeroserve.deployment.status"
REQUESTED = "io.zeroserve.deployment.requested"
SOURCE = Path(zeroserve.__file__).resolve().parent.parent  # the code under test, for the processes too


@dataclass
class Replica:
    """One ``zeroserve up --role <role>`` process, as one pod of a cluster."""

    name: str
    role: str
    data_dir: Path
    metrics_port: int
    port: int | None = None  # the gateway's
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def output(self) -> str:
        return (self.data_dir.parent / f"{self.name}.log").read_text(errors="replace")

    def start(self, environment: dict[str, str]) -> None:
        self.data_dir.mkdir(parents=True)
        env = {**environment, "ZEROSERVE_DATA_DIR": str(self.data_dir), "ZEROSERVE_POD_NAME": self.name,
               "ZEROSERVE_METRICS_PORT": str(self.metrics_port)}
        if self.port is not None:
            env["ZEROSERVE_GATEWAY_PORT"] = str(self.port)
        with (self.data_dir.parent / f"{self.name}.log").open("wb") as output:
            self.process = subprocess.Popen([sys.executable, "-m", "zeroserve.cli", "up", "--role", self.role],
                                            env=env, stdout=output, stderr=subprocess.STDOUT)

    def up(self) -> bool:
        assert self.process is not None
        if self.process.poll() is not None:
            raise AssertionError(f"{self.name} ended with {self.process.returncode}:\n{self.output}")
        return "is up" in self.output

    async def metric(self, name: str, **labels: str) -> float:
        """A counter of this process's /metrics (0 when it has not counted yet)."""
        async with httpx.AsyncClient() as http:
            text = (await http.get(f"http://127.0.0.1:{self.metrics_port}/metrics")).text
        wanted = "{" + ",".join(f'{k}="{v}"' for k, v in labels.items()) + "}"
        for line in text.splitlines():
            if line.startswith(f"{name}{wanted} "):
                return float(line.split()[-1])
        return 0.0

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(sig)
            try:
                self.process.wait(20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


class Receiver:
    """A webhook receiver on loopback: every delivery, as (webhook-id, the CloudEvent)."""

    def __init__(self) -> None:
        self.url = ""
        self.deliveries: list[tuple[str, dict[str, Any]]] = []
        self._runner: web.AppRunner | None = None

    async def handle(self, request: web.Request) -> web.Response:
        event = json.loads(await request.read())
        self.deliveries.append((request.headers["webhook-id"], event))
        return web.Response(status=204)

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post("/hook", self.handle)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.url = f"http://127.0.0.1:{site._server.sockets[0].getsockname()[1]}/hook"  # type: ignore[union-attr]

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()


@dataclass
class Fleet:
    """The replicas, what they share, and what the test saw of them."""

    nats: NatsServer
    kube: Cluster
    receiver: Receiver
    replicas: dict[str, Replica]
    token: str = ""
    statuses: list[dict[str, Any]] = field(default_factory=list)  # every deployment.status, as NATS carried it
    streamed: list[dict[str, Any]] = field(default_factory=list)  # gateway-b's /v2/events/stream
    deployments: list[str] = field(default_factory=list)  # ids, asked through gateway-a and gateway-b in turn
    handled: dict[str, list[float]] = field(default_factory=dict)  # function -> events each runner handled

    def gateways(self) -> list[Replica]:
        return [self.replicas["gateway-a"], self.replicas["gateway-b"]]

    def http(self, gateway: Replica) -> httpx.AsyncClient:
        return httpx.AsyncClient(base_url=gateway.url, timeout=30,
                                 headers={"Authorization": f"Bearer {self.token}", **DEFAULT})


@pytest.fixture(scope="module")
def kube() -> Iterator[Cluster]:
    emulator = Cluster().start()
    yield emulator
    emulator.close()


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def fleet(tmp_path_factory: pytest.TempPathFactory, kube: Cluster) -> AsyncIterator[Fleet]:
    root = tmp_path_factory.mktemp("roles")
    server = NatsServer(root / "nats")
    receiver = Receiver()
    await asyncio.gather(server.start(), receiver.start())
    environment = {
        **{k: v for k, v in os.environ.items() if not k.startswith("ZEROSERVE_")},
        "PYTHONPATH": os.pathsep.join([str(SOURCE), os.environ.get("PYTHONPATH", "")]),
        "ZEROSERVE_BACKEND": "kserve", "ZEROSERVE_NATS_URL": str(server.url), "ZEROSERVE_PUBLIC_URL": PUBLIC_URL,
        "ZEROSERVE_KUBECONFIG": str(kube.kubeconfig(root / "kubeconfig")),
        # One key for every gateway, as the manifests give each pod the zeroserve-token-key Secret.
        "ZEROSERVE_TOKEN_SIGNING_KEY": secrets.token_hex(32),
        "ZEROSERVE_LEASE_NAMESPACE": "zeroserve", "ZEROSERVE_LEASE_DURATION_S": str(LEASE_S),
        "ZEROSERVE_KSERVE_LOG_POLL_S": "0.5", "ZEROSERVE_KSERVE_STOP_TIMEOUT_S": "20",
        "ZEROSERVE_WEBHOOK_ALLOWED_NETWORKS": '["127.0.0.0/8"]',
    }
    replicas = {name: Replica(name, name.split("-")[0], root / name, free_port(),
                              free_port() if name.startswith("gateway") else None)
                for name in ("gateway-a", "gateway-b", "functions-a", "functions-b", "watcher-a", "watcher-b")}
    fleet = Fleet(server, kube, receiver, replicas)
    try:
        for replica in replicas.values():
            replica.start(environment)
        # About 15 s of CPU in all (2.4 s a process): minutes on a machine others keep busy. One that ends fails it now.
        await until(lambda: all(replica.up() for replica in replicas.values()), timeout=240,
                    what="every replica up")
        yield fleet
    finally:
        # Killed, not stopped: how each role stops in order is other tests' business, and this saves seconds.
        await asyncio.gather(*(asyncio.to_thread(replica.stop, signal.SIGKILL) for replica in replicas.values()))
        await asyncio.gather(receiver.stop(), server.stop())


# --- one story, through both gateways; the tests below each check one part of what it left -----------------


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def story(fleet: Fleet, kube: Cluster) -> Fleet:
    """A subscription and a group stream opened, then ``DEPLOYMENTS`` deployments asked for through either
    gateway in turn, brought to RUNNING by KServe (the test), stopped through the other gateway; every queue
    drained before the checks."""
    a, b = fleet.gateways()
    fleet.token = await _token(a)
    nc = await nats.connect(str(fleet.nats.url))

    async def seen(msg: Any) -> None:
        fleet.statuses.append(json.loads(msg.data))

    await nc.subscribe(f"zeroserve.{GROUP}.deployment.status", cb=seen)
    async with fleet.http(a) as via_a, fleet.http(b) as via_b:
        subscribed = await via_b.post("/v2/subscriptions", json={"url": fleet.receiver.url, "eventTypes": [STATUS]})
        assert subscribed.status_code == 201, subscribed.text
        streaming = await _follow_group(via_b, fleet.streamed)
        try:
            artifact = await via_a.post("/v2/lm/artifacts", json={
                "name": "iris", "kind": "model", "url": "pvc://models/iris", "scenarioId": "model-serving"})
            assert artifact.status_code == 201, artifact.text
            configuration = await via_b.post("/v2/lm/configurations", json={
                "name": "iris", "scenarioId": "model-serving", "executableId": "sklearn",
                "inputArtifactBindings": [{"key": "model", "artifactId": artifact.json()["id"]}]})
            assert configuration.status_code == 201, configuration.text

            created = await asyncio.gather(*(
                (via_a, via_b)[n % 2].post("/v2/lm/deployments", json={"configurationId": configuration.json()["id"]})
                for n in range(DEPLOYMENTS)))
            assert all(answer.status_code == 202 for answer in created), [a.text for a in created]
            fleet.deployments = [answer.json()["id"] for answer in created]

            controller = Controller(kube)
            for id in fleet.deployments:  # KServe's part: each InferenceService becomes ready
                await until(lambda id=id: kube.isvc(GROUP, id), what=f"the InferenceService {id}")
                await asyncio.to_thread(controller.ready, GROUP, id)
            await _all(fleet, via_a, "RUNNING")

            confirming = asyncio.create_task(_confirm_stops(kube, controller, fleet.deployments))
            stopped = await asyncio.gather(*(
                (via_b, via_a)[n % 2].patch(f"/v2/lm/deployments/{id}", json={"targetStatus": "STOPPED"})
                for n, id in enumerate(fleet.deployments)))
            assert all(answer.status_code == 202 for answer in stopped), [a.text for a in stopped]
            await _all(fleet, via_b, "STOPPED")
            await confirming
            await _drained(nc)
            await until(lambda: _stopped_streamed(fleet), what="every STOPPED in gateway-b's stream")
            runners = [fleet.replicas["functions-a"], fleet.replicas["functions-b"]]
            for function in ("deployment_requested", "deployment_stopped"):
                fleet.handled[function] = [await r.metric("zeroserve_events_handled_total", function=function)
                                           for r in runners]
        finally:
            streaming.cancel()
            await asyncio.gather(streaming, return_exceptions=True)
    await nc.close()
    return fleet


async def _token(gateway: Replica) -> str:
    """A token from this gateway, with the operator's client it wrote at its first start."""
    credentials = json.loads((gateway.data_dir / "credentials.json").read_text())
    async with httpx.AsyncClient(base_url=gateway.url) as http:
        answer = await http.post("/oauth/token", data={"grant_type": "client_credentials"},
                                 auth=(credentials["client_id"], credentials["client_secret"]))
    assert answer.status_code == 200, answer.text
    return str(answer.json()["access_token"])


async def _follow_group(http: httpx.AsyncClient, into: list[dict[str, Any]]) -> asyncio.Task[None]:
    """A task that reads the group's event stream into ``into`` (SSE id and the CloudEvent); it has its answer's
    head (so every event published from then on is in it) when this returns."""
    opened = asyncio.get_running_loop().create_future()

    async def read() -> None:
        async with http.stream("GET", "/v2/events/stream") as stream:
            opened.set_result(stream.status_code)
            fields: dict[str, str] = {}
            async for line in stream.aiter_lines():
                if line:
                    name, _, value = line.partition(":")
                    fields[name] = value.strip()
                elif "data" in fields:  # an event ends with a blank line; its id comes after its data
                    into.append({"position": fields.get("id"), **json.loads(fields["data"])})
                    fields = {}

    task = asyncio.create_task(read())
    done, _ = await asyncio.wait([opened, task], timeout=30, return_when=asyncio.FIRST_COMPLETED)
    if task in done:
        await task
    assert opened.done() and opened.result() == 200
    return task


async def _all(fleet: Fleet, http: httpx.AsyncClient, status: str) -> None:
    async def reached() -> bool:
        answer = await http.get("/v2/lm/deployments")
        return sorted(d["id"] for d in answer.json()["resources"] if d["status"] == status) == sorted(
            fleet.deployments)

    await until(reached, what=f"every deployment {status}")


async def _confirm_stops(kube: Cluster, controller: Controller, ids: list[str]) -> None:
    """KServe's part of a stop: once the annotation is there, the Stopped condition."""
    pending = set(ids)
    while pending:
        for id in list(pending):
            if (kube.isvc(GROUP, id) or {}).get("metadata", {}).get("annotations", {}).get(
                    "serving.kserve.io/stop") == "true":
                await asyncio.to_thread(controller.status, GROUP, id, {
                    "conditions": [condition("Stopped", "True"), condition("Ready", "False", "Stopped")]})
                pending.discard(id)
        await asyncio.sleep(0.05)


async def _drained(nc: Any) -> None:
    """Every durable consumer has had each of its events acked: nothing is left to be handled again."""
    js = nc.jetstream()

    async def idle() -> bool:
        consumers = await js.consumers_info("ZEROSERVE_EVENTS")
        return all(info.num_pending == 0 and info.num_ack_pending == 0 for info in consumers
                   if info.config.durable_name)

    await until(idle, what="every consumer drained")


def _stopped_streamed(fleet: Fleet) -> bool:
    stopped = {e["data"]["id"] for e in fleet.streamed if e["type"] == STATUS and e["data"]["status"] == "STOPPED"}
    return stopped == set(fleet.deployments)


# --- the checks ---------------------------------------------------------------------------------------------


@with_the_fleet
async def test_a_token_or_console_session_from_one_gateway_is_taken_by_the_other(fleet: Fleet) -> None:
    a, b = fleet.gateways()
    token = await _token(a)
    async with httpx.AsyncClient(base_url=b.url, headers={"Authorization": f"Bearer {token}", **DEFAULT}) as http:
        answer = await http.get("/v2/lm/deployments")
    assert answer.status_code == 200, answer.text

    credentials = json.loads((b.data_dir / "credentials.json").read_text())
    async with httpx.AsyncClient(base_url=b.url) as at_b, httpx.AsyncClient(base_url=a.url) as at_a:
        signed_in = await at_b.post("/console/session", json={"clientId": credentials["client_id"],
                                                               "clientSecret": credentials["client_secret"]})
        assert signed_in.status_code == 204, signed_in.text
        cookie = {CONSOLE_COOKIE: signed_in.cookies[CONSOLE_COOKIE]}
        session = await at_a.get("/console/session", cookies=cookie)
        listed = await at_a.get("/v2/lm/deployments", cookies=cookie, headers={CONSOLE_HEADER: "1", **DEFAULT})
    assert session.status_code == 200 and session.json()["clientId"] == credentials["client_id"]
    assert listed.status_code == 200, listed.text


def test_a_gateway_of_a_cluster_does_not_start_without_the_key_every_gateway_shares(tmp_path: Path) -> None:
    env = {"ZEROSERVE_DATA_DIR": str(tmp_path), "ZEROSERVE_BACKEND": "kserve", "ZEROSERVE_NATS_URL": "nats://127.0.0.1:1",
           "ZEROSERVE_PUBLIC_URL": PUBLIC_URL}
    refused = CliRunner().invoke(app, ["up", "--role", "gateway"], env=env)
    assert refused.exit_code == 1
    assert "set ZEROSERVE_TOKEN_SIGNING_KEY" in str(refused.exception or refused.output)
    assert not (tmp_path / "token.key").exists()  # no key of its own made meanwhile
    settings = Settings(**{k.removeprefix("ZEROSERVE_").lower(): v for k, v in env.items()})
    assert checked_roles(["functions"], settings) == {"functions"}  # tokens are the gateway's business
    keyed = settings.model_copy(update={"token_signing_key": SecretStr(secrets.token_hex(32))})
    assert checked_roles(["gateway"], keyed) == {"gateway"}


@with_the_fleet
async def test_each_request_is_handled_by_one_runner_and_each_step_announced_once(story: Fleet) -> None:
    steps = Counter((s["id"], s["status"]) for s in story.statuses)
    for id in story.deployments:
        said = [s["status"] for s in story.statuses if s["id"] == id]
        assert said == ["UNKNOWN", "PENDING", "RUNNING", "STOPPING", "STOPPED"], (id, said)
    assert max(steps.values()) == 1
    for function, handled in story.handled.items():  # by either runner, each once
        assert sum(handled) == DEPLOYMENTS, (function, handled)


@with_the_fleet
async def test_either_gateway_streams_what_was_asked_through_the_other(story: Fleet) -> None:
    # gateway-b's stream of the group has every request, half of them made through gateway-a.
    requested = [e["data"]["id"] for e in story.streamed if e["type"] == REQUESTED]
    assert sorted(requested) == sorted(story.deployments)
    streamed_steps = Counter((e["data"]["id"], e["data"]["status"]) for e in story.streamed if e["type"] == STATUS)
    assert streamed_steps == Counter((s["id"], s["status"]) for s in story.statuses)

    # A client of gateway-b's stream that reconnects to gateway-a with its Last-Event-ID goes on where it was.
    id = story.deployments[0]
    events = [e for e in story.streamed if e["type"] == STATUS and e["data"]["id"] == id]
    running = next(e for e in events if e["data"]["status"] == "RUNNING")
    async with story.http(story.replicas["gateway-a"]) as http, http.stream(
            "GET", f"/v2/lm/deployments/{id}/events", headers={"Last-Event-ID": running["position"]}) as stream:
        assert stream.status_code == 200
        replayed, event = [], None
        async for line in stream.aiter_lines():
            if line.startswith("event:"):
                event = line[6:].strip()
            elif line.startswith("data:") and event == STATUS:
                replayed.append(json.loads(line[5:])["status"])
                if replayed[-1] == "STOPPED":
                    break
    assert replayed == ["STOPPING", "STOPPED"]


@with_the_fleet
async def test_each_webhook_is_delivered_once_though_both_watchers_deliver(story: Fleet) -> None:
    def deliveries() -> list[tuple[str, dict[str, Any]]]:
        return [(webhook_id, event) for webhook_id, event in story.receiver.deliveries
                if event["data"]["id"] in story.deployments]

    await until(lambda: len(deliveries()) >= len(story.statuses), what="every status delivered")
    webhook_ids = Counter(webhook_id for webhook_id, _ in deliveries())
    assert max(webhook_ids.values()) == 1, [w for w, n in webhook_ids.items() if n > 1]
    delivered = Counter((event["data"]["id"], event["data"]["status"]) for _, event in deliveries())
    assert delivered == Counter((s["id"], s["status"]) for s in story.statuses)

    # Both watchers noted what they delivered; the subscription's last deliveries hold them merged, none lost.
    async with story.http(story.replicas["gateway-a"]) as http:
        async def noted() -> list[dict[str, Any]] | None:
            (subscription,) = (await http.get("/v2/subscriptions")).json()["resources"]
            last = subscription["lastDeliveries"]
            return last if len(last) == min(LAST_DELIVERIES, len(story.statuses)) else None

        last = await until(noted, what="the last deliveries noted")
    delivered_ids = {event["id"] for _, event in deliveries()}
    assert len({d["eventId"] for d in last}) == len(last) and {d["eventId"] for d in last} <= delivered_ids


@with_the_fleet
async def test_one_watcher_holds_the_lease_and_the_other_takes_over_when_it_dies(story: Fleet, kube: Cluster) -> None:
    leases = client.CoordinationV1Api(kube.api())

    def lease() -> Any:
        return leases.read_namespaced_lease("zeroserve-watcher", "zeroserve").spec

    watchers = [story.replicas["watcher-a"], story.replicas["watcher-b"]]

    def took() -> list[str]:
        return [line for w in watchers for line in w.output.splitlines() if "took lease" in line]

    # Each taking of the Lease is said once, by the one that took it: as many as the Lease counts, plus its
    # creation (a renewal that timed out on a busy machine may have handed it over before now).
    await until(lambda: len(took()) == lease().lease_transitions + 1, what="each take of the Lease logged once")
    held = await asyncio.to_thread(lease)
    holder = story.replicas[held.holder_identity]
    other = next(w for w in watchers if w is not holder)
    # Only the holder wrote what KServe did: each RUNNING is in one watcher's log, once.
    for id in story.deployments:
        said = [w.name for w in (holder, other) for line in w.output.splitlines() if f"{id} is RUNNING" in line]
        assert len(said) == 1, (id, said)

    holder.stop(signal.SIGKILL)  # a node lost: nobody hands the Lease on, it expires
    taken = await until(lambda: (spec := lease()).holder_identity == other.name and spec, timeout=LEASE_S * 10,
                        what=f"{other.name} holding the Lease")
    assert taken.lease_transitions > held.lease_transitions
    await until(lambda: f"took lease zeroserve/zeroserve-watcher (from {holder.name})" in other.output,
                what=f"{other.name} saying it took the Lease")

    # The watcher that took over does the work: a deployment KServe makes ready is RUNNING, said once.
    nc = await nats.connect(str(story.nats.url))
    statuses: list[dict[str, Any]] = []

    async def seen(msg: Any) -> None:
        statuses.append(json.loads(msg.data))

    await nc.subscribe(f"zeroserve.{GROUP}.deployment.status", cb=seen)
    async with story.http(story.replicas["gateway-b"]) as http:
        configuration = (await http.get(f"/v2/lm/deployments/{story.deployments[0]}")).json()["configurationId"]
        asked = await http.post("/v2/lm/deployments", json={"configurationId": configuration})
        assert asked.status_code == 202, asked.text
        id = asked.json()["id"]
        await until(lambda: kube.isvc(GROUP, id), what="the InferenceService")
        await asyncio.to_thread(Controller(kube).ready, GROUP, id)
        await until(lambda: any(s["status"] == "RUNNING" for s in statuses), what="RUNNING from the new holder")
    await _drained(nc)
    await nc.close()
    assert [s["status"] for s in statuses if s["id"] == id] == ["UNKNOWN", "PENDING", "RUNNING"]


# --- what two runners do with two commands about one deployment at once ---------------------------------------


@pytest.mark.parametrize("commands", ["update, stop", "request, stop", "update, stop, delete"])
async def test_a_stop_or_delete_handled_by_one_runner_while_another_applies_a_request_stays_done(
    commands: str, settings: Settings, cluster: Cluster, tmp_path: Path, nats_server: NatsServer,
) -> None:
    """One runner writes the InferenceService of a request (a new deployment, or an update of a running one)
    only after another runner has stopped the deployment (and deleted it): the stop (the delete) stands."""
    common = dict(backend="kserve", kubeconfig=cluster.kubeconfig(tmp_path / "kubeconfig"), nats_url=nats_server.url,
                  public_url=PUBLIC_URL, token_signing_key=SecretStr(secrets.token_hex(32)), kserve_stop_timeout_s=0.5,
                  lease_namespace="zeroserve", pod_name="watcher-0")

    def runner_of(*functions: str) -> Settings:
        """A runner of only these functions: which runner handles which command is then no matter of chance."""
        directory = tmp_path / "-".join(functions)
        directory.mkdir()
        for function in functions:
            shutil.copy(settings.functions_dir / f"{function}.py", directory)
        return settings.model_copy(update={**common, "functions_dir": directory,
                                           "data_dir": tmp_path / directory.name})

    requests = runner_of("artifact_created", "deployment_requested")
    others = runner_of("deployment_stopped", "deployment_deleted")
    watcher = settings.model_copy(update={**common, "data_dir": tmp_path / "watcher"})
    async with Node(requests, ["functions"]) as first, Node(others, ["functions"]), Node(watcher, ["watcher"]):
        platform = first.platform
        assert platform is not None
        original = platform.backend.apply
        held = not commands.startswith("update")  # the request's own apply, or (after it) the update's
        holding, release, applied = asyncio.Event(), asyncio.Event(), asyncio.Event()

        async def apply(isvc: dict[str, Any]) -> bool:
            nonlocal held
            if held:  # held until the other runner has done its part
                held = False
                holding.set()
                await asyncio.wait_for(release.wait(), 30)
                try:
                    return await original(isvc)
                finally:
                    applied.set()
            held = True
            return await original(isvc)

        def stop_annotation_is(value: str) -> bool:
            return (cluster.isvc(GROUP, "iris") or {}).get("metadata", {}).get("annotations", {}).get(
                "serving.kserve.io/stop") == value

        platform.backend.apply = apply  # type: ignore[method-assign]

        async def publish(data: Any) -> None:
            await platform.bus.publish(new_event(data, source="/tests"), GROUP)

        async def status() -> str | None:
            record = await platform.store.deployments.get(GROUP, "iris")
            return record.status.value if record else None

        await publish(ArtifactCreated(id="iris-model", name="iris", url="pvc://models/iris"))
        request = DeploymentRequested(id="iris", executable_id="sklearn", input_artifacts={"model": "iris-model"})
        await publish(request)
        if commands.startswith("update"):
            await until(lambda: cluster.isvc(GROUP, "iris"), what="the InferenceService")
            await asyncio.to_thread(Controller(cluster).ready, GROUP, "iris")
            await until(lambda: _is(status, "RUNNING"), what="RUNNING")
            await publish(request.model_copy(update={"parameters": {"maxReplicas": "3"}}))
        await asyncio.wait_for(holding.wait(), 30)
        await publish(DeploymentStopped(id="iris"))  # while the first runner applies the request
        await until(lambda: _is(status, "STOPPED"), what="STOPPED")
        if commands.endswith("delete"):
            await publish(DeploymentDeleted(id="iris"))

            async def deleted() -> bool:
                return await status() is None and cluster.isvc(GROUP, "iris") is None

            await until(deleted, what="the deployment and its InferenceService deleted")
        release.set()
        await asyncio.wait_for(applied.wait(), 30)
        nc = await nats.connect(str(nats_server.url))
        try:
            await _drained(nc)  # every command handled to the end
        finally:
            await nc.close()
        if commands.endswith("delete"):
            assert await status() is None
            assert cluster.isvc(GROUP, "iris") is None, "the deployment is deleted but its InferenceService is there"
        else:
            assert await status() == "STOPPED"
            assert stop_annotation_is("true"), "the deployment is STOPPED but its InferenceService serves"


async def _is(status: Any, wanted: str) -> bool:
    return bool(await status() == wanted)
