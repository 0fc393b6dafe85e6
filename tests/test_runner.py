"""The runner against a real nats-server: dead letters, duplicates, retries, shutdown."""

from __future__ import annotations

import asyncio
import json

import nats
import pytest
from conftest import until
from nats.js.api import AckPolicy, ConsumerConfig, StreamConfig

from zeroserve.core import consumer
from zeroserve.core.binding import to_nats
from zeroserve.core.bus import EVENTS_STREAM
from zeroserve.core.dead_letters import MESSAGE_HEADER, REASON_HEADER
from zeroserve.core.runner import INVALID_GROUP, Context, Function, Runner, on
from zeroserve.events import (
    IN_TYPES,
    ArtifactCreated,
    ArtifactStatus,
    DeploymentRequested,
    DeploymentStopped,
    new_event,
)
from zeroserve.node import Node


async def raw_publish(zeroserve: Node, subject: str, body: bytes, headers: dict[str, str]) -> None:
    assert zeroserve.platform is not None
    await zeroserve.platform.bus.js.publish(subject, body, headers=headers)


def binary_headers(**attributes: str) -> dict[str, str]:
    return {f"ce-{name}": value for name, value in attributes.items()}


async def test_malformed_events_land_in_the_dead_letter_subject_and_the_runner_keeps_serving(zeroserve, listen):
    dead = await listen(zeroserve, "zeroserve.default.deadletter.>")
    artifacts = await listen(zeroserve, "zeroserve.default.artifact.status")
    statuses = await listen(zeroserve, "zeroserve.default.deployment.status")

    # 1. a body that is not JSON
    await raw_publish(zeroserve, "zeroserve.default.deployment.requested", b"{not json", binary_headers(
        specversion="1.0", id="bad-json", source="/tests", type="io.zeroserve.deployment.requested",
        datacontenttype="application/json"))
    # 2. a CloudEvent without its required source attribute
    await raw_publish(zeroserve, "zeroserve.default.deployment.requested",
                      json.dumps({"id": "x", "executableId": "sklearn"}).encode(), binary_headers(
                          specversion="1.0", id="no-source", type="io.zeroserve.deployment.requested",
                          datacontenttype="application/json"))
    # 3. a deployment of an artifact nobody registered
    event = new_event(DeploymentRequested(id="orphan", executable_id="sklearn",
                                          input_artifacts={"model": "no-such-artifact"}), source="/tests")
    await zeroserve.platform.bus.publish(event, "default")

    for _ in range(100):
        if len(dead.messages) >= 3:
            break
        await asyncio.sleep(0.1)
    letters = {m.headers[REASON_HEADER]: m for m in dead.messages}
    assert set(letters) == {"MalformedEvent", "ArtifactNotFound"} and len(dead.messages) == 3, letters
    assert all(m.subject == "zeroserve.default.deadletter.deployment_requested" for m in dead.messages)
    messages = " ".join(m.headers[MESSAGE_HEADER] for m in dead.messages)
    assert "not valid JSON" in messages and "source" in messages and "no-such-artifact" in messages
    assert letters["ArtifactNotFound"].data == to_nats(event)[1], "the dead letter carries the original event"
    orphan = await statuses.wait_for(lambda e: e["id"] == "orphan" and e["status"] == "DEAD")
    assert orphan["reason"] == "ArtifactNotFound"

    # The runner still works: a good event after the bad ones is handled.
    source = zeroserve.settings.data_dir / "ok"
    source.mkdir(parents=True)
    (source / "model.joblib").write_bytes(b"x")
    await zeroserve.platform.bus.publish(
        new_event(ArtifactCreated(id="fine", name="fine", url=source.as_uri()), source="/tests"), "default")
    await artifacts.wait_for(lambda e: e["id"] == "fine" and e["status"] == "staged")


async def test_a_duplicate_event_id_has_one_effect(zeroserve, listen):
    artifacts = await listen(zeroserve, "zeroserve.default.artifact.status")
    source = zeroserve.settings.data_dir / "model"
    source.mkdir(parents=True)
    (source / "model.joblib").write_bytes(b"x")
    first = new_event(ArtifactCreated(id="a1", name="first", url=source.as_uri()), source="/tests", id="same-id")
    second = new_event(ArtifactCreated(id="a1", name="second", url=source.as_uri()), source="/tests", id="same-id")
    published = [await zeroserve.platform.bus.publish(e, "default") for e in (first, second)]
    assert [p.duplicate for p in published] == [False, True]
    await artifacts.wait_for(lambda e: e["id"] == "a1" and e["status"] == "staged")
    await asyncio.sleep(0.5)
    assert [e["status"] for e in artifacts.json()] == ["registered", "staged"]
    artifact = await zeroserve.platform.store.artifacts.get("default", "a1")
    assert artifact is not None and artifact.name == "first"


async def test_a_failing_function_is_retried_with_backoff_then_dead_lettered(zeroserve, listen):
    dead = await listen(zeroserve, "zeroserve.default.deadletter.flaky")
    attempts: list[float] = []

    @on(ArtifactCreated)
    async def flaky(data: ArtifactCreated, ctx: Context) -> None:
        attempts.append(asyncio.get_running_loop().time())
        raise ConnectionError("the object store is down")

    runner = Runner(zeroserve.platform, [Function("flaky", (ArtifactCreated,), flaky)])
    await runner.start()
    try:
        await zeroserve.platform.bus.publish(
            new_event(ArtifactCreated(id="x", name="x", url="s3://bucket/x"), source="/tests"), "default")
        for _ in range(100):
            if dead.messages:
                break
            await asyncio.sleep(0.05)
    finally:
        await runner.stop()
    assert len(attempts) == zeroserve.settings.max_deliver
    gaps = [b - a for a, b in zip(attempts, attempts[1:], strict=False)]
    assert all(gap >= delay * 0.9 for gap, delay in zip(gaps, zeroserve.settings.retry_backoff_s, strict=False))
    assert dead.messages[0].headers[REASON_HEADER] == "ConnectionError"
    assert "gave up after 3 attempts: the object store is down" in dead.messages[0].headers[MESSAGE_HEADER]


async def test_shutdown_lets_in_flight_events_finish(zeroserve):
    started, finished = asyncio.Event(), []

    @on(ArtifactCreated)
    async def slow(data: ArtifactCreated, ctx: Context) -> None:
        started.set()
        await asyncio.sleep(0.5)
        finished.append(data.name)

    runner = Runner(zeroserve.platform, [Function("slow", (ArtifactCreated,), slow)])
    await runner.start()
    await zeroserve.platform.bus.publish(
        new_event(ArtifactCreated(id="a0", name="a0", url="s3://b/x"), source="/tests"), "default")
    await asyncio.wait_for(started.wait(), 10)
    await runner.stop(grace=5)
    assert finished == ["a0"], "an event in flight when the runner stopped finished before the stop returned"


async def test_events_cut_off_by_a_shutdown_come_back_to_the_next_runner(zeroserve):
    zeroserve.platform.settings.runner_concurrency = 1  # the others wait in line when the stop comes
    started, finished = asyncio.Event(), []

    @on(ArtifactCreated)
    async def slow(data: ArtifactCreated, ctx: Context) -> None:
        started.set()
        await asyncio.sleep(1.0)
        finished.append(data.name)

    runner = Runner(zeroserve.platform, [Function("slow", (ArtifactCreated,), slow)])
    await runner.start()
    for n in range(3):
        await zeroserve.platform.bus.publish(
            new_event(ArtifactCreated(id=f"a{n}", name=f"a{n}", url="s3://b/x"), source="/tests"), "default")
    await asyncio.wait_for(started.wait(), 10)
    await runner.stop(grace=0.1)  # shorter than the handler: it is cut off and handed back
    assert finished == []

    zeroserve.platform.settings.runner_concurrency = 16
    again = Runner(zeroserve.platform, [Function("slow", (ArtifactCreated,), slow)])
    await again.start()
    for _ in range(100):
        if len(finished) >= 3:
            break
        await asyncio.sleep(0.1)
    await again.stop()
    assert sorted(finished) == ["a0", "a1", "a2"], "every event is handled, none twice"


async def test_an_idle_runner_stops_at_once_and_an_event_published_then_goes_to_the_next_runner(
        zeroserve, monkeypatch):
    # Fetches that would wait 30 s for an event: a stop that waited for them would show.
    monkeypatch.setattr(consumer, "FETCH_WAIT_S", 30.0)
    handled: list[str] = []

    @on(ArtifactCreated)
    async def note(data: ArtifactCreated, ctx: Context) -> None:
        handled.append(data.name)

    runner = Runner(zeroserve.platform, [Function("note", (ArtifactCreated,), note)])
    await runner.start()
    await asyncio.sleep(0.2)  # its fetch is waiting at the server now
    async with asyncio.timeout(5):
        await runner.stop()
    await zeroserve.platform.bus.publish(
        new_event(ArtifactCreated(id="a0", name="a0", url="s3://b/x"), source="/tests"), "default")
    monkeypatch.setattr(consumer, "FETCH_WAIT_S", 1.0)
    again = Runner(zeroserve.platform, [Function("note", (ArtifactCreated,), note)])
    await again.start()
    # Not held by the stopped runner's fetch until the ack wait (30 s) hands it out again.
    await until(lambda: handled, timeout=5, what="the event at the next runner")
    await again.stop()
    assert handled == ["a0"]


async def test_events_waiting_for_a_slot_or_a_lock_are_not_redelivered_meanwhile(zeroserve):
    zeroserve.platform.settings.ack_wait_s = 1.0
    zeroserve.platform.settings.runner_concurrency = 2
    calls: list[str] = []

    @on(DeploymentStopped)
    async def slow(data: DeploymentStopped, ctx: Context) -> None:
        calls.append(ctx.event_id)
        await asyncio.sleep(1.5)  # longer than the ack wait: only the heartbeat keeps it ours

    runner = Runner(zeroserve.platform, [Function("slow_stop", (DeploymentStopped,), slow)])
    await runner.start()
    try:
        # Three about one deployment (they wait for its lock) and two more (they wait for a slot).
        for n, id in enumerate(["dep1", "dep1", "dep1", "dep2", "dep3"]):
            await zeroserve.platform.bus.publish(new_event(DeploymentStopped(id=id), source="/tests", id=f"e{n}"),
                                                 "default")
        for _ in range(150):
            if len(set(calls)) == 5:
                break
            await asyncio.sleep(0.1)
        await asyncio.sleep(1.5)
    finally:
        await runner.stop()
    assert sorted(calls) == ["e0", "e1", "e2", "e3", "e4"], "each event handled exactly once"


async def test_a_retried_handler_announces_each_distinct_event_once(zeroserve):
    attempts = 0

    @on(ArtifactCreated)
    async def announcer(data: ArtifactCreated, ctx: Context) -> None:
        nonlocal attempts
        attempts += 1
        await ctx.emit(ArtifactStatus(id="announced", status="registered", url=data.url))
        if attempts == 1:
            await ctx.emit(ArtifactStatus(id="announced", status="rejected", url=data.url, reason="Flaky"))
            raise ConnectionError("try again")
        await ctx.emit(ArtifactStatus(id="announced", status="staged", url=data.url))

    runner = Runner(zeroserve.platform, [Function("announcer", (ArtifactCreated,), announcer)])
    await runner.start()
    try:
        await zeroserve.platform.bus.publish(
            new_event(ArtifactCreated(id="x", name="x", url="s3://b/x"), source="/tests"), "test-group")
        for _ in range(100):
            if attempts >= 2:
                break
            await asyncio.sleep(0.05)
        await asyncio.sleep(0.3)
    finally:
        await runner.stop()
    stored = await zeroserve.platform.bus.js.pull_subscribe("zeroserve.test-group.artifact.status",
                                                             stream=EVENTS_STREAM)
    statuses = [e["status"] for e in (json.loads(m.data) for m in await stored.fetch(20, timeout=1))
                if e["id"] == "announced"]
    assert statuses == ["registered", "rejected", "staged"]


def test_every_catalogued_input_event_has_a_function(settings):
    from zeroserve.core.runner import load_functions

    handled = {t for f in load_functions(settings.functions_dir) for t in f.event_types}
    assert handled == set(IN_TYPES)


def test_on_refuses_a_plain_function():
    with pytest.raises(TypeError, match="async"):
        on(ArtifactCreated)(lambda data, ctx: None)  # type: ignore[arg-type]


async def test_an_event_under_a_malformed_resource_group_is_dead_lettered_as_malformed(zeroserve, listen):
    dead = await listen(zeroserve, f"zeroserve.{INVALID_GROUP}.deadletter.>")
    headers, body = to_nats(new_event(ArtifactCreated(id="a", name="a", url="s3://b/a"), source="/tests"))
    await raw_publish(zeroserve, "zeroserve.Not_A_Group.artifact.created", body, headers)
    for _ in range(50):
        if dead.messages:
            break
        await asyncio.sleep(0.1)
    assert dead.messages[0].headers[REASON_HEADER] == "MalformedEvent"
    assert "Not_A_Group" in dead.messages[0].headers[MESSAGE_HEADER]


async def test_an_artifact_without_a_usable_id_is_dead_lettered_not_stored(zeroserve, listen):
    dead = await listen(zeroserve, "zeroserve.default.deadletter.artifact_created")
    event = new_event(ArtifactCreated(name="m", url="s3://b/m"), source="/tests", id="Webhook_Delivery_42")
    await zeroserve.platform.bus.publish(event, "default")
    for _ in range(50):
        if dead.messages:
            break
        await asyncio.sleep(0.1)
    assert dead.messages[0].headers[REASON_HEADER] == "MalformedEvent"
    assert "give the artifact an id" in dead.messages[0].headers[MESSAGE_HEADER]
    assert await zeroserve.platform.store.artifacts.list("default") == []


async def test_a_deployment_requested_right_after_its_artifact_waits_for_the_artifact_to_be_registered(
        settings, tmp_path, listen):
    """Functions read the stream each through their own consumer, so deployment_requested may come to a
    request before artifact_created has registered the artifact published just ahead of it (a restart
    after a crash starts both at once). The request must wait for it, not end DEAD with ArtifactNotFound."""
    from models import train_iris_sklearn

    from zeroserve.core.runner import load_functions

    shipped = {f.name: f for f in load_functions(settings.functions_dir)}
    only_deployments = tmp_path / "functions"
    only_deployments.mkdir()
    (only_deployments / "deployment_requested.py").write_text(
        (settings.functions_dir / "deployment_requested.py").read_text())
    settings.functions_dir = only_deployments
    settings.retry_backoff_s, settings.max_deliver = [0.3], 20  # about 6 s of retries
    model = train_iris_sklearn(settings.data_dir / "sources" / "iris")
    async with Node(settings) as zeroserve:
        platform = zeroserve.platform
        statuses = await listen(zeroserve, "zeroserve.default.deployment.status")
        # artifact_created's consumer exists (as after a crash) but nothing reads it yet.
        await platform.bus.consumer("artifact_created", shipped["artifact_created"].event_types)
        await platform.bus.publish(new_event(ArtifactCreated(id="iris", name="iris", url=model.as_uri()),
                                             source="/tests"), "default")
        await platform.bus.publish(new_event(DeploymentRequested(
            id="early", executable_id="sklearn", input_artifacts={"model": "iris"}), source="/tests"), "default")
        # A request for an artifact nobody published is refused at once, as before.
        await platform.bus.publish(new_event(DeploymentRequested(
            id="orphan", executable_id="sklearn", input_artifacts={"model": "nobody"}), source="/tests"), "default")
        orphan = await statuses.wait_for(lambda e: e["id"] == "orphan" and e["status"] == "DEAD")
        assert orphan["reason"] == "ArtifactNotFound"
        await asyncio.sleep(1.0)
        assert not [e for e in statuses.json() if e["id"] == "early" and e["status"] == "DEAD"], "it waits"

        late = Runner(platform, [shipped["artifact_created"]])
        await late.start()
        try:
            running = await statuses.wait_for(lambda e: e["id"] == "early" and e["status"] in ("RUNNING", "DEAD"))
        finally:
            await late.stop()
        assert running["status"] == "RUNNING", running


async def test_no_more_functions_run_at_once_than_the_runner_allows_and_each_event_runs_once(zeroserve):
    zeroserve.platform.settings.runner_concurrency = 3
    running: list[str] = []
    most = 0
    handled: list[str] = []

    @on(DeploymentStopped)
    async def busy(data: DeploymentStopped, ctx: Context) -> None:
        nonlocal most
        running.append(data.id)
        most = max(most, len(running))
        await asyncio.sleep(0.05)
        running.remove(data.id)
        handled.append(data.id)

    for n in range(12):
        await zeroserve.platform.bus.publish(new_event(DeploymentStopped(id=f"dep{n:02d}"), source="/tests"), "default")
    runner = Runner(zeroserve.platform, [Function("busy_stop", (DeploymentStopped,), busy)])
    await runner.start()
    try:
        await until(lambda: len(handled) >= 12, timeout=10, what="the 12 events handled")
    finally:
        await runner.stop()
    assert sorted(handled) == [f"dep{n:02d}" for n in range(12)]
    assert most == 3, f"{most} functions ran at once; the runner allows 3"


# --- the pull loop's fetch, against a bare stream ------------------------------------------------------


@pytest.fixture
async def pull(nats_server):
    """A stream with an explicit-ack durable, and a pull subscription that holds at most 2 KiB unread."""
    nc = await nats.connect(nats_server.url)
    js = nc.jetstream()
    await js.add_stream(StreamConfig(name="PULLED", subjects=["pulled"]))
    await js.add_consumer("PULLED", ConsumerConfig(durable_name="reader", ack_policy=AckPolicy.EXPLICIT))
    subscription = await js.pull_subscribe_bind(durable="reader", stream="PULLED", pending_bytes_limit=2048)
    yield js, subscription
    await nc.close()


async def fetched(subscription, batch: int, wait: float) -> list:
    return [msg async for msg in consumer.fetch(subscription, batch, wait)]


async def test_a_fetch_hands_over_each_message_as_it_arrives_not_when_the_batch_is_full(pull):
    js, subscription = pull
    assert await fetched(subscription, 16, 0.3) == [], "nothing published: nothing, after the wait"
    for n in range(3):
        await js.publish("pulled", f"{n}".encode())
    started = asyncio.get_running_loop().time()
    arrived = []
    async for msg in consumer.fetch(subscription, 16, 10.0):
        arrived.append((msg.data, asyncio.get_running_loop().time() - started))
        await msg.ack()
        if len(arrived) == 3:
            break
    assert [data for data, _ in arrived] == [b"0", b"1", b"2"]
    assert arrived[-1][1] < 5, "3 of 16 came at once, not at the 10 s expiry"


async def test_a_reader_taking_events_one_at_a_time_is_never_cut_off_as_a_slow_consumer(pull):
    # Each message counts against the subscription's 2 KiB until it is taken: 20 of 500 bytes would
    # exceed it if taking them did not give the room back, and nats-py would drop the rest.
    js, subscription = pull
    for n in range(20):
        await js.publish("pulled", f"{n:03d}".encode() * 125)
    taken = []
    for _ in range(20):
        one = await fetched(subscription, 1, 2.0)
        assert one, f"message {len(taken)} never came"
        taken += one
        await one[0].ack()
    assert [msg.data[:3] for msg in taken] == [f"{n:03d}".encode() for n in range(20)]
