"""``GET /v2/events/stream``: every event of the caller's resource group, live, as server-sent events."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import httpx

from tests.conftest import token_for, until
from zeroserve.events import ArtifactCreated, DeploymentStatus, Status, new_event
from zeroserve.node import Node


async def read(lines: AsyncIterator[str], count: int, timeout: float = 30) -> list[dict[str, Any]]:
    """The next ``count`` server-sent events: {"event", "id", "data"} with data parsed."""
    events: list[dict[str, Any]] = []
    current: dict[str, Any] = {}

    async def collect() -> None:
        async for line in lines:
            if not line:
                if current:
                    events.append(dict(current))
                    current.clear()
                    if len(events) == count:
                        return
                continue
            name, _, value = line.partition(":")
            if name in ("event", "id", "data"):
                current[name] = json.loads(value) if name == "data" else value.strip()

    await asyncio.wait_for(collect(), timeout)
    return events


async def publish(zeroserve: Node, group: str, deployment: str) -> str:
    assert zeroserve.platform is not None
    event = new_event(DeploymentStatus(id=deployment, status=Status.RUNNING), source="/tests", subject=deployment)
    await zeroserve.platform.bus.publish(event, group)
    return str(event["id"])


async def test_a_group_stream_carries_only_its_own_groups_events_as_cloudevents(zeroserve, api):
    token_a = await token_for(zeroserve, ["team-a"])
    async with httpx.AsyncClient(base_url=zeroserve.url, timeout=30, headers={
            "Authorization": f"Bearer {token_a}", "AI-Resource-Group": "team-a"}) as a, \
            a.stream("GET", "/v2/events/stream") as stream:
        assert stream.status_code == 200 and stream.headers["content-type"].startswith("text/event-stream")
        await publish(zeroserve, "team-b", "theirs")
        await publish(zeroserve, "team-ab", "theirs-too")
        ours = await publish(zeroserve, "team-a", "ours")
        (event,) = await read(stream.aiter_lines(), 1)
    assert event["event"] == "io.zeroserve.deployment.status"
    cloud_event = event["data"]
    assert cloud_event["id"] == ours and cloud_event["specversion"] == "1.0" and cloud_event["subject"] == "ours"
    assert cloud_event["data"] == {"id": "ours", "status": "RUNNING", "runningReplicas": 0}
    # A token of one group cannot open another's stream.
    async with httpx.AsyncClient(base_url=zeroserve.url, headers={"Authorization": f"Bearer {token_a}"}) as a:
        refused = await a.get("/v2/events/stream", headers={"AI-Resource-Group": "team-b"})
    assert refused.status_code == 404 and refused.json()["error"]["code"] == "NotFound"


async def test_a_group_stream_resumes_after_last_event_id_and_filters_by_type(zeroserve, api):
    assert zeroserve.platform is not None
    async with api.stream("GET", "/v2/events/stream") as stream:
        lines = stream.aiter_lines()
        first = await publish(zeroserve, "default", "one")
        (seen,) = await read(lines, 1)
    assert seen["data"]["id"] == first
    second = await publish(zeroserve, "default", "two")
    artifact = new_event(ArtifactCreated(id="m1", name="m1", url="https://example.com/m"), source="/tests")
    await zeroserve.platform.bus.publish(artifact, "default")
    await zeroserve.platform.logs.control("default", "two", "a log line")

    async with api.stream("GET", "/v2/events/stream", headers={"Last-Event-ID": seen["id"]}) as stream:
        resumed = await read(stream.aiter_lines(), 2)
    assert [e["data"]["id"] for e in resumed] == [second, artifact["id"]], "the logs only when asked for"

    async with api.stream("GET", "/v2/events/stream", params={"types": "deployment.log,artifact.created"},
                          headers={"Last-Event-ID": seen["id"]}) as stream:
        typed = await read(stream.aiter_lines(), 2)
    assert sorted(e["event"] for e in typed) == ["io.zeroserve.artifact.created", "io.zeroserve.deployment.log"]


async def test_a_group_stream_refuses_an_unknown_type_and_leaves_no_subscription_behind(zeroserve, api):
    refused = await api.get("/v2/events/stream", params={"types": "deployment.exploded"})
    assert refused.status_code == 400 and "query.types" in refused.json()["error"]["message"]
    assert zeroserve.platform is not None
    subscriptions = len(zeroserve.platform.bus.nc._subs)
    async with api.stream("GET", "/v2/events/stream") as stream:
        await publish(zeroserve, "default", "one")
        await read(stream.aiter_lines(), 1)
        assert len(zeroserve.platform.bus.nc._subs) == subscriptions + 1

    async def released() -> bool:
        return len(zeroserve.platform.bus.nc._subs) == subscriptions

    await until(released, what="the stream's subscription being released")
