"""`make bench`: zeroserve's speed goals, each measured next to its baseline in the same run.

This machine is shared and noisy, so every figure comes with a baseline taken in the same run,
trials alternate between the two, and the table shows medians (p50) and ratios:

- cold start: a request to a deployment at zero replicas, through the gateway, until its answer;
  baseline: spawning a fresh kserve model server for the same model, until its first answer. And 8
  deployments at zero called at once, each until its answer; baseline: one deployment's cold start
  (its p99) in the same run.
- warm proxy: requests through the gateway to a running replica, one at a time (p50 and p99), 4
  and 16 in flight, from a load generator in its own process; baseline: the same requests straight
  to the replica.
- stream: the first event of an event stream (the tests' probe predictor, a custom runtime),
  through the gateway; baseline: the same, straight from the replica.
- upload: 16 bodies of 100 MiB at once through the gateway, and what its process grows by
  meanwhile; baseline: the bodies' total size.
- event path: publish an event, a function answers it with an output event, the publisher sees
  it; baseline: the same round trip through JetStream with a bare consumer. And how many no-op
  events per second the runner handles, next to a bare pull consumer draining the same backlog.
- burst: a fleet of 10,000 deployments on one machine. 10,000 deployment.requested at once until all
  are RUNNING at zero replicas, and what the zeroserve process grows by meanwhile (no model server may
  start); then a page of 100 of them listed (p50); and a cold start's p99 with the fleet registered,
  next to the same with 10 registered, earlier in the same run.
- flood: warm inference through the gateway, one at a time, while 4 loops in another process post
  wrong secrets to /oauth/token; baseline: the same requests with no flood, rounds alternating.
- torch: a TorchScript deployment at zero, through the gateway, until its answer (its replica a
  fork of the torch fork server); baseline: spawning a fresh model server for it, until its first
  answer. And the torch fork server's resident memory.

- llm: a tiny causal LM and a sentence-embedding model from zero (first token, first embedding)
  next to a fresh process loading them with transformers, and tokens per second streamed through
  the gateway next to straight from the replica (bench/llm.py).

    python -m bench [--only cold,proxy,stream,upload,events,burst,flood,torch,llm] [--trials N]

Prints one table and writes bench/results.json (metric, value, unit, baseline, ratio, goal, met).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import resource
import shutil
import socket
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx
import nats
import numpy
from nats.js.api import ConsumerConfig, StreamConfig
from rich.console import Console
from rich.table import Table

from bench.relay import start_relay
from zeroserve.backends.local import LocalBackend
from zeroserve.core.bus import EVENTS_STREAM, LOGS_STREAM
from zeroserve.core.nats_auth import EmbeddedCredentials, render_authorization
from zeroserve.core.nats_server import NatsServer
from zeroserve.core.runner import Runner, load_functions
from zeroserve.core.store import Deployment
from zeroserve.demo import ARTIFACT_ID, DEPLOYMENT_ID, SAMPLE, publish_demo, train_iris
from zeroserve.events import ArtifactCreated, DeploymentRequested, Status, new_event
from zeroserve.node import Node, cancel, run
from zeroserve.platform import Platform
from zeroserve.settings import Settings

HERE = Path(__file__).parent
RESULTS = HERE / "results.json"
SECTIONS = ("cold", "proxy", "stream", "upload", "events", "burst", "flood", "torch", "llm")
TESTS_DATA = HERE.parent / "tests" / "data"  # the custom template and probe predictor the tests use
console = Console(width=max(Console().width, 120), stderr=True)


def result(metric: str, value: float, unit: str, baseline: float | None, goal: str,
           met: bool | None, ratio: float | None = None, **extra: Any) -> dict[str, Any]:
    if ratio is None and baseline:
        ratio = value / baseline
    return {"metric": metric, "value": round(value, 3), "unit": unit,
            "baseline": None if baseline is None else round(baseline, 3),
            "ratio": None if ratio is None else round(ratio, 3), "goal": goal, "met": met, **extra}


def p(values: list[float], q: float) -> float:
    return float(numpy.percentile(values, q))


# --- a demo deployment, in process -------------------------------------------------------------


async def started(settings: Settings) -> tuple[Node, httpx.AsyncClient]:
    """zeroserve embedded and started, and a client with an operator's token (every group)."""
    zeroserve = Node(settings)
    await zeroserve.start()
    platform = zeroserve.platform
    assert platform is not None
    operator, secret = await platform.auth.create_client(["*"], name="bench")
    token, _ = await platform.auth.token(operator.id, secret)
    return zeroserve, httpx.AsyncClient(timeout=300, headers={"Authorization": f"Bearer {token}"}, trust_env=False)


async def demo(settings: Settings, **parameters: str) -> tuple[Node, httpx.AsyncClient, str, Path]:
    """zeroserve embedded with the demo deployment RUNNING (with these template parameters besides
    the demo's); a client with a token; its URL."""
    zeroserve, client = await started(settings)
    platform = zeroserve.platform
    assert platform is not None
    model_dir = train_iris(settings.data_dir / "demo" / "iris")
    await publish_demo(platform, model_dir, "/bench", **parameters)
    deployment = await running(platform, DEPLOYMENT_ID)
    backend = platform.backend
    if isinstance(backend, LocalBackend) and backend.autoscaler.forks is not None:
        async with asyncio.timeout(60):
            await backend.autoscaler.forks.wait_ready()
    staged = platform.models.staged(model_dir.as_uri())
    assert staged is not None and deployment.deployment_url is not None
    return zeroserve, client, f"{deployment.deployment_url}/v1/models/{DEPLOYMENT_ID}:predict", staged


async def running(platform: Platform, id: str) -> Deployment:
    """The deployment, once it is RUNNING (two minutes at most)."""
    for _ in range(1200):
        deployment = await platform.store.deployments.get("default", id)
        if deployment is not None and deployment.status == Status.RUNNING:
            return deployment
        await asyncio.sleep(0.1)
    raise SystemExit(f"deployment {id} did not reach RUNNING")


# --- cold start --------------------------------------------------------------------------------


async def cold_start(client: httpx.AsyncClient, zeroserve: Node, url: str) -> float:
    assert zeroserve.platform is not None and isinstance(zeroserve.platform.backend, LocalBackend)
    await zeroserve.platform.backend.scale_to_zero("default", DEPLOYMENT_ID)
    started = time.perf_counter()
    response = await client.post(url, json=SAMPLE)
    elapsed = time.perf_counter() - started
    assert response.status_code == 200 and response.headers["X-Cold-Start"] == "true", response.text
    return elapsed * 1000


async def bare_spawn(client: httpx.AsyncClient, model_dir: Path, model_format: str = "sklearn") -> float:
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(128)
    port = listener.getsockname()[1]
    started = time.perf_counter()
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "zeroserve.serving.runtimes.server", "--model-format", model_format,
        "--model-name", "iris",
        "--model-dir", str(model_dir), "--listen-fd", str(listener.fileno()), pass_fds=(listener.fileno(),),
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
    )
    listener.close()
    try:
        while True:
            try:
                response = await client.post(f"http://127.0.0.1:{port}/v1/models/iris:predict", json=SAMPLE)
                if response.status_code == 200:
                    return (time.perf_counter() - started) * 1000
            except httpx.TransportError:
                pass
            if process.returncode is not None:
                raise RuntimeError("the bare model server exited")
            await asyncio.sleep(0.005)
    finally:
        process.terminate()
        await process.wait()


async def demo_copies(zeroserve: Node, count: int) -> list[str]:
    """``count`` more deployments of the demo model, RUNNING at zero replicas: their predict URLs."""
    platform = zeroserve.platform
    assert platform is not None
    ids = [f"cold-{number}" for number in range(count)]
    for id in ids:
        await platform.bus.publish(new_event(DeploymentRequested(
            id=id, executable_id="sklearn", input_artifacts={"model": ARTIFACT_ID},
            parameters={"minReplicas": "0", "resourcePlan": "starter"}), source="/bench"), "default")
    urls = []
    for id in ids:
        for _ in range(600):
            deployment = await platform.store.deployments.get("default", id)
            if deployment is not None and deployment.status == Status.RUNNING and deployment.deployment_url:
                urls.append(f"{deployment.deployment_url}/v1/models/{id}:predict")
                break
            await asyncio.sleep(0.1)
        else:
            raise SystemExit(f"deployment {id} did not reach RUNNING")
    return urls


async def concurrent_cold_starts(client: httpx.AsyncClient, zeroserve: Node, urls: list[str]) -> list[float]:
    """Every deployment of ``urls`` scaled to zero, then one prediction to each, all at once: the
    time each waited for its answer, from the common start."""
    assert zeroserve.platform is not None and isinstance(zeroserve.platform.backend, LocalBackend)
    backend = zeroserve.platform.backend
    await asyncio.gather(*(backend.scale_to_zero("default", url.rsplit("/", 1)[1].split(":")[0]) for url in urls))
    started = time.perf_counter()

    async def one(url: str) -> float:
        response = await client.post(url, json=SAMPLE)
        assert response.status_code == 200 and response.headers["X-Cold-Start"] == "true", response.text
        return (time.perf_counter() - started) * 1000

    return list(await asyncio.gather(*(one(url) for url in urls)))


async def bench_cold(settings: Settings, trials: int, concurrent: int = 8) -> list[dict[str, Any]]:
    zeroserve, client, url, staged = await demo(settings)
    assert zeroserve.platform is not None and isinstance(zeroserve.platform.backend, LocalBackend)
    forks = zeroserve.platform.backend.autoscaler.forks
    fork_server_mb = rss_mb(forks._process.pid) if forks is not None and forks._process is not None else None
    try:
        copies = await demo_copies(zeroserve, concurrent)
        cold, bare, together = [], [], []
        for trial in range(trials):
            console.log(f"cold start {trial + 1}/{trials}")
            cold.append(await cold_start(client, zeroserve, url))
            bare.append(await bare_spawn(client, staged))
            together += await concurrent_cold_starts(client, zeroserve, copies)
    finally:
        await client.aclose()
        await zeroserve.stop()
    samples = {"samples_ms": {"zeroserve": [round(c, 1) for c in cold], "baseline": [round(b, 1) for b in bare]},
               "fork_server_rss_mb": None if fork_server_mb is None else round(fork_server_mb, 1)}
    return [
        result("cold_start_p50_ms", p(cold, 50), "ms", p(bare, 50), "<= 60", p(cold, 50) <= 60, **samples),
        result("cold_start_p99_ms", p(cold, 99), "ms", p(bare, 99), "<= 150", p(cold, 99) <= 150),
        # Baseline: one deployment's cold start p99 in the same run (the row above).
        result(f"cold_start_{concurrent}_concurrent_p99_ms", p(together, 99), "ms", p(cold, 99), "<= 500",
               p(together, 99) <= 500, p50_ms=round(p(together, 50), 1),
               samples_ms=[round(t, 1) for t in together]),
    ]


# --- warm proxy --------------------------------------------------------------------------------


async def load(url: str, token: str | None, concurrency: int, *, requests: int | None = None,
               seconds: float | None = None, body: Any = SAMPLE, first_part: bool = False,
               upload_mib: int = 0) -> dict[str, Any]:
    args = [sys.executable, "-m", "bench.load", url, "--body", json.dumps(body), "--concurrency", str(concurrency)]
    args += ["--requests", str(requests)] if requests else ["--seconds", str(seconds)]
    args += ["--token", token] if token else []
    args += ["--first-part"] if first_part else []
    args += ["--upload-mib", str(upload_mib)] if upload_mib else []
    process = await asyncio.create_subprocess_exec(*args, stdout=asyncio.subprocess.PIPE, cwd=HERE.parent)
    out, _ = await process.communicate()
    if process.returncode != 0:
        raise RuntimeError(f"the load generator failed ({process.returncode})")
    found: dict[str, Any] = json.loads(out)
    if found["failures"]:
        raise RuntimeError(f"{found['failures']} requests failed")
    return found


def rate(found: dict[str, Any]) -> float:
    return float(found["count"] / found["elapsed_s"])


async def bench_proxy(settings: Settings, rounds: int = 5) -> list[dict[str, Any]]:
    # One replica, as direct calls have: with 16 in flight the autoscaler would otherwise add one.
    zeroserve, client, url, _ = await demo(settings, maxReplicas="1")
    try:
        assert zeroserve.platform is not None
        backend = zeroserve.platform.backend
        assert isinstance(backend, LocalBackend)
        warm = await client.post(url, json=SAMPLE)  # a replica up, and kept (idle window: an hour)
        assert warm.status_code == 200, warm.text
        [replica] = backend.services["default", DEPLOYMENT_ID].replicas
        path = f"/v1/models/{DEPLOYMENT_ID}:predict"
        relay, relay_port = await start_relay("127.0.0.1", replica.port)
        token = client.headers["Authorization"].removeprefix("Bearer ")
        ways = {"gateway": (url, token), "relay": (f"http://127.0.0.1:{relay_port}{path}", None),
                "direct": (f"{replica.url}{path}", None)}
        latency: dict[str, list[float]] = {way: [] for way in ways}
        busy: dict[tuple[str, int], list[float]] = {(way, n): [] for way in ways for n in (4, 16)}
        for number in range(rounds):
            console.log(f"warm proxy round {number + 1}/{rounds}")
            for way, (target, bearer) in ways.items():
                latency[way] += (await load(target, bearer, 1, requests=200))["latencies_ms"]
            for concurrency in (4, 16):
                for way, (target, bearer) in ways.items():
                    busy[way, concurrency].append(rate(await load(target, bearer, concurrency, seconds=2)))
        relay.close()
    finally:
        await client.aclose()
        await zeroserve.stop()
    return proxy_rows(latency, busy)


def proxy_rows(latency: dict[str, list[float]], busy: dict[tuple[str, int], list[float]]) -> list[dict[str, Any]]:
    """The proxy's rows: the gateway against direct calls, and, as ``floor_*``, what a bare TCP relay
    on the gateway's loop (bench/relay.py) adds or keeps: one more hop's cost on this machine."""
    rows = []
    for q, metric, goal in ((50, "proxy_added_p50_ms", 0.3), (99, "proxy_added_p99_ms", 1.0)):
        gateway, relay, direct = (p(latency[way], q) for way in ("gateway", "relay", "direct"))
        rows.append(result(metric, gateway - direct, "ms", direct, f"<= {goal:g}", gateway - direct <= goal,
                           ratio=gateway / direct, **{f"gateway_p{q}_ms": round(gateway, 3),
                                                      f"floor_added_p{q}_ms": round(relay - direct, 3)}))
    for concurrency, metric in ((4, "proxy_throughput_ratio"), (16, "proxy_throughput_ratio_16")):
        gateway, relay, direct = (float(numpy.median(busy[way, concurrency])) for way in ("gateway", "relay", "direct"))
        rows.append(result(metric, gateway / direct, "x direct", direct, ">= 0.8", gateway / direct >= 0.8,
                           ratio=gateway / direct, gateway_rps=round(gateway, 1),
                           floor_ratio=round(relay / direct, 3)))
    return rows


# --- an event stream, and large uploads --------------------------------------------------------


async def probe(settings: Settings) -> tuple[Node, httpx.AsyncClient, str, str]:
    """zeroserve embedded with the probe predictor of the tests (a custom runtime that streams on
    request) RUNNING and warm: a client with a token, its predict URL through the gateway and direct."""
    templates = settings.data_dir / "templates"
    shutil.copytree(settings.templates_dir, templates)
    shutil.copy(TESTS_DATA / "templates" / "custom.yaml", templates)
    source = settings.data_dir / "sources" / "probe"
    shutil.copytree(TESTS_DATA / "predictors" / "probe", source)
    settings = settings.model_copy(update={"templates_dir": templates})
    zeroserve, client, _, _ = await demo(settings)
    platform = zeroserve.platform
    assert platform is not None and isinstance(platform.backend, LocalBackend)
    await platform.bus.publish(new_event(ArtifactCreated(id="probe-code", name="probe", url=source.as_uri()),
                                         source="/bench"), "default")
    await platform.bus.publish(new_event(DeploymentRequested(
        id="probe", executable_id="custom", input_artifacts={"model": "probe-code"}), source="/bench"), "default")
    url = f"{(await running(platform, 'probe')).deployment_url}/v1/models/probe:predict"
    warm = await client.post(url, json={"echo": True})
    assert warm.status_code == 200, warm.text
    [replica] = platform.backend.services["default", "probe"].replicas
    return zeroserve, client, url, f"{replica.url}/v1/models/probe:predict"


async def bench_stream(settings: Settings, rounds: int = 5) -> list[dict[str, Any]]:
    zeroserve, client, url, direct = await probe(settings)
    token = client.headers["Authorization"].removeprefix("Bearer ")
    events = {"events": 3, "every": 0.01}
    first: dict[str, list[float]] = {"gateway": [], "direct": []}
    try:
        for number in range(rounds):
            console.log(f"event stream round {number + 1}/{rounds}")
            for way, target, bearer in (("gateway", url, token), ("direct", direct, None)):
                first[way] += (await load(target, bearer, 1, requests=100, body=events, first_part=True))[
                    "latencies_ms"]
    finally:
        await client.aclose()
        await zeroserve.stop()
    added = p(first["gateway"], 50) - p(first["direct"], 50)
    return [result("stream_first_event_added_ms", added, "ms", p(first["direct"], 50), "<= 1.0", added <= 1.0,
                   ratio=p(first["gateway"], 50) / p(first["direct"], 50),
                   gateway_p50_ms=round(p(first["gateway"], 50), 3))]


async def bench_upload(settings: Settings, uploads: int = 16, mib: int = 100) -> list[dict[str, Any]]:
    """16 bodies of 100 MiB at once through the gateway (from another process): how much the gateway's
    process grows meanwhile; baseline: the bodies' total, what a proxy that buffers them would hold."""
    zeroserve, client, url, direct = await probe(settings)
    token = client.headers["Authorization"].removeprefix("Bearer ")
    before = peak = rss_mb()
    try:
        sent = asyncio.create_task(load(url, token, uploads, requests=uploads, body={"upload": True},
                                        upload_mib=mib))
        console.log(f"{uploads} uploads of {mib} MiB at once")
        while not sent.done():
            peak = max(peak, rss_mb())
            await asyncio.sleep(0.02)
        found = sent.result()
    finally:
        await client.aclose()
        await zeroserve.stop()
    grown = peak - before
    return [result(f"upload_{uploads}x{mib}mb_rss_mb", grown, "MB", uploads * mib * 1.048576, "<= 64", grown <= 64,
                   rss_before_mb=round(before, 1), upload_p50_s=round(p(found["latencies_ms"], 50) / 1000, 2))]


# --- a flood of wrong credentials --------------------------------------------------------------


async def flooding(gateway: str, client_id: str) -> asyncio.subprocess.Process:
    """``bench.flood`` started (4 loops of wrong secrets at /oauth/token), once it floods."""
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bench.flood", gateway, client_id, "--loops", "4",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, cwd=HERE.parent)
    assert process.stderr is not None
    await process.stderr.readline()  # "flooding"
    await asyncio.sleep(0.5)  # at full rate, past its first answers
    return process


async def bench_flood(settings: Settings, rounds: int = 5, requests: int = 100) -> list[dict[str, Any]]:
    """Warm inference p50 with 4 loops posting wrong secrets meanwhile, over the quiet p50; the
    quiet and the flooded rounds alternate."""
    zeroserve, client, url, _ = await demo(settings)
    try:
        assert zeroserve.platform is not None
        warm = await client.post(url, json=SAMPLE)  # a replica up, and kept (idle window: an hour)
        assert warm.status_code == 200, warm.text
        token = client.headers["Authorization"].removeprefix("Bearer ")
        victim, _ = await zeroserve.platform.auth.create_client(["default"], name="flooded")
        quiet_ms: list[float] = []
        flooded_ms: list[float] = []
        answers: dict[str, int] = {}
        for number in range(rounds):
            console.log(f"login flood round {number + 1}/{rounds}")
            quiet_ms += (await load(url, token, 1, requests=requests))["latencies_ms"]
            flood = await flooding(zeroserve.url, victim.id)
            try:
                flooded_ms += (await load(url, token, 1, requests=requests))["latencies_ms"]
            finally:
                flood.terminate()
                out, _ = await flood.communicate()
            for status, count in json.loads(out)["statuses"].items():
                answers[status] = answers.get(status, 0) + count
    finally:
        await client.aclose()
        await zeroserve.stop()
    ratio = p(flooded_ms, 50) / p(quiet_ms, 50)
    return [
        result("login_flood_p50_ratio", ratio, "x quiet", p(quiet_ms, 50), "<= 1.5", ratio <= 1.5, ratio=ratio,
               flooded_p50_ms=round(p(flooded_ms, 50), 3), flooded_p99_ms=round(p(flooded_ms, 99), 3),
               quiet_p99_ms=round(p(quiet_ms, 99), 3), flood_answers=answers),
    ]


# --- the event path ----------------------------------------------------------------------------


async def timed(rounds: int, once: Callable[[int], Awaitable[None]]) -> list[float]:
    samples = []
    for number in range(rounds):
        started = time.perf_counter()
        await once(number)
        samples.append((time.perf_counter() - started) * 1000)
    return samples


async def raw_roundtrip(nc: Any, rounds: int) -> list[float]:
    """Publish to a stream (acked), a bare pull consumer publishes a reply to a stream (acked) and
    acks; the publisher sees the reply: the JetStream part of any function's round trip."""
    js = nc.jetstream()
    await js.add_stream(StreamConfig(name="RAW_IN", subjects=["raw.in"]))
    await js.add_stream(StreamConfig(name="RAW_OUT", subjects=["raw.out"]))
    pull = await js.pull_subscribe("raw.in", durable="raw", config=ConsumerConfig(ack_wait=30))
    replies: asyncio.Queue[Any] = asyncio.Queue()
    await nc.subscribe("raw.out", cb=replies.put)

    async def consume() -> None:
        while True:
            try:
                for msg in await pull.fetch(1, timeout=1):
                    await js.publish("raw.out", msg.data)
                    await msg.ack()
            except nats.errors.TimeoutError:
                pass

    consumer = asyncio.create_task(consume())

    async def once(number: int) -> None:
        await js.publish("raw.in", json.dumps({"n": number}).encode())
        await replies.get()

    try:
        await timed(20, once)  # warm-up
        return await timed(rounds, once)
    finally:
        await cancel([consumer])  # and again if nats-py's fetch swallows it (Python 3.11's wait_for)


async def function_roundtrip(platform: Platform, nc: Any, rounds: int) -> list[float]:
    replies: asyncio.Queue[Any] = asyncio.Queue()
    await nc.subscribe("zeroserve.bench.artifact.status", cb=replies.put)

    async def once(number: int) -> None:
        data = ArtifactCreated(id=f"a{number}", name="bench", url="s3://bench/model")
        await platform.bus.publish(new_event(data, source="/bench"), "bench")
        await replies.get()

    await timed(20, once)  # warm-up (ids a0..a19 again below: new CloudEvent ids, so not duplicates)
    return await timed(rounds, once)


async def drain_rate(platform: Platform, count: int) -> float:
    """No-op events per second: ``count`` published first, then the runner started and timed
    until its consumer has acknowledged every one."""
    events = [new_event(ArtifactCreated(id=f"n{i}", name="noop", url="s3://bench/model"), source="/bench")
              for i in range(count)]
    for start in range(0, count, 500):
        await asyncio.gather(*(platform.bus.publish(e, "noop") for e in events[start:start + 500]))
    runner = Runner(platform, load_functions(HERE / "functions" / "noop"))
    started = time.perf_counter()
    await runner.start()
    try:
        while True:
            info = await platform.bus.js.consumer_info("ZEROSERVE_EVENTS", "noop")
            if info.num_pending == 0 and info.num_ack_pending == 0:
                return count / (time.perf_counter() - started)
            await asyncio.sleep(0.02)
    finally:
        await runner.stop()


async def raw_drain_rate(nc: Any, count: int) -> float:
    js = nc.jetstream()
    await js.add_stream(StreamConfig(name="RAW_DRAIN", subjects=["raw.drain"]))
    for start in range(0, count, 500):
        await asyncio.gather(*(js.publish("raw.drain", b'{"n": 1}') for _ in range(min(500, count - start))))
    pull = await js.pull_subscribe("raw.drain", durable="drain")
    done = 0
    started = time.perf_counter()
    while done < count:
        for msg in await pull.fetch(64, timeout=1):
            await msg.ack()
            done += 1
    return count / (time.perf_counter() - started)


async def bench_events(settings: Settings, rounds: int = 300, count: int = 10_000) -> list[dict[str, Any]]:
    # As `zeroserve up` runs it: only its user may log in (the raw baseline and zeroserve alike).
    credentials = EmbeddedCredentials.load_or_create(settings.nats_dir)
    server = NatsServer(settings.nats_dir, config=render_authorization([credentials.user_of()]))
    url = credentials.in_url(await server.start())
    platform = await Platform.open(settings, url)
    nc = await nats.connect(url)
    try:
        console.log("event round trips (raw JetStream, then through a function)")
        raw = await raw_roundtrip(nc, rounds)
        runner = Runner(platform, load_functions(HERE / "functions" / "echo"))
        await runner.start()
        try:
            through = await function_roundtrip(platform, nc, rounds)
        finally:
            await runner.stop()
        console.log(f"draining {count} no-op events (bare consumer, then the runner)")
        raw_rate = await raw_drain_rate(nc, count)
        rate = await drain_rate(platform, count)
    finally:
        await nc.close()
        await platform.close()
        await server.stop()
    ratio = p(through, 50) / p(raw, 50)
    return [
        result("event_roundtrip_ratio", ratio, "x raw", p(raw, 50), "<= 1.5", ratio <= 1.5, ratio=ratio,
               zeroserve_p50_ms=round(p(through, 50), 3), raw_p50_ms=round(p(raw, 50), 3)),
        result("runner_events_per_s", rate, "events/s", raw_rate, ">= 10000", rate >= 10_000),
    ]


# --- burst -------------------------------------------------------------------------------------


def rss_mb(pid: int | str = "self") -> float:
    """Resident memory of a process (this one by default), in MB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def cpu_s(pid: int | str = "self") -> float:
    """CPU seconds (user and system) a process has used: on a shared machine, what a burst cost
    whatever else ran meanwhile."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def model_servers() -> int:
    """Model-server processes under this one (spawned, or forked by the fork server)."""
    me, found, parents = os.getpid(), 0, {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
                cmdline = (entry / "cmdline").read_bytes()
            except OSError:
                continue
            parents[int(entry.name)] = (int(stat.rsplit(")", 1)[1].split()[1]), cmdline)
    fork_servers = {pid for pid, (parent, cmd) in parents.items() if parent == me and b"forkserver" in cmd}
    for parent, cmd in parents.values():
        if (parent == me and b"zeroserve.serving.runtimes.server" in cmd) or parent in fork_servers:
            found += 1
    return found


async def running_watch(platform: Platform, prefix: str, count: int) -> tuple[set[str], asyncio.Event]:
    """The ids (starting with ``prefix``) that the group's status events have announced RUNNING, and an
    event set once there are ``count``: read from the events, not by listing the store, which would
    cost the process under test O(n) per look."""
    announced: set[str] = set()
    everyone = asyncio.Event()

    async def status(msg: Any) -> None:
        id = (msg.headers or {}).get("ce-subject", "")
        if id.startswith(prefix) and b'"status":"RUNNING"' in msg.data:
            announced.add(id)
            if len(announced) >= count:
                everyone.set()

    await platform.bus.nc.subscribe("zeroserve.default.deployment.status", cb=status)
    return announced, everyone


async def settled(platform: Platform, limit: float = 60) -> float:
    """Seconds until every durable consumer of the events and logs streams has handled all it was
    given (the functions, webhooks out, the watchers): what a burst leaves behind, done."""
    started = time.perf_counter()
    while time.perf_counter() - started < limit:
        busy = [info for stream in (EVENTS_STREAM, LOGS_STREAM)
                for info in await platform.bus.js.consumers_info(stream)
                if info.config.durable_name and (info.num_pending or info.num_ack_pending)]
        if not busy:
            break
        await asyncio.sleep(0.2)
    return time.perf_counter() - started


async def listing_ms(client: httpx.AsyncClient, gateway: str, rounds: int) -> tuple[list[float], int]:
    """``GET /v2/lm/deployments?$top=100``, ``rounds`` times: each one's time, and the count it said."""
    times, count = [], 0
    for _ in range(rounds):
        asked = time.perf_counter()
        response = await client.get(f"{gateway}/v2/lm/deployments", params={"$top": "100"},
                                    headers={"AI-Resource-Group": "default"})
        times.append((time.perf_counter() - asked) * 1000)
        assert response.status_code == 200 and len(response.json()["resources"]) == 100, response.text[:300]
        count = response.json()["count"]
    return times, count


async def bench_burst(settings: Settings, trials: int, count: int = 10_000, few: int = 10) -> list[dict[str, Any]]:
    """A fleet of ``count`` deployments on one machine: how fast a burst of requests reaches RUNNING (at
    zero replicas), what the control plane grows by, listing a page of them, and a cold start's p99
    with the fleet registered next to the same with ``few`` registered, in one run."""
    zeroserve, client, url, _ = await demo(settings)  # one deployment RUNNING: every part warm
    platform = zeroserve.platform
    assert platform is not None and isinstance(platform.backend, LocalBackend)
    try:
        await demo_copies(zeroserve, few - 1)
        console.log(f"cold starts with {few} deployments registered")
        cold_few = [await cold_start(client, zeroserve, url) for _ in range(trials)]
        await platform.backend.scale_to_zero("default", DEPLOYMENT_ID)
        requests = [new_event(DeploymentRequested(
            id=f"burst-{i:05d}", executable_id="sklearn", input_artifacts={"model": ARTIFACT_ID}), source="/bench")
            for i in range(count)]
        announced, everyone = await running_watch(platform, "burst-", count)
        before = rss_mb()
        nats = zeroserve.nats._process.pid if zeroserve.nats and zeroserve.nats._process else None
        cpu_before = (cpu_s(), cpu_s(nats) if nats else 0.0)
        console.log(f"{count} deployment.requested at once")
        started = time.perf_counter()
        await asyncio.gather(*(platform.bus.publish(event, "default") for event in requests))
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(everyone.wait(), 150)
        elapsed = time.perf_counter() - started
        grown, servers, running = rss_mb() - before, model_servers(), len(announced)
        cpu = {"zeroserve": round(cpu_s() - cpu_before[0], 1),
               "nats_server": round(cpu_s(nats) - cpu_before[1], 1) if nats else None,
               "load_average": round(os.getloadavg()[0], 1)}
        if running < count:
            console.log(f"[red]only {running} of {count} RUNNING after {elapsed:.0f} s[/red]")
        gateway = zeroserve.url
        listed, listed_count = await listing_ms(client, gateway, 50)
        # The fleet registered, not being registered: cold starts once the burst's last events are handled.
        quiet_after = await settled(platform)
        console.log(f"cold starts with {few + count} deployments registered")
        cold_many = [await cold_start(client, zeroserve, url) for _ in range(trials)]
    finally:
        await client.aclose()
        await zeroserve.stop()
    drift = p(cold_many, 99) / p(cold_few, 99)
    return [
        result(f"burst_{count}_running_s", elapsed, "s", None, "<= 30", running == count and elapsed <= 30,
               running=running, cpu_s=cpu),
        result(f"burst_{count}_rss_mb", grown, "MB", None, "<= 200 MB, no model server",
               grown <= 200 and servers == 0, rss_before_mb=round(before, 1), model_servers=servers),
        result(f"list_{count}_p50_ms", p(listed, 50), "ms", None, "<= 50", p(listed, 50) <= 50,
               p99_ms=round(p(listed, 99), 1), count=listed_count),
        # Baseline: the same cold start with only ``few`` deployments registered, earlier in this run.
        result(f"cold_start_p99_drift_{count}", p(cold_many, 99), "ms", p(cold_few, 99), "ratio <= 1.1",
               drift <= 1.1, ratio=drift,
               p50_ms={"few": round(p(cold_few, 50), 1), "fleet": round(p(cold_many, 50), 1)},
               settled_s=round(quiet_after, 1),
               samples_ms={"few": [round(c, 1) for c in cold_few], "fleet": [round(c, 1) for c in cold_many]}),
    ]


# --- torch --------------------------------------------------------------------------------------


async def bench_torch(settings: Settings, trials: int) -> list[dict[str, Any]]:
    import torch

    zeroserve, client = await started(settings)
    platform = zeroserve.platform
    assert platform is not None and isinstance(platform.backend, LocalBackend)
    model_dir = settings.data_dir / "torch" / "iris"
    model_dir.mkdir(parents=True)
    net = torch.nn.Sequential(torch.nn.Linear(4, 16), torch.nn.ReLU(), torch.nn.Linear(16, 3), torch.nn.Softmax(dim=1))
    torch.jit.script(net.eval()).save(str(model_dir / "model.pt"))
    try:
        await platform.bus.publish(new_event(ArtifactCreated(id="iris-torch", name="iris-torch", kind="model",
                                                             url=model_dir.as_uri()), source="/bench"), "default")
        async with asyncio.timeout(60):
            while await platform.store.artifacts.get("default", "iris-torch") is None:  # noqa: ASYNC110 (a KV read)
                await asyncio.sleep(0.02)
        await platform.bus.publish(new_event(DeploymentRequested(
            id="torch", executable_id="pytorch", input_artifacts={"model": "iris-torch"}), source="/bench"), "default")
        deployment = await running(platform, "torch")
        forks = platform.backend.autoscaler.torch_forks
        assert forks is not None and forks._process is not None
        async with asyncio.timeout(60):
            await forks.wait_ready()
        url = f"{deployment.deployment_url}/v1/models/torch:predict"
        staged = platform.models.staged(model_dir.as_uri())
        assert staged is not None
        cold, bare = [], []
        for trial in range(trials):
            console.log(f"torch cold start {trial + 1}/{trials}")
            await platform.backend.scale_to_zero("default", "torch")
            asked = time.perf_counter()
            response = await client.post(url, json=SAMPLE)
            assert response.status_code == 200 and response.headers["X-Cold-Start"] == "true", response.text
            cold.append((time.perf_counter() - asked) * 1000)
            bare.append(await bare_spawn(client, staged, "pytorch"))
        fork_server_mb = rss_mb(forks._process.pid)
    finally:
        await client.aclose()
        await zeroserve.stop()
    return [result("torch_cold_start_p50_ms", p(cold, 50), "ms", p(bare, 50), "<= 0.3 of spawned",
                   p(cold, 50) <= 0.3 * p(bare, 50), torch_fork_server_rss_mb=round(fork_server_mb, 1),
                   samples_ms={"zeroserve": [round(c, 1) for c in cold], "baseline": [round(b, 1) for b in bare]})]


# --- the table ---------------------------------------------------------------------------------


def show(results: list[dict[str, Any]]) -> None:
    table = Table(title="zeroserve benchmarks (2 cores, iris demo model; medians unless p99)")
    for column in ("metric", "zeroserve", "baseline", "ratio", "goal", "met"):
        table.add_column(column)
    for row in results:
        met = {True: "[green]yes[/green]", False: "[red]no[/red]", None: "-"}[row["met"]]
        baseline = "-" if row["baseline"] is None else f"{row['baseline']:g}"
        ratio = "-" if row["ratio"] is None else f"{row['ratio']:.2f}"
        table.add_row(row["metric"], f"{row['value']:g} {row['unit']}", baseline, ratio, row["goal"], met)
    Console(width=120).print(table)


async def main(sections: list[str], trials: int) -> int:
    results: list[dict[str, Any]] = []
    for section in sections:
        with tempfile.TemporaryDirectory(prefix=f"zeroserve-bench-{section}-") as tmp:
            settings = Settings(data_dir=Path(tmp), gateway_port=0, idle_window_s=3600)
            if section == "cold":
                results += await bench_cold(settings, trials)
            elif section == "proxy":
                results += await bench_proxy(settings)
            elif section == "stream":
                results += await bench_stream(settings)
            elif section == "upload":
                results += await bench_upload(settings)
            elif section == "events":
                results += await bench_events(settings)
            elif section == "burst":
                results += await bench_burst(settings, min(trials, 20))
            elif section == "flood":
                results += await bench_flood(settings)
            elif section == "torch":
                results += await bench_torch(settings, min(trials, 10))
            elif section == "llm":
                from bench.llm import bench_llm  # imports the tests' model makers

                results += await bench_llm(settings)
    show(results)
    RESULTS.write_text(json.dumps(results, indent=2) + "\n")
    console.print(f"written to {RESULTS}")
    return 0


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", default=",".join(SECTIONS), help="sections to run, comma-separated")
    parser.add_argument("--trials", type=int, default=20, help="cold starts of each kind")
    args = parser.parse_args()
    chosen = [s for s in args.only.split(",") if s]
    unknown = set(chosen) - set(SECTIONS)
    if unknown:
        parser.error(f"unknown section {', '.join(sorted(unknown))}; sections: {', '.join(SECTIONS)}")
    sys.exit(run(main(chosen, args.trials)))  # on uvloop, as `zeroserve up` runs
