"""The fork server: replicas forked from a process that has imported kserve once.

Each test starts a real fork server and forks real kserve model servers from it, and checks what
the local backend relies on: the replica serves on the socket it was given (loopback only), its
output comes through the pipes, its exit code and the reason of a failed load come back, signals
reach it, and it does not outlive the fork server.
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from models import IRIS_ROWS, train_iris_sklearn
from test_runtimes import listening_sockets

from zeroserve.serving.forkserver import ForkedProcess, ForkServer
from zeroserve.serving.replica import OUTPUT_LINE_LIMIT, replica_environment


@pytest.fixture
async def forks() -> AsyncIterator[ForkServer]:
    server = ForkServer(replica_environment([]), OUTPUT_LINE_LIMIT)
    await server.start()
    async with asyncio.timeout(60):
        await server.wait_ready()
    yield server
    await server.close()


async def fork_replica(forks: ForkServer, model_dir: Path) -> tuple[ForkedProcess, int]:
    """A replica of the iris model forked on a fresh loopback socket, as the local backend does it."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(128)
    port = listener.getsockname()[1]
    try:
        process = await forks.spawn(
            ["--model-format", "sklearn", "--model-name", "iris", "--model-dir", str(model_dir)], {}, listener.fileno())
    finally:
        listener.close()  # the replica has its own copy now
    return process, port


async def predict_when_ready(port: int, process: ForkedProcess, timeout: float = 30) -> dict:
    async with httpx.AsyncClient() as http, asyncio.timeout(timeout):
        while True:
            assert process.returncode is None, f"the replica exited with {process.returncode}"
            try:
                response = await http.post(f"http://127.0.0.1:{port}/v1/models/iris:predict",
                                            json={"instances": IRIS_ROWS})
                return dict(response.json())
            except httpx.TransportError:
                await asyncio.sleep(0.01)


async def test_a_forked_replica_serves_on_loopback_and_stops_cleanly(forks: ForkServer, tmp_path: Path) -> None:
    process, port = await fork_replica(forks, train_iris_sklearn(tmp_path / "iris"))

    answer = await predict_when_ready(port, process)
    assert answer == {"predictions": [1, 1]}
    assert listening_sockets(process.pid) == {("127.0.0.1", port)}

    process.send_signal(signal.SIGTERM)
    async with asyncio.timeout(15):
        assert await process.wait() == 0
    output = (await process.stdout.read() + await process.stderr.read()).decode()
    assert "Serving model 'iris' on http://127.0.0.1:" in output  # its log lines reach the backend
    with pytest.raises(ProcessLookupError):
        process.send_signal(signal.SIGTERM)  # gone: never a signal to a pid someone else may have now


async def test_a_model_that_cannot_load_exits_3_with_the_reason(forks: ForkServer, tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    process, _ = await fork_replica(forks, empty)
    async with asyncio.timeout(15):
        assert await process.wait() == 3
    assert (await process.stderr.read()).decode().startswith("ModelLoadFailed: no model.joblib")


async def test_replicas_do_not_outlive_their_fork_server(forks: ForkServer, tmp_path: Path) -> None:
    process, port = await fork_replica(forks, train_iris_sklearn(tmp_path / "iris"))
    await predict_when_ready(port, process)

    assert forks._process is not None
    os.kill(forks._process.pid, signal.SIGKILL)
    async with asyncio.timeout(15):
        await process.wait()  # the replica got its parent-death signal, and the backend hears of it
    assert not forks.ready
    with pytest.raises(ProcessLookupError):
        os.kill(process.pid, 0)
