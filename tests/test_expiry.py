"""Deployments with a ttl are stopped and then deleted once it has passed, and only those.

A ttl is at least a minute; rather than wait minutes, these tests run ``enforce_ttl`` with a clock
set two minutes ahead (``clock=``), next to the one the embedded platform runs on real time.
"""

from __future__ import annotations

import asyncio
import contextlib
from datetime import UTC, datetime, timedelta

import pytest
from conftest import until
from test_api_deployments import create, put_configuration, put_iris_artifact, status_becomes

from zeroserve.deployments.expiry import enforce_ttl
from zeroserve.events import lifetime
from zeroserve.node import Node
from zeroserve.settings import Settings


@pytest.mark.parametrize(("ttl", "duration"), [
    ("30m", timedelta(minutes=30)), ("2h", timedelta(hours=2)), ("24H", timedelta(days=1)), ("1d", timedelta(days=1)),
])
def test_a_ttl_is_minutes_hours_or_days(ttl: str, duration: timedelta) -> None:
    assert lifetime(ttl) == duration


def two_minutes_ahead() -> datetime:
    return datetime.now(UTC) + timedelta(minutes=2)


async def stored_events(zeroserve: Node, subject: str) -> int:
    assert zeroserve.platform is not None
    info = await zeroserve.platform.bus.js.stream_info("ZEROSERVE_EVENTS", subjects_filter=subject)
    return sum((info.state.subjects or {}).values())


@pytest.fixture
def settings(settings: Settings) -> Settings:
    settings.ttl_check_interval_s = 0.1
    return settings


async def test_a_deployment_past_its_ttl_is_stopped_then_deleted_and_the_others_stay(zeroserve, api, listen):
    assert zeroserve.platform is not None
    await put_iris_artifact(zeroserve)
    await put_configuration(zeroserve, "iris-config")
    statuses = await listen(zeroserve, "zeroserve.default.deployment.status")
    short = (await create(api, "iris-config", ttl="1m"))["id"]
    long = (await create(api, "iris-config", ttl="1d"))["id"]
    forever = (await create(api, "iris-config"))["id"]
    for id in (short, long, forever):
        await status_becomes(api, id, "RUNNING")
    # Real time: a minute has not passed, nothing happens.
    assert (await api.get(f"/v2/lm/deployments/{short}")).json()["status"] == "RUNNING"

    # Two loops, as two gateways would run them: still one stop and one delete.
    loops = [asyncio.create_task(enforce_ttl(zeroserve.platform, clock=two_minutes_ahead)) for _ in range(2)]
    try:
        async def gone() -> bool:
            return (await api.get(f"/v2/lm/deployments/{short}")).status_code == 404

        await until(gone, what="the expired deployment being deleted")
    finally:
        for loop in loops:
            loop.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await loop

    seen = [e for e in statuses.json() if e["id"] == short]
    assert [e["status"] for e in seen][-3:] == ["STOPPING", "STOPPED", "STOPPED"]
    assert seen[-1]["targetStatus"] == "DELETED"
    assert await stored_events(zeroserve, "zeroserve.default.deployment.stopped") == 1
    assert await stored_events(zeroserve, "zeroserve.default.deployment.deleted") == 1
    for id in (long, forever):
        assert (await api.get(f"/v2/lm/deployments/{id}")).json()["status"] == "RUNNING"
    logs = (await api.get(f"/v2/lm/deployments/{short}/logs")).json()["data"]["result"]
    assert any("ttl 1m has passed" in line["msg"] for line in logs)
