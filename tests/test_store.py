"""The registries on a real nats-server: compare-and-set, and the deployment record as the
projection of its status events."""

from __future__ import annotations

import asyncio

import pytest

from zeroserve.artifacts.registration import API_SOURCE, origin_of, register
from zeroserve.core.binding import from_nats
from zeroserve.core.bus import EVENTS_STREAM, Bus
from zeroserve.core.store import Artifact, Deployment, Store
from zeroserve.deployments.lifecycle import Deployments, project
from zeroserve.errors import InvalidTransition
from zeroserve.events import ArtifactCreated, DeploymentRequested, DeploymentStatus, Status, new_event, parse_data


@pytest.fixture
async def bus(nats_server, settings):
    bus = await Bus.connect(nats_server.url, settings)
    yield bus
    await bus.close()


async def test_concurrent_updates_of_one_record_are_all_kept(bus):
    store = await Store.open(bus.js)
    await store.artifacts.put("g", "a", Artifact(id="a", group="g", name="0", url="s3://b/a"))

    def bump(record):
        return record.model_copy(update={"name": str(int(record.name) + 1)})

    await asyncio.gather(*(store.artifacts.update("g", "a", bump) for _ in range(20)))
    assert (await store.artifacts.get("g", "a")).name == "20"


async def test_records_are_scoped_by_resource_group(bus):
    store = await Store.open(bus.js)
    await store.artifacts.put("team-a", "m", Artifact(id="m", group="team-a", name="a", url="s3://b/a"))
    await store.artifacts.put("team-b", "m", Artifact(id="m", group="team-b", name="b", url="s3://b/b"))
    assert [a.name for a in await store.artifacts.list("team-a")] == ["a"]
    assert await store.artifacts.get("team-c", "m") is None


async def test_the_deployment_record_is_the_projection_of_its_status_events(bus, settings):
    store = await Store.open(bus.js)
    deployments = Deployments(store, bus, "http://gw")
    request = DeploymentRequested(id="dep1", executable_id="sklearn")
    await deployments.request("g", request)
    await deployments.transition("g", "dep1", Status.PENDING, causation="e1", deployment_url="http://gw/d1",
                                 min_replicas=0, max_replicas=2, resource_plan="starter")
    await deployments.transition("g", "dep1", Status.RUNNING, causation="e1")
    await deployments.transition("g", "dep1", Status.RUNNING, running_replicas=1)
    await deployments.transition("g", "dep1", Status.STOPPING, causation="e2", target_status="STOPPED")
    await deployments.transition("g", "dep1", Status.STOPPED, causation="e2", running_replicas=0)
    with pytest.raises(InvalidTransition, match="STOPPED: it cannot become RUNNING"):
        await deployments.transition("g", "dep1", Status.RUNNING)

    subscription = await bus.js.pull_subscribe("zeroserve.g.deployment.status", stream=EVENTS_STREAM)
    events = [parse_data(from_nats(m.headers, m.data)) for m in await subscription.fetch(100, timeout=2)]
    assert [e.status for e in events] == ["UNKNOWN", "PENDING", "RUNNING", "RUNNING", "STOPPING", "STOPPED"]

    folded = Deployment(id="dep1", group="g", executable_id="sklearn")
    for event in events:
        assert isinstance(event, DeploymentStatus)
        folded = project(folded, event)
    stored = await store.deployments.get("g", "dep1")
    fields = set(DeploymentStatus.model_fields) - {"id"}
    assert folded.model_dump(include=fields) == stored.model_dump(include=fields)
    assert stored.status == Status.STOPPED and stored.deployment_url == "http://gw/d1"


async def test_a_retried_transition_announces_its_status_once(bus):
    store = await Store.open(bus.js)
    deployments = Deployments(store, bus, "http://gw")
    await deployments.request("g", DeploymentRequested(id="dep1", executable_id="sklearn"))
    for _ in range(3):  # the same handler, retried after it had already recorded the status
        await deployments.transition("g", "dep1", Status.PENDING, causation="same-event")
    subscription = await bus.js.pull_subscribe("zeroserve.g.deployment.status", stream=EVENTS_STREAM)
    statuses = [parse_data(from_nats(m.headers, m.data)).status for m in await subscription.fetch(100, timeout=1)]
    assert statuses == ["UNKNOWN", "PENDING"]


async def test_an_older_lifecycle_event_cannot_act_after_a_newer_one(bus):
    store = await Store.open(bus.js)
    deployments = Deployments(store, bus, "http://gw")
    await deployments.request("g", DeploymentRequested(id="dep1", executable_id="sklearn"), sequence=5)
    assert await deployments.claim("g", "dep1", 5), "the event that created it may act"
    assert await deployments.claim("g", "dep1", 9), "a later stop may act"
    assert not await deployments.claim("g", "dep1", 5), "the request redelivered after the stop may not"


async def test_an_api_registration_whose_record_was_deleted_meanwhile_stays_deleted(bus):
    store = await Store.open(bus.js)
    created = ArtifactCreated(id="m", name="m", url="s3://bucket/m")
    # The API wrote the record, then its group was deleted before the function registered it.
    by_api = origin_of(new_event(created, source=API_SOURCE), created)
    assert await register(store.artifacts, "team-e", "m", created, by_api) is None
    assert await store.artifacts.get("team-e", "m") is None
    # An artifact.created from elsewhere (a webhook, an event of the user's) creates the record.
    elsewhere = origin_of(new_event(created, source="/ci"), created)
    registered = await register(store.artifacts, "team-e", "m", created, elsewhere)
    assert registered is not None and registered.origin == elsewhere
    assert registered is not None and (await store.artifacts.get("team-e", "m")) == registered


async def test_a_record_changed_by_another_writer_is_not_overwritten_from_memory(bus):
    # Two processes' stores on one bucket: the first remembers what it wrote last, the second writes
    # in between; the first's next change must build on the second's, not on its own copy.
    first, second = await Store.open(bus.js), await Store.open(bus.js)
    await first.artifacts.put("g", "a", Artifact(id="a", group="g", name="start", url="s3://b/a"))

    def add(word):
        return lambda record: record.model_copy(update={"name": f"{record.name}+{word}"})

    await first.artifacts.update("g", "a", add("one"))
    await second.artifacts.update("g", "a", add("two"))
    await first.artifacts.update("g", "a", add("three"))
    assert (await second.artifacts.get("g", "a")).name == "start+one+two+three"


async def test_the_deployment_index_lists_what_any_writer_wrote_a_moment_ago(bus):
    from zeroserve.deployments.index import DeploymentIndex

    reader, writer = await Store.open(bus.js), await Store.open(bus.js)
    index = DeploymentIndex(reader.deployments)
    try:
        assert await index.summaries("g") == []
        for id in ("older", "newer"):
            await writer.deployments.put("g", id, Deployment(id=id, group="g", executable_id="sklearn"))
        await writer.deployments.put("other", "x", Deployment(id="x", group="other", executable_id="sklearn"))
        # No wait: a list asks where the store is and catches up with it first.
        assert [s.id for s in await index.summaries("g")] == ["newer", "older"]
        await writer.deployments.update("g", "older", lambda d: d.model_copy(update={"status": Status.RUNNING}))
        await writer.deployments.delete("g", "newer")
        [summary] = await index.summaries("g")
        assert (summary.id, summary.status) == ("older", "RUNNING")
        assert index.record(summary).status == Status.RUNNING
        assert {d.id for d in await index.deployments()} == {"older", "x"}
    finally:
        await index.close()


async def test_a_delete_of_an_unknown_deployment_is_refused_once_its_request_is_picked_up(bus):
    store = await Store.open(bus.js)
    deployments = Deployments(store, bus, "http://gw")
    request = DeploymentRequested(id="early", executable_id="sklearn")
    await deployments.request("g", request)  # as the API writes it, before the event is handled
    await deployments.reserve_deletion("g", "early")  # the delete came first: accepted
    assert await deployments.claim_for("g", request, 7) is None, "its request, handled after, does nothing"

    request = DeploymentRequested(id="late", executable_id="sklearn")
    await deployments.request("g", request)
    assert await deployments.claim_for("g", request, 8), "the request was picked up first"
    with pytest.raises(InvalidTransition, match="is being deployed"):
        await deployments.reserve_deletion("g", "late")
