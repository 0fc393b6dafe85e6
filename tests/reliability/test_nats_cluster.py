"""zeroserve on a three-node JetStream cluster with three replicas of every stream and KV bucket:
one node killed (-9) while 30 deployments are requested, then a rolling restart of all three while
they are stopped. Nothing is lost (every deployment reaches the status its last event asks for,
every event is handled, none dead-lettered) and no step is announced twice (the checks of
test_nats_restart.py and test_crashes.py, on reliability/stream.py).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import nats
import pytest
from conftest import free_port, operator, until
from models import train_iris_sklearn
from nats_cluster import NatsCluster
from stream import Publisher, dead_letters, status_history, unhandled

from zeroserve.core.bus import EVENTS_STREAM, LOGS_STREAM, Bus
from zeroserve.core.dead_letters import DEADLETTER_STREAM
from zeroserve.core.nats_server import NatsServer
from zeroserve.core.store import Store, bucket_name
from zeroserve.errors import ZeroserveError
from zeroserve.events import ArtifactCreated, DeploymentRequested, DeploymentStopped, Status
from zeroserve.node import Node
from zeroserve.settings import Settings

DEPLOYMENTS = 30
STOPPED_LIFE = [Status.UNKNOWN, Status.PENDING, Status.RUNNING, Status.STOPPING, Status.STOPPED]


@pytest.fixture
async def nats_cluster(tmp_path: Path) -> AsyncIterator[NatsCluster]:
    cluster = NatsCluster(tmp_path / "cluster")
    try:
        await cluster.start()
        yield cluster
    finally:
        await cluster.close()


def on_the_cluster(settings: Settings, cluster: NatsCluster) -> Settings:
    """What the ha overlay gives zeroserve: every server of the cluster, three replicas. Retries as
    shipped (not the test fixture's short ones): a stream's new leader is elected within them."""
    shipped = Settings()
    return settings.model_copy(update=dict(
        nats_url=cluster.url, nats_replicas=3, max_deliver=shipped.max_deliver,
        retry_backoff_s=shipped.retry_backoff_s,
        # No model server starts here (each deployment scales to zero): no fork server to start for them.
        fork_server=False,
        # An event whose acknowledgement a killed node lost comes back after this (default 30 s).
        ack_wait_s=3))


async def quietly(error: Exception) -> None:
    """nats-py logs a traceback for every refused reconnection otherwise."""


class User:
    """Lists the deployments through the API, as a user does; a 503 (NATS electing a leader) is tried again."""

    def __init__(self, http: httpx.AsyncClient, url: str) -> None:
        self.http = http
        self.url = url
        self.unavailable = 0

    async def statuses(self) -> dict[str, str] | None:
        answer = await self.http.get(f"{self.url}/v2/lm/deployments", params={"$top": 100},
                                     headers={"AI-Resource-Group": "default"})
        if answer.status_code == 503:
            assert answer.json()["error"]["code"] == "NatsUnavailable" and answer.headers["Retry-After"]
            self.unavailable += 1
            return None
        assert answer.status_code == 200, answer.text
        return {d["id"]: d["status"] for d in answer.json()["resources"]}


@pytest.mark.slow
async def test_a_node_killed_and_a_rolling_restart_of_an_r3_cluster_lose_nothing_and_double_nothing(
        settings: Settings, nats_cluster: NatsCluster) -> None:
    settings = on_the_cluster(settings, nats_cluster)
    model_dir = train_iris_sklearn(settings.data_dir / "sources" / "iris")
    publisher = Publisher(lambda: nats_cluster.url)
    ids = [f"dep-{number:02}" for number in range(DEPLOYMENTS)]

    # An install from before the cluster: streams and buckets of one replica, an event waiting in one.
    single = await Bus.connect(nats_cluster.url, settings.model_copy(update={"nats_replicas": 1}))
    await Store.open(single.js, replicas=1)
    await single.consumer("deployment_requested", [DeploymentRequested.event_type])  # as the runner made it
    assert (await single.js.stream_info(EVENTS_STREAM)).config.num_replicas == 1
    await single.close()
    await publisher.publish("default", ArtifactCreated(id="iris-model", name="iris", url=model_dir.as_uri()))

    nc = await nats.connect(nats_cluster.urls, error_cb=quietly)  # it reconnects when its server goes
    js = nc.jetstream()
    try:
        async with Node(settings) as zeroserve, operator(zeroserve) as http:
            # Started with three replicas: every stream and bucket now has three, its messages kept, and
            # each copy holds them already (a leader lost before they caught up leaves a stream with none).
            for stream in (EVENTS_STREAM, LOGS_STREAM, DEADLETTER_STREAM, f"KV_{bucket_name('deployments')}",
                           f"KV_{bucket_name('artifacts')}"):
                info = await js.stream_info(stream)
                assert info.config.num_replicas == 3, stream
                assert info.cluster is not None
                copies = [(bool(p.current), bool(p.offline)) for p in info.cluster.replicas or []]
                assert copies == [(True, False)] * 2, stream

            # 1. kill -9 of the node that leads the events stream, a third of the way into 30 requests.
            victim = await nats_cluster.stream_leader(js, EVENTS_STREAM)
            for number, id in enumerate(ids):
                if number == DEPLOYMENTS // 3:
                    await victim.kill()
                await publisher.publish("default", DeploymentRequested(
                    id=id, executable_id="sklearn", input_artifacts={"model": "iris-model"}))
            await victim.start()

            user = User(http, zeroserve.url)

            async def all_are(status: Status) -> bool:
                return await user.statuses() == dict.fromkeys(ids, status.value)

            await until(lambda: all_are(Status.RUNNING), timeout=60, what=f"{DEPLOYMENTS} deployments RUNNING")
            await nats_cluster.whole()

            # 2. A rolling restart, as Kubernetes does one: SIGTERM one node, the next only once it is back
            #    with its streams current. A third of the deployments is stopped while each node is down.
            for number, node in enumerate(nats_cluster.nodes):
                await node.stop()
                for id in ids[number::3]:
                    await publisher.publish("default", DeploymentStopped(id=id))
                await node.start()
                await nats_cluster.whole()

            await until(lambda: all_are(Status.STOPPED), timeout=60, what=f"{DEPLOYMENTS} deployments STOPPED")

            async def all_handled() -> bool:
                return not await unhandled(js)

            await until(all_handled, timeout=30, what="every event handled")
            assert await dead_letters(js) == []
            history = await status_history(js)
            # The functions' consumers follow their stream: three replicas, the one made with one included.
            consumers = {c.name: 1 + len(c.cluster.replicas or []) for c in await js.consumers_info(EVENTS_STREAM)
                         if c.cluster is not None and c.config.durable_name}
            assert consumers["deployment_requested"] == 3
            assert set(consumers.values()) == {3}, consumers
    finally:
        await publisher.close()
        await nc.close()
    # Each step announced once: a handler that ran again, or an event delivered twice, would say one again.
    assert {id: statuses for id, statuses in history.items() if statuses != STOPPED_LIFE} == {}
    assert sorted(history) == ids
    print(f"\nnats cluster: {publisher.sent} events sent ({publisher.resent} sent again), {victim.name} killed, "
          f"3 nodes restarted one by one; {DEPLOYMENTS} deployments RUNNING then STOPPED, 0 lost, 0 doubled; "
          f"{user.unavailable} listings answered 503 meanwhile")


async def test_three_replicas_on_a_single_nats_server_are_refused_with_the_reason(
        settings: Settings, nats_server) -> None:
    settings = settings.model_copy(update={"nats_url": nats_server.url, "nats_replicas": 3})
    with pytest.raises(ZeroserveError) as refused:
        async with Node(settings):
            pass
    assert refused.value.reason == "NatsStreamRefused"
    assert "replicas > 1 not supported in non-clustered mode" in str(refused.value)
    assert "ZEROSERVE_NATS_REPLICAS" in str(refused.value)


async def test_a_bucket_keeps_its_records_as_its_replicas_change(nats_cluster: NatsCluster) -> None:
    nc = await nats.connect(nats_cluster.urls)
    try:
        js = nc.jetstream()
        await Store.open(js, replicas=1)
        await (await js.key_value(bucket_name("deployments"))).put("default.kept", b"{}")
        for replicas in (3, 1):
            await Store.open(js, replicas=replicas)
            info = await js.stream_info(f"KV_{bucket_name('deployments')}")
            assert info.config.num_replicas == replicas
            if replicas > 1:  # opened once every copy holds the records: a leader lost now leaves two to elect one
                assert info.cluster is not None
                assert [bool(p.current) for p in info.cluster.replicas or []] == [True] * (replicas - 1)
            assert (await (await js.key_value(bucket_name("deployments"))).get("default.kept")).value == b"{}"
    finally:
        await nc.close()


async def test_a_listing_while_nats_does_not_answer_is_a_503_to_try_again_not_a_500(
        settings: Settings, tmp_path: Path) -> None:
    # What a user meets while a NATS server restarts, or a cluster elects a stream's new leader.
    server = NatsServer(tmp_path / "nats", port=free_port())  # the same port again after the restart
    settings.nats_url = await server.start()
    try:
        async with Node(settings) as zeroserve, operator(zeroserve) as http:
            await server.stop()
            try:
                answer = await http.get(f"{zeroserve.url}/v2/lm/deployments", headers={"AI-Resource-Group": "default"})
            finally:
                await server.start()
            assert answer.status_code == 503, answer.text
            assert answer.json()["error"]["code"] == "NatsUnavailable"
            assert int(answer.headers["Retry-After"]) >= 1

            async def listed() -> bool:  # back once NATS is
                return (await http.get(f"{zeroserve.url}/v2/lm/deployments",
                                       headers={"AI-Resource-Group": "default"})).status_code == 200

            await until(listed, what="a listing again")
    finally:
        await server.stop()


async def test_zeroserve_started_before_the_cluster_is_up_waits_for_it(
        settings: Settings, tmp_path: Path) -> None:
    # The ha overlay's pods start together: zeroserve's may come up while one NATS pod runs alone.
    # (A fresh cluster of two of its three servers did not elect a meta leader within 30 s here.)
    cluster = NatsCluster(tmp_path / "cluster")
    try:
        await cluster.nodes[0].start()
        connecting = asyncio.ensure_future(Bus.connect(cluster.url, settings.model_copy(update={"nats_replicas": 3})))
        await asyncio.sleep(1)  # connected to the one server, whose JetStream cannot answer without its peers
        assert not connecting.done()
        for node in cluster.nodes[1:]:
            await node.start()
        bus = await asyncio.wait_for(connecting, 30)
        try:
            assert (await bus.js.stream_info(EVENTS_STREAM)).config.num_replicas == 3
        finally:
            await bus.close()
    finally:
        await cluster.close()
