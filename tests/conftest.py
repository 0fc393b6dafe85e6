"""Shared fixtures: a real nats-server, settings in a temporary directory, zeroserve embedded."""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import json
import os
import shutil
import socket
import tempfile
import time
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import nats
import pytest

from zeroserve.core.nats_server import NatsServer
from zeroserve.node import Node
from zeroserve.settings import Settings

# Nothing in the tests reaches a model hub: models are made here or shipped in a package.
os.environ["HF_HUB_OFFLINE"] = "1"
# No test writes the user's own CLI profiles (~/.config/zeroserve): every `zeroserve up` records one, and a
# later `zeroserve` command would take another test's server for its own.
_CONFIG_HOME = tempfile.mkdtemp(prefix="zeroserve-tests-config-")
os.environ["XDG_CONFIG_HOME"] = _CONFIG_HOME
atexit.register(shutil.rmtree, _CONFIG_HOME, True)


async def until(condition: Callable[[], Any], timeout: float = 30, what: str = "the condition") -> Any:
    """Wait for a condition, sync or async, to hold (returns its value), failing after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if asyncio.iscoroutine(value):
            value = await value
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} did not hold within {timeout} s (last: {value!r})")
        await asyncio.sleep(0.05)


def free_port() -> int:
    """A loopback port nothing listens on now (for a server to start on, or a refused connection)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture
def cluster() -> Iterator[Any]:
    """kmock's Kubernetes emulator on loopback HTTP (tests/kube.py), for the kserve backend's tests."""
    from kube import Cluster

    emulator = Cluster().start()
    yield emulator
    emulator.close()


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(
        data_dir=tmp_path / "zeroserve",
        gateway_port=0,
        idle_window_s=60,
        retry_backoff_s=[0.05, 0.1, 0.2],
        max_deliver=3,
        gpus=[],
    )


def with_templates(settings: Settings, directory: Path, *extra: Path) -> Settings:
    """``settings`` with the shipped templates and the ``extra`` template files beside them, copied
    into ``directory`` (a file of the same name replaces the shipped one)."""
    shutil.copytree(settings.templates_dir, directory)
    for template in extra:
        shutil.copy(template, directory)
    settings.templates_dir = directory
    return settings


@pytest.fixture
async def nats_server(tmp_path: Path) -> AsyncIterator[NatsServer]:
    server = NatsServer(tmp_path / "nats")
    await server.start()
    yield server
    await server.stop()


@pytest.fixture
async def zeroserve(settings: Settings) -> AsyncIterator[Node]:
    async with Node(settings) as embedded:
        yield embedded


class Listener:
    """Every message on a subject pattern, as a user watching the bus would see them."""

    def __init__(self) -> None:
        self.messages: list[Any] = []
        self._arrived = asyncio.Event()

    async def handle(self, msg: Any) -> None:
        self.messages.append(msg)
        self._arrived.set()

    def json(self) -> list[dict[str, Any]]:
        return [json.loads(m.data) for m in self.messages if m.data]

    async def wait_for(
        self, predicate: Callable[[dict[str, Any]], bool], timeout: float = 30, since: int = 0
    ) -> dict[str, Any]:
        """The first message (from number ``since`` on) that matches, waiting up to ``timeout``."""
        deadline = time.monotonic() + timeout
        while True:
            for data in self.json()[since:]:
                if predicate(data):
                    return data
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(f"nothing matched within {timeout} s; seen: {self.json()}")
            self._arrived.clear()
            try:
                await asyncio.wait_for(self._arrived.wait(), remaining)
            except TimeoutError:
                pass


@pytest.fixture
async def listen() -> AsyncIterator[Callable[..., Any]]:
    """``await listen(zeroserve, "zeroserve.default.deployment.status")`` -> a Listener."""
    connections: dict[str, Any] = {}

    async def subscribe(embedded: Node, subject: str) -> Listener:
        assert embedded.nats_url is not None
        if embedded.nats_url not in connections:
            connections[embedded.nats_url] = await nats.connect(embedded.nats_url, allow_reconnect=False)
        nc = connections[embedded.nats_url]
        listener = Listener()
        await nc.subscribe(subject, cb=listener.handle)
        await nc.flush()
        return listener

    yield subscribe
    for nc in connections.values():
        await nc.close()


async def token_for(embedded: Node, groups: list[str]) -> str:
    """A bearer token for a new client of these groups, got the way a user gets one (POST /oauth/token)."""
    import httpx

    assert embedded.platform is not None
    client, secret = await embedded.platform.auth.create_client(groups)
    async with httpx.AsyncClient(base_url=embedded.url) as http:
        response = await http.post("/oauth/token", data={"grant_type": "client_credentials"},
                                   auth=(client.id, secret))
    response.raise_for_status()
    return str(response.json()["access_token"])


@pytest.fixture
async def api(zeroserve: Node) -> AsyncIterator[Any]:
    """An httpx client of the gateway with a token for every group (as the local operator has)."""
    import httpx

    token = await token_for(zeroserve, ["*"])
    async with httpx.AsyncClient(base_url=zeroserve.url, headers={"Authorization": f"Bearer {token}"},
                                 timeout=30) as http:
        yield http


@contextlib.asynccontextmanager
async def operator(embedded: Node, timeout: float = 60) -> AsyncIterator[Any]:
    """An httpx client with a token for every group, for tests that call the gateway by full URL."""
    import httpx

    token = await token_for(embedded, ["*"])
    async with httpx.AsyncClient(headers={"Authorization": f"Bearer {token}"}, timeout=timeout) as http:
        yield http
