"""The inference data plane as a caller sees it: answers and bodies streamed both ways through the
gateway, bounded, with honest headers, and a model server that misbehaves mid-answer. The model
servers are real (KServe's ModelServer): the iris model, and a custom predictor that streams,
echoes headers, sleeps or dies on request (tests/data/predictors/probe)."""

from __future__ import annotations

import asyncio
import shutil
import socket
from pathlib import Path

import httpx
import pytest
from conftest import operator, until, with_templates
from models import IRIS_ROWS, train_iris_sklearn
from test_end_to_end import deploy_model, publish

from zeroserve.backends.local import LocalBackend
from zeroserve.events import ArtifactCreated, DeploymentRequested
from zeroserve.node import Node
from zeroserve.settings import Settings

pytestmark = pytest.mark.slow

DATA = Path(__file__).parent / "data"


@pytest.fixture
def settings(settings: Settings, tmp_path: Path) -> Settings:
    """The shipped templates, with the tests' custom template (one replica, no image) for the shipped one."""
    return with_templates(settings, tmp_path / "templates", DATA / "templates" / "custom.yaml")


async def deploy_probe(zeroserve: Node, listen, deployment_id: str = "probe", **parameters: str) -> str:
    """The probe predictor deployed with the custom template: its predict URL."""
    statuses = await listen(zeroserve, "zeroserve.default.deployment.status")
    artifacts = await listen(zeroserve, "zeroserve.default.artifact.status")
    source = zeroserve.settings.data_dir / "sources" / deployment_id  # inside the allowed file roots
    shutil.copytree(DATA / "predictors" / "probe", source)
    await publish(zeroserve, ArtifactCreated(id=f"{deployment_id}-code", name=deployment_id, url=source.as_uri()))
    await artifacts.wait_for(lambda e: e["id"] == f"{deployment_id}-code" and e["status"] == "staged")
    await publish(zeroserve, DeploymentRequested(id=deployment_id, executable_id="custom",
                                                 input_artifacts={"model": f"{deployment_id}-code"},
                                                 parameters=parameters))
    running = await statuses.wait_for(lambda e: e["id"] == deployment_id and e["status"] == "RUNNING")
    return f"{running['deploymentUrl']}/v1/models/{deployment_id}:predict"


def in_flight(zeroserve: Node, deployment_id: str) -> int:
    assert zeroserve.platform is not None and isinstance(zeroserve.platform.backend, LocalBackend)
    return sum(r.in_flight for r in zeroserve.platform.backend.services["default", deployment_id].replicas)


async def metric(client: httpx.AsyncClient, zeroserve: Node, name: str, **labels: str) -> float:
    """The sum of a metric's samples that have these labels, as GET /metrics shows them."""
    text = (await client.get(f"{zeroserve.url}/metrics")).text
    wanted = {f'{key}="{value}"' for key, value in labels.items()}
    total = 0.0
    for line in text.splitlines():
        if line.startswith(name + "{") and wanted <= set(line[len(name) + 1:line.index("}")].split(",")):
            total += float(line.rsplit(" ", 1)[1])
    return total


async def test_an_event_stream_passes_event_by_event_and_its_end_is_honest(settings, listen, tmp_path):
    async with Node(settings) as zeroserve, operator(zeroserve) as client:
        url = await deploy_probe(zeroserve, listen, requestTimeout="2")

        # Event 0 reaches the caller while the model server still waits to write event 1: nothing buffers.
        gate = tmp_path / "gate"
        async with client.stream("POST", url, json={"events": 3, "gate": str(gate)}) as stream:
            assert stream.status_code == 200
            parts = stream.aiter_text()
            first = await asyncio.wait_for(anext(parts), 30)
            assert first == "data: 0\n\n"
            gate.touch()
            rest = "".join([part async for part in parts])
        assert rest == "data: 1\n\ndata: 2\n\n"

        # A stream may last longer than the deployment's timeout (2 s) as long as it keeps writing...
        long = await client.post(url, json={"events": 6, "every": 0.5})
        assert long.status_code == 200 and long.text.count("data: ") == 6
        # ...but a model server silent for longer is cut off with 504.
        silent = await client.post(url, json={"sleep": 4})
        assert silent.status_code == 504 and silent.json()["error"]["code"] == "UpstreamTimeout"

        # A caller that leaves mid-stream gives its replica back.
        gate.unlink()
        async with client.stream("POST", url, json={"events": 3, "gate": str(gate)}) as stream:
            await anext(stream.aiter_text())
            assert in_flight(zeroserve, "probe") == 1
        await until(lambda: in_flight(zeroserve, "probe") == 0, what="the replica to be given back")

        # A model server that dies mid-stream ends the caller's answer at once, visibly cut short, and is counted.
        broken_before = await metric(client, zeroserve, "zeroserve_inference_broken_answers_total", deployment="probe")
        received = []
        with pytest.raises(httpx.RemoteProtocolError):
            async with client.stream("POST", url, json={"events": 3, "die_after": 1}) as stream:
                async for part in stream.aiter_text():
                    received.append(part)
        assert received == ["data: 0\n\n"]
        assert await metric(client, zeroserve, "zeroserve_inference_broken_answers_total",
                            deployment="probe") == broken_before + 1
        assert in_flight(zeroserve, "probe") == 0


async def test_answers_carry_one_date_one_server_and_the_trace_context(settings, listen):
    async with Node(settings) as zeroserve, operator(zeroserve) as client:
        url = await deploy_probe(zeroserve, listen)
        answer = await client.post(url, json={"echo": True}, headers={
            "traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
            "tracestate": "congo=t61rcWkgMzE", "Connection": "keep-alive, X-Hop", "X-Hop": "only this hop",
        })
        assert answer.status_code == 200, answer.text
        assert len(answer.headers.get_list("date")) == 1
        assert len(answer.headers.get_list("server")) == 1
        seen = {name.lower(): value for name, value in answer.json()["headers"].items()}
        assert seen["traceparent"] == "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
        assert seen["tracestate"] == "congo=t61rcWkgMzE"
        assert "authorization" not in seen  # zeroserve's token stays with zeroserve
        assert "x-hop" not in seen  # named by Connection: this hop's only (RFC 9110 section 7.6.1)


async def test_request_bodies_stream_bounded_by_the_deployments_limit(settings, listen):
    async with Node(settings) as zeroserve, operator(zeroserve, timeout=120) as client:
        url = await deploy_probe(zeroserve, listen, maxRequestBody="1Ki", requestTimeout="2")
        # Over the limit by its Content-Length: refused before a byte is read, and no replica starts for it.
        big = await client.post(url, content=b"{" + b" " * 2000 + b"}", headers={"Content-Type": "application/json"})
        assert big.status_code == 413 and big.json()["error"]["code"] == "RequestBodyTooLarge"
        assert "1024 bytes" in big.json()["error"]["message"]
        assert in_flight(zeroserve, "probe") == 0

        async def chunks():  # no Content-Length: counted as it streams
            for _ in range(4):
                yield b" " * 512

        streamed = await client.post(url, content=chunks(), headers={"Content-Type": "application/json"})
        assert streamed.status_code == 413 and streamed.json()["error"]["code"] == "RequestBodyTooLarge"

        # A body shorter than its Content-Length that stalls: 400 once the deployment's timeout passes.
        port = int(url.split(":")[2].split("/")[0])
        token = client.headers["Authorization"]
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(f"POST {url.split(str(port), 1)[1]} HTTP/1.1\r\nHost: x\r\nAuthorization: {token}\r\n"
                     "Content-Type: application/json\r\nContent-Length: 500\r\n\r\n{\"a\": 1".encode())
        head = (await asyncio.wait_for(reader.read(65536), 30)).decode()
        writer.close()
        assert head.startswith("HTTP/1.1 400") and "RequestBodyIncomplete" in head
        await until(lambda: in_flight(zeroserve, "probe") == 0, what="the replica to be given back")


async def test_a_gibibyte_streams_through_with_the_gateway_memory_flat(settings, listen):
    async with Node(settings) as zeroserve, operator(zeroserve, timeout=300) as client:
        model_dir = train_iris_sklearn(zeroserve.settings.data_dir / "sources" / "iris")
        # The model server holds the body and what it parses into (several GB): more than the
        # starter plan's 3 GB, which the replica is held to here as on a cluster.
        running = await deploy_model(zeroserve, listen, "iris", model_dir, "iris-model", maxRequestBody="2Gi",
                                     resourcePlan="basic")
        url = f"{running['deploymentUrl']}/v1/models/iris:predict"
        warm = await client.post(url, json={"instances": IRIS_ROWS})
        assert warm.status_code == 200, warm.text
        mib = b"x" * (1 << 20)

        async def gibibyte():
            yield b'{"instances": [[6.8, 2.8, 4.8, 1.4]], "padding": "'
            for _ in range(1024):
                yield mib
            yield b'"}'

        before = resident_mib()
        peak = before
        done = asyncio.Event()

        async def watch() -> None:
            nonlocal peak
            while not done.is_set():
                peak = max(peak, resident_mib())
                await asyncio.sleep(0.02)

        watcher = asyncio.create_task(watch())
        try:
            answer = await client.post(url, content=gibibyte(), headers={"Content-Type": "application/json"})
        finally:
            done.set()
            await watcher
        # The whole body reached the model server (it parsed it and answered), and this process (the
        # gateway, and the client that streamed the body) grew by far less than the body.
        assert answer.status_code == 200, answer.text[:300]
        assert answer.json() == {"predictions": [1]}
        assert peak - before < 64, f"grew from {before:.0f} MiB to {peak:.0f} MiB"


def resident_mib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


async def test_a_raw_body_that_breaks_off_frees_its_replica(settings, listen):
    async with Node(settings) as zeroserve, operator(zeroserve) as client:
        url = await deploy_probe(zeroserve, listen)
        warm = await client.post(url, json={"echo": True})
        assert warm.status_code == 200
        refused = await metric(client, zeroserve, "zeroserve_inference_requests_total", code="400", deployment="probe")
        port = int(url.split(":")[2].split("/")[0])
        with socket.create_connection(("127.0.0.1", port)) as raw:
            raw.sendall(f"POST {url.split(str(port), 1)[1]} HTTP/1.1\r\nHost: x\r\n"
                        f"Authorization: {client.headers['Authorization']}\r\n"
                        "Transfer-Encoding: chunked\r\n\r\n100\r\n".encode() + b"{" * 100)
            await until(lambda: in_flight(zeroserve, "probe") == 1, what="the request to reach a replica")
        # The caller is gone mid-body: its replica is free again, and the gateway counted a 400.
        await until(lambda: in_flight(zeroserve, "probe") == 0, what="the replica to be given back")
        assert await metric(client, zeroserve, "zeroserve_inference_requests_total", code="400",
                            deployment="probe") == refused + 1
