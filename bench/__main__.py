"""`make bench`: the demo model's cold start through zeroserve next to spawning a bare model server.

Cold start = a request to a deployment at zero replicas, through the gateway, until its response.
Baseline = spawning a fresh kserve model-server process for the same model and calling it until
the first prediction comes back. Trials alternate between the two so that the noise of a shared
machine falls on both alike; medians and their ratio are printed, and written to
bench/results.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import socket
import statistics
import sys
import tempfile
import time
from pathlib import Path

import httpx
from rich.console import Console
from rich.table import Table

from zeroserve.backends.local import LocalBackend
from zeroserve.demo import DEPLOYMENT_ID, SAMPLE, demo_events, train_iris
from zeroserve.embedded import Embedded
from zeroserve.events import Status, new_event
from zeroserve.settings import Settings

RESULTS = Path(__file__).parent / "results.json"


async def cold_start(client: httpx.AsyncClient, zeroserve: Embedded, url: str) -> float:
    assert zeroserve.platform is not None and isinstance(zeroserve.platform.backend, LocalBackend)
    await zeroserve.platform.backend.scale_to_zero("default", DEPLOYMENT_ID)
    started = time.perf_counter()
    response = await client.post(url, json=SAMPLE)
    elapsed = time.perf_counter() - started
    assert response.status_code == 200 and response.headers["X-Cold-Start"] == "true", response.text
    return elapsed


async def bare_spawn(client: httpx.AsyncClient, model_dir: Path) -> float:
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(128)
    port = listener.getsockname()[1]
    started = time.perf_counter()
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "zeroserve.runtimes.server", "--model-format", "sklearn", "--model-name", "iris",
        "--model-dir", str(model_dir), "--listen-fd", str(listener.fileno()), pass_fds=(listener.fileno(),),
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
    )
    listener.close()
    try:
        while True:
            try:
                response = await client.post(f"http://127.0.0.1:{port}/v1/models/iris:predict", json=SAMPLE)
                if response.status_code == 200:
                    return time.perf_counter() - started
            except httpx.TransportError:
                pass
            if process.returncode is not None:
                raise RuntimeError("the bare model server exited")
            await asyncio.sleep(0.01)
    finally:
        process.terminate()
        await process.wait()


async def main(trials: int) -> int:
    console = Console(width=max(Console().width, 110))
    with tempfile.TemporaryDirectory(prefix="zeroserve-bench-") as tmp:
        settings = Settings(data_dir=Path(tmp), gateway_port=0, idle_window_s=3600)
        async with Embedded(settings) as zeroserve, httpx.AsyncClient(timeout=120) as client:
            assert zeroserve.platform is not None
            # The gateway asks for a token, as it does of every user; the bare server does not.
            operator, secret = await zeroserve.platform.auth.create_client(["*"], name="bench")
            token, _ = await zeroserve.platform.auth.token(operator.id, secret)
            client.headers["Authorization"] = f"Bearer {token}"
            model_dir = train_iris(settings.data_dir / "demo" / "iris")
            for data in demo_events(model_dir):
                await zeroserve.platform.bus.publish(new_event(data, source="/bench"), "default")
            for _ in range(600):
                deployment = await zeroserve.platform.store.deployments.get("default", DEPLOYMENT_ID)
                if deployment is not None and deployment.status == Status.RUNNING:
                    break
                await asyncio.sleep(0.1)
            else:
                console.print("[red]the demo deployment did not reach RUNNING[/red]")
                return 1
            url = f"{deployment.deployment_url}/v1/models/{DEPLOYMENT_ID}:predict"
            staged = zeroserve.platform.models.staged(model_dir.as_uri())
            assert staged is not None
            cold, bare = [], []
            with console.status("measuring ...") as status:
                for trial in range(trials):
                    status.update(f"trial {trial + 1}/{trials}")
                    cold.append(await cold_start(client, zeroserve, url))
                    bare.append(await bare_spawn(client, staged))

    cold_ms = statistics.median(cold) * 1000
    bare_ms = statistics.median(bare) * 1000
    table = Table(title=f"cold start, demo iris model, {trials} trials each (median)")
    for column in ("metric", "zeroserve", "baseline", "ratio"):
        table.add_column(column)
    table.add_row("cold start p50 (request -> response)", f"{cold_ms:.0f} ms",
                  f"{bare_ms:.0f} ms (spawn a model server -> first answer)", f"{cold_ms / bare_ms:.2f}")
    console.print(table)
    results = [{
        "metric": "cold_start_p50_ms", "value": round(cold_ms, 1), "unit": "ms", "baseline": round(bare_ms, 1),
        "ratio": round(cold_ms / bare_ms, 3), "goal": None, "met": None,
        "samples_ms": {"zeroserve": [round(c * 1000, 1) for c in cold], "baseline": [round(b * 1000, 1) for b in bare]},
    }]
    RESULTS.write_text(json.dumps(results, indent=2) + "\n")
    console.print(f"written to {RESULTS}")
    return 0


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=7)
    sys.exit(asyncio.run(main(parser.parse_args().trials)))
