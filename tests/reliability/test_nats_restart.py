"""kill -9 of nats-server, and a restart, while events are in flight: zeroserve reconnects, every
event is handled once (nothing lost, nothing applied twice), and no status is announced twice."""

from __future__ import annotations

import asyncio
import contextlib

import nats
import pytest
from conftest import free_port, until
from models import train_iris_sklearn
from stream import Publisher, dead_letters, status_history, unhandled

from zeroserve.core.nats_server import NatsServer
from zeroserve.events import ArtifactCreated, DeploymentRequested, Status
from zeroserve.node import Node

pytestmark = pytest.mark.slow

DEPLOYMENTS = 30


async def test_a_nats_server_killed_and_restarted_with_events_in_flight_loses_none_and_doubles_none(
        settings, tmp_path):
    # A port of its own: the restarted server must come back where zeroserve reconnects to.
    server = NatsServer(tmp_path / "nats", port=free_port())
    url: str | None = await server.start()
    settings.nats_url = url
    # An event whose acknowledgement the kill lost comes back after this (default 30 s).
    settings.ack_wait_s = 3
    publisher = Publisher(lambda: url)
    model_dir = train_iris_sklearn(settings.data_dir / "sources" / "iris")
    try:
        async with Node(settings) as zeroserve:
            await publisher.publish("default", ArtifactCreated(id="iris-model", name="iris", url=model_dir.as_uri()))

            async def publish_all() -> None:
                for number in range(DEPLOYMENTS):
                    await publisher.publish("default", DeploymentRequested(
                        id=f"dep-{number:02}", executable_id="sklearn", input_artifacts={"model": "iris-model"}))

            publishing = asyncio.create_task(publish_all())
            await until(lambda: publisher.sent >= DEPLOYMENTS // 3, what="a third of the events sent")
            assert server._process is not None
            server._process.kill()  # kill -9: no goodbye to its clients, JetStream as it was on disk
            await server._process.wait()
            url = None
            await asyncio.sleep(1.5)  # zeroserve's fetches and publishes fail meanwhile
            url = await server.start()
            await asyncio.wait_for(publishing, 60)

            async def all_running() -> bool:
                deployments = await zeroserve.platform.store.deployments.list("default")
                return len(deployments) == DEPLOYMENTS and all(d.status == Status.RUNNING for d in deployments)

            await until(all_running, timeout=60, what=f"{DEPLOYMENTS} deployments RUNNING")

            nc = await nats.connect(url)
            try:
                js = nc.jetstream()

                async def all_handled() -> bool:
                    return not await unhandled(js)

                await until(all_handled, timeout=30, what="every event handled")
                assert await dead_letters(js) == []
                history = await status_history(js)
            finally:
                await nc.close()
            # Each deployment announced once each step: a handler that ran again, or an event
            # delivered twice, would announce a step again.
            assert {id: statuses for id, statuses in history.items()
                    if statuses != [Status.UNKNOWN, Status.PENDING, Status.RUNNING]} == {}
            assert len(history) == DEPLOYMENTS
            print(f"\nnats restart: {publisher.sent} events sent ({publisher.resent} sent again after the kill), "
                  f"{DEPLOYMENTS} deployments RUNNING, 0 lost, 0 doubled")
    finally:
        await publisher.close()
        with contextlib.suppress(Exception):
            await server.stop()
