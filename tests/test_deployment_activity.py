"""What the console charts of a deployment: its cold starts by phase and its traffic, as this gateway saw
them (``GET /v2/lm/deployments/{id}/coldStarts`` and ``/traffic``), after real requests to a real model."""

from __future__ import annotations

import time

import httpx
import pytest
import test_end_to_end as e2e
from conftest import operator, token_for
from models import IRIS_ROWS
from test_metrics import sample

from zeroserve.client import AsyncClient
from zeroserve.core.traffic import STEP_S, Traffic

PHASES = ["queued", "replica-start", "model-load", "ready", "forward"]


@pytest.mark.slow
async def test_a_cold_start_and_the_requests_that_followed_are_charted_for_the_deployment(zeroserve, listen):
    running = await e2e.deploy_iris(zeroserve, listen, "charted")
    path = "/v2/lm/deployments/charted"
    async with operator(zeroserve) as client:
        none_yet = (await client.get(f"{zeroserve.url}{path}/coldStarts")).json()
        assert none_yet == {"count": 0, "resources": []}
        url = f"{running['deploymentUrl']}/v1/models/charted:predict"
        answers = [await client.post(url, json={"instances": IRIS_ROWS}) for _ in range(3)]
        broken = await client.post(url, json={"instances": "not rows"})
        assert [a.status_code for a in answers] == [200, 200, 200] and broken.status_code >= 400
        assert answers[0].headers["X-Cold-Start"] == "true"

        starts = (await client.get(f"{zeroserve.url}{path}/coldStarts")).json()
        traffic = (await client.get(f"{zeroserve.url}{path}/traffic", params={"minutes": 1})).json()
        scraped = (await client.get(f"{zeroserve.url}/metrics")).text

    assert starts["count"] == 1
    (start,) = starts["resources"]
    assert list(start["phases"]) == PHASES and start["replica"] == "replica-1"
    assert start["totalMs"] >= sum(start["phases"].values()) - 1 and start["phases"]["model-load"] > 0
    assert start["startedAt"].endswith("Z")

    assert traffic["stepSeconds"] == STEP_S and len(traffic["points"]) in (6, 7)  # a minute of steps, up to now
    assert sum(p["requests"] for p in traffic["points"]) == 4
    assert sum(p["errors"] for p in traffic["points"]) == 1
    busy = [p for p in traffic["points"] if p["requests"]]
    assert all(p["p95Ms"] >= p["p50Ms"] > 0 for p in busy)
    assert all(p["p50Ms"] is None for p in traffic["points"] if not p["requests"])

    ids = {"group": "default", "deployment": "charted"}
    for phase in PHASES:
        assert sample(scraped, "zeroserve_cold_start_phase_seconds_count", phase=phase, **ids) == 1
    assert sample(scraped, "zeroserve_events_published_total", type="io.zeroserve.deployment.status") >= 3

    async with AsyncClient.local(zeroserve.settings) as typed:
        (seen,) = await typed.deployment_cold_starts("charted")
        assert seen.phases == start["phases"] and seen.total_ms == start["totalMs"]
        charted = await typed.deployment_traffic("charted", minutes=1)
        assert sum(p.requests for p in charted.points) == 4 and charted.step_seconds == STEP_S


async def test_cold_starts_and_traffic_of_another_groups_deployment_are_not_found(zeroserve, listen):
    from zeroserve.events import DeploymentRequested, new_event

    statuses = await listen(zeroserve, "zeroserve.default.deployment.status")
    request = DeploymentRequested(id="elsewhere", executable_id="sklearn", input_artifacts={"model": "nowhere"})
    await zeroserve.platform.bus.publish(new_event(request, source="/tests"), "default")
    await statuses.wait_for(lambda e: e["id"] == "elsewhere" and e["status"] == "DEAD")
    token = await token_for(zeroserve, ["team-a"])
    async with httpx.AsyncClient(base_url=zeroserve.url, headers={"Authorization": f"Bearer {token}",
                                                                   "AI-Resource-Group": "team-a"}) as team_a:
        for route in ("coldStarts", "traffic"):
            other = await team_a.get(f"/v2/lm/deployments/elsewhere/{route}")
            assert other.status_code == 404 and other.json()["error"]["code"] == "DeploymentNotFound"
    async with operator(zeroserve) as client:
        own = f"{zeroserve.url}/v2/lm/deployments/elsewhere"
        assert (await client.get(f"{own}/coldStarts")).json() == {"count": 0, "resources": []}
        quiet = (await client.get(f"{own}/traffic")).json()
        assert len(quiet["points"]) in (90, 91) and not any(p["requests"] for p in quiet["points"])
        for minutes in (0, 61, "x"):
            refused = await client.get(f"{own}/traffic", params={"minutes": minutes})
            assert refused.status_code == 400 and "minutes" in refused.json()["error"]["message"]


def test_traffic_counts_each_step_and_estimates_its_percentiles():
    traffic = Traffic(wall_clock=time.perf_counter)  # the test's times are the clock's
    step = 1_800_000_000 // STEP_S * STEP_S
    for latency in [0.010] * 90 + [0.200] * 10:
        traffic.record("g", "d", 200, latency, step + 0.5)
    traffic.record("g", "d", 503, 0.002, step + 1.0)
    traffic.record("g", "d", 200, 0.004, step - STEP_S + 5)
    points = traffic.points("g", "d", 1, now=step + 5)
    assert len(points) == 60 // STEP_S and points[-1].time.timestamp() == step
    last, before = points[-1], points[-2]
    assert (last.requests, last.errors, before.requests, before.errors) == (101, 1, 1, 0)
    assert 8 <= last.p50_ms <= 12 and 150 <= last.p95_ms <= 230  # within the bins' resolution
    assert all(p.requests == 0 and p.p50_ms is None for p in points[:-2])
    traffic.forget("g", "d")
    assert not any(p.requests for p in traffic.points("g", "d", 1, now=step + 5))
