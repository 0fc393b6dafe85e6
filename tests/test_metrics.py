"""What an operator's Prometheus sees at /metrics after real traffic."""

from __future__ import annotations

import asyncio
import re

import pytest
import test_end_to_end as e2e
from conftest import operator
from models import IRIS_ROWS


def sample(text: str, name: str, **labels: str) -> float:
    """The value of one sample in Prometheus' text format (0 when absent)."""
    for line in text.splitlines():
        match = re.match(rf"^{name}\{{(.*)\}} (\S+)$", line)
        if match and all(f'{k}="{v}"' in match.group(1) for k, v in labels.items()):
            return float(match.group(2))
    return 0.0


@pytest.mark.slow
async def test_metrics_count_requests_cold_starts_replicas_and_handled_events(zeroserve, listen):
    running = await e2e.deploy_iris(zeroserve, listen, "metered")
    statuses = await listen(zeroserve, "zeroserve.default.deployment.status")
    async with operator(zeroserve) as client:
        before = (await client.get(f"{zeroserve.url}/metrics")).text
        url = f"{running['deploymentUrl']}/v1/models/metered:predict"
        for _ in range(3):
            assert (await client.post(url, json={"instances": IRIS_ROWS})).status_code == 200
        await statuses.wait_for(lambda e: e["id"] == "metered" and e["runningReplicas"] == 1)
        after = await client.get(f"{zeroserve.url}/metrics")
    assert after.status_code == 200 and after.headers["content-type"].startswith("text/plain")
    text = after.text
    ids = {"group": "default", "deployment": "metered"}
    requests = sample(text, "zeroserve_inference_requests_total", code="200", **ids)
    assert requests - sample(before, "zeroserve_inference_requests_total", code="200", **ids) == 3
    assert sample(text, "zeroserve_cold_starts_total", **ids) == 1
    assert sample(text, "zeroserve_cold_start_seconds_count", **ids) == 1
    assert sample(text, "zeroserve_cold_start_seconds_sum", **ids) > 0
    assert sample(text, "zeroserve_inference_request_seconds_count", **ids) == 3
    assert sample(text, "zeroserve_replicas", **ids) == 1
    assert sample(text, "zeroserve_events_handled_total", function="deployment_requested") >= 1
    assert sample(text, "zeroserve_events_handled_total", function="artifact_created") >= 1


async def test_a_rejected_event_counts_as_dead_lettered_for_its_function(zeroserve, listen):
    from zeroserve.events import DeploymentStopped, new_event

    async with operator(zeroserve) as client:
        before = (await client.get(f"{zeroserve.url}/metrics")).text
        dead = await listen(zeroserve, "zeroserve.default.deadletter.>")
        # Stopping a deployment that does not exist: retried (it may be on its way), then given up.
        await zeroserve.platform.bus.publish(new_event(DeploymentStopped(id="ghost"), source="/tests"), "default")
        await dead.wait_for(lambda e: True)
        function = {"function": "deployment_stopped"}

        def grown(text: str, name: str, **labels: str) -> float:
            return sample(text, name, **labels, **function) - sample(before, name, **labels, **function)

        # The runner counts right after it has stored the dead letter: a scrape may come in between.
        for _ in range(100):
            after = (await client.get(f"{zeroserve.url}/metrics")).text
            if grown(after, "zeroserve_events_dead_lettered_total", reason="DeploymentNotFound"):
                break
            await asyncio.sleep(0.05)
    assert grown(after, "zeroserve_events_dead_lettered_total", reason="DeploymentNotFound") == 1
    assert grown(after, "zeroserve_events_retried_total") == zeroserve.settings.max_deliver - 1
