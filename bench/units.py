"""The per-unit costs of docs/capacity.md's capacity model, measured on embedded zeroserve:

- KV writes, events and log records per deployment change (created to RUNNING at zero, stopped,
  deleted), from the JetStream streams' sequence numbers before and after ``--deployments`` changes;
- bytes per deployment in KV: what the buckets' streams grow by per deployment (with their history of
  5), and the size of one deployment's record;
- gateway CPU per warm proxied request: this process's CPU time (the gateway, runner and watcher are
  all in it; the load generator and the model server are other processes) over ``--requests``
  requests, less the same process's CPU over as long idle; and the model server's own, beside it;
- events per second per function runner: ``make bench``'s ``events`` section (bench/__main__.py), so
  that a faster runner shows here as soon as it shows there.

    python -m bench.units [--deployments 200] [--requests 2000] [--events 5000] [--out docs/capacity/units.json]

Prints a table and writes the figures with the date, the command, the commit and the machine's load.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform as host
import resource
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench.__main__ import bench_events, demo, load
from zeroserve.demo import ARTIFACT_ID
from zeroserve.events import DeploymentDeleted, DeploymentRequested, DeploymentStopped, EventData, Status, new_event
from zeroserve.node import Node, run
from zeroserve.settings import Settings

HERE = Path(__file__).parent
OUT = HERE.parent / "docs" / "capacity" / "units.json"
PREFIX = "unit-"
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def process_cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS  # utime, stime


async def stream_state(zeroserve: Node) -> dict[str, dict[str, int]]:
    """Each JetStream stream's last sequence, messages and bytes."""
    assert zeroserve.platform is not None
    js = zeroserve.platform.bus.js
    return {info.config.name: {"seq": info.state.last_seq, "messages": info.state.messages, "bytes": info.state.bytes}
            for info in await js.streams_info() if info.config.name}


def grown(before: dict[str, dict[str, int]], after: dict[str, dict[str, int]], key: str) -> dict[str, int]:
    return {name: after[name][key] - before.get(name, {}).get(key, 0) for name in after
            if after[name][key] != before.get(name, {}).get(key, 0)}


async def change(zeroserve: Node, count: int, event: type[EventData], status: Status | None) -> dict[str, Any]:
    """``count`` deployments changed by ``event`` at once, until each shows ``status`` (None: gone); what
    each stream grew by, per deployment."""
    platform = zeroserve.platform
    assert platform is not None
    ids = [f"{PREFIX}{i:05d}" for i in range(count)]
    before = await stream_state(zeroserve)
    started = time.perf_counter()
    if event is DeploymentRequested:
        events = [new_event(DeploymentRequested(id=i, executable_id="sklearn", input_artifacts={"model": ARTIFACT_ID}),
                            source="/bench/units") for i in ids]
    else:
        events = [new_event(event(id=i), source="/bench/units") for i in ids]
    for start in range(0, count, 500):
        await asyncio.gather(*(platform.bus.publish(e, "default") for e in events[start:start + 500]))
    while True:
        records = {d.id: d for d in await platform.store.deployments.list() if d.id.startswith(PREFIX)}
        done = len(records) == 0 if status is None else sum(1 for d in records.values() if d.status == status)
        if done is True or done == count:
            break
        if time.perf_counter() - started > 300:
            raise SystemExit(f"{event.__name__}: only {done} of {count} deployments got there in 300 s")
        await asyncio.sleep(0.2)
    await asyncio.sleep(1.0)  # the last log records and status events of the batch land
    after = await stream_state(zeroserve)
    writes = grown(before, after, "seq")
    return {
        "seconds": round(time.perf_counter() - started, 2),
        "kv_writes_per_deployment": round(sum(v for k, v in writes.items() if k.startswith("KV_")) / count, 2),
        "by_stream_per_deployment": {k: round(v / count, 2) for k, v in sorted(writes.items())},
        "kv_bytes_per_deployment": round(
            sum(v for k, v in grown(before, after, "bytes").items() if k.startswith("KV_")) / count),
    }


async def record_bytes(zeroserve: Node, id: str) -> int:
    """The stored size of one deployment's record (its latest value, with its key)."""
    assert zeroserve.platform is not None
    registry = zeroserve.platform.store.deployments
    key = registry.key("default", id)
    entry = await registry.kv.get(key)
    return len(entry.value or b"") + len(key)


async def gateway_cpu(zeroserve: Node, client: Any, url: str, requests: int) -> dict[str, Any]:
    """CPU of this process per warm request through the gateway, less its idle CPU over as long."""
    from zeroserve.backends.local import LocalBackend

    warm = await client.post(url, json={"instances": [[6.8, 2.8, 4.8, 1.4]]})
    assert warm.status_code == 200, warm.text
    assert zeroserve.platform is not None and isinstance(zeroserve.platform.backend, LocalBackend)
    [replica] = [r for s in zeroserve.platform.backend.services.values() for r in s.replicas]
    assert replica.process is not None
    token = client.headers["Authorization"].removeprefix("Bearer ")
    await load(url, token, 4, requests=200)  # warm-up: connections kept, code paths hot
    cpu, replica_cpu, started = cpu_s(), process_cpu_s(replica.process.pid), time.perf_counter()
    found = await load(url, token, 4, requests=requests)
    busy_s = time.perf_counter() - started
    cpu, replica_cpu = cpu_s() - cpu, process_cpu_s(replica.process.pid) - replica_cpu
    idle = cpu_s()
    await asyncio.sleep(busy_s)
    idle = cpu_s() - idle
    return {
        "requests": requests,
        "requests_per_s": round(found["count"] / found["elapsed_s"], 1),
        "gateway_cpu_ms_per_request": round((cpu - idle) / requests * 1000, 3),
        "idle_cpu_ms_per_s": round(idle / busy_s * 1000, 1),
        "model_server_cpu_ms_per_request": round(replica_cpu / requests * 1000, 3),
    }


async def scale_cycles(zeroserve: Node, client: Any, url: str, cycles: int = 5) -> dict[str, Any]:
    """What one scale to zero and one cold start cost the streams: the status changes a fleet at zero makes."""
    from zeroserve.backends.local import LocalBackend

    platform = zeroserve.platform
    assert platform is not None and isinstance(platform.backend, LocalBackend)

    async def replicas(count: int) -> None:
        async with asyncio.timeout(60):
            while True:
                record = await platform.store.deployments.get("default", "iris")
                if record is not None and record.running_replicas == count:
                    return
                await asyncio.sleep(0.05)

    before = await stream_state(zeroserve)
    for _ in range(cycles):
        await platform.backend.scale_to_zero("default", "iris")
        await replicas(0)
        answer = await client.post(url, json={"instances": [[6.8, 2.8, 4.8, 1.4]]})
        assert answer.status_code == 200 and answer.headers.get("X-Cold-Start") == "true", answer.headers
        await replicas(1)
    await asyncio.sleep(1.0)
    writes = grown(before, await stream_state(zeroserve), "seq")
    return {"kv_writes_per_cycle": round(sum(v for k, v in writes.items() if k.startswith("KV_")) / cycles, 2),
            "by_stream_per_cycle": {k: round(v / cycles, 2) for k, v in sorted(writes.items())}}


async def measure(settings: Settings, deployments: int, requests: int, events: int) -> dict[str, Any]:
    zeroserve, client, url, _ = await demo(settings, maxReplicas="1")
    try:
        platform = zeroserve.platform
        assert platform is not None
        print(f"gateway CPU over {requests} warm requests", file=sys.stderr)
        cpu = await gateway_cpu(zeroserve, client, url, requests)
        print("scale to zero and a cold start, 5 times", file=sys.stderr)
        cycle = await scale_cycles(zeroserve, client, url)
        print(f"{deployments} deployments: requested, stopped, deleted", file=sys.stderr)
        created = await change(zeroserve, deployments, DeploymentRequested, Status.RUNNING)
        record = await record_bytes(zeroserve, f"{PREFIX}00000")
        stopped = await change(zeroserve, deployments, DeploymentStopped, Status.STOPPED)
        deleted = await change(zeroserve, deployments, DeploymentDeleted, None)
    finally:
        await client.aclose()
        await zeroserve.stop()
    with tempfile.TemporaryDirectory(prefix="zeroserve-units-events-") as tmp:
        print(f"the runner: {events} no-op events (make bench's events section)", file=sys.stderr)
        rows = await bench_events(Settings(data_dir=Path(tmp), gateway_port=0), rounds=100, count=events)
    runner = {row["metric"]: row for row in rows}
    return {
        "created": created, "stopped": stopped, "deleted": deleted,
        "deployment_record_bytes": record,
        "gateway": cpu,
        "scale_to_zero_and_cold_start": cycle,
        "runner_events_per_s": runner["runner_events_per_s"]["value"],
        "bare_consumer_events_per_s": runner["runner_events_per_s"]["baseline"],
        "event_roundtrip_p50_ms": runner["event_roundtrip_ratio"].get("zeroserve_p50_ms"),
    }


def machine() -> dict[str, Any]:
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=HERE,
                            check=False).stdout.strip()
    return {"date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"), "commit": commit,
            "command": "python -m bench.units " + " ".join(sys.argv[1:]), "cpus": os.cpu_count(),
            "python": host.python_version(), "load_average_before": [round(x, 2) for x in os.getloadavg()]}


def show(figures: dict[str, Any]) -> None:
    created, gateway, cycle = figures["created"], figures["gateway"], figures["scale_to_zero_and_cold_start"]
    lines = [
        ("events/s per function runner (no-op events)", f"{figures['runner_events_per_s']:,.0f}",
         f"bare consumer {figures['bare_consumer_events_per_s']:,.0f}"),
        ("KV writes per deployment created (to RUNNING at 0)", f"{created['kv_writes_per_deployment']}",
         f"events stream {created['by_stream_per_deployment'].get('ZEROSERVE_EVENTS', 0)} msgs"),
        ("KV writes per deployment stopped", f"{figures['stopped']['kv_writes_per_deployment']}", ""),
        ("KV writes per deployment deleted", f"{figures['deleted']['kv_writes_per_deployment']}", ""),
        ("KV writes per scale to zero + cold start", f"{cycle['kv_writes_per_cycle']}",
         f"events stream {cycle['by_stream_per_cycle'].get('ZEROSERVE_EVENTS', 0)} msgs"),
        ("KV bytes per deployment (stream, history 5)", f"{created['kv_bytes_per_deployment']:,}",
         f"record {figures['deployment_record_bytes']:,} B"),
        ("gateway CPU per warm request", f"{gateway['gateway_cpu_ms_per_request']} ms",
         f"model server {gateway['model_server_cpu_ms_per_request']} ms, {gateway['requests_per_s']} req/s"),
    ]
    print(f"{figures['machine']['date']}, {figures['machine']['cpus']} CPUs, load "
          f"{figures['machine']['load_average_before']} before, {figures['machine']['load_average_after']} after")
    for name, value, beside in lines:
        print(f"{name:<52}{value:>14}   {beside}")


async def main(args: argparse.Namespace) -> int:
    about = machine()
    with tempfile.TemporaryDirectory(prefix="zeroserve-units-") as tmp:
        settings = Settings(data_dir=Path(tmp), gateway_port=0, idle_window_s=3600)
        figures = await measure(settings, args.deployments, args.requests, args.events)
    figures["machine"] = about | {"load_average_after": [round(x, 2) for x in os.getloadavg()]}
    show(figures)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(figures, indent=2) + "\n")
    print(f"written to {args.out}")
    return 0


if __name__ == "__main__":
    parser = argparse.ArgumentParser(prog="python -m bench.units", description=__doc__.splitlines()[0])
    parser.add_argument("--deployments", type=int, default=200)
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--events", type=int, default=5000)
    parser.add_argument("--out", type=Path, default=OUT)
    sys.exit(run(main(parser.parse_args())))
