"""The fork server: replicas forked from a process that has imported kserve once.

The tests share a real fork server, as the local backend's deployments do (the test that kills one
has its own), fork real kserve model servers from it, and check what the local backend relies on:
the replica serves on the socket it was given (loopback only), its output comes through the pipes,
its exit code and the reason of a failed load come back, signals reach it, and it does not outlive
the fork server.
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
import pytest_asyncio
from models import IRIS_ROWS, train_iris_sklearn, train_iris_torchscript
from test_runtimes import listening_sockets

from zeroserve.serving.forkserver import TORCH, ForkedProcess, ForkServer
from zeroserve.serving.replica import OUTPUT_LINE_LIMIT, replica_environment

# The tests that use the module's fork server run in the module's event loop, where it was started.
in_module_loop = pytest.mark.asyncio(loop_scope="module")


async def started_fork_server() -> ForkServer:
    server = ForkServer(replica_environment([]), OUTPUT_LINE_LIMIT)
    await server.start()
    async with asyncio.timeout(60):
        await server.wait_ready()
    return server


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def forks() -> AsyncIterator[ForkServer]:
    """One fork server for the module: each test forks its own replicas from it and ends them."""
    server = await started_fork_server()
    yield server
    await server.close()


@pytest_asyncio.fixture(loop_scope="module")
async def own_forks() -> AsyncIterator[ForkServer]:
    """A fork server for one test alone (one it may kill)."""
    server = await started_fork_server()
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


@in_module_loop
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


@in_module_loop
async def test_a_model_that_cannot_load_exits_3_with_the_reason(forks: ForkServer, tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    process, _ = await fork_replica(forks, empty)
    async with asyncio.timeout(15):
        assert await process.wait() == 3
    assert (await process.stderr.read()).decode().startswith("ModelLoadFailed: no model.joblib")


@in_module_loop
async def test_replicas_do_not_outlive_their_fork_server(own_forks: ForkServer, tmp_path: Path) -> None:
    process, port = await fork_replica(own_forks, train_iris_sklearn(tmp_path / "iris"))
    await predict_when_ready(port, process)

    assert own_forks._process is not None
    os.kill(own_forks._process.pid, signal.SIGKILL)
    async with asyncio.timeout(15):
        await process.wait()  # the replica got its parent-death signal, and the backend hears of it
    assert not own_forks.ready
    with pytest.raises(ProcessLookupError):
        os.kill(process.pid, 0)


async def fork_with_ready_pipe(forks: ForkServer, model_dir: Path,
                               model_format: str = "sklearn") -> tuple[ForkedProcess, int]:
    """A replica forked as the local backend forks it: with the pipe it says "ready" on (its read end)."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(128)
    ready_r, ready_w = os.pipe()
    try:
        flags = ["--model-format", model_format, "--model-name", "iris", "--model-dir", str(model_dir)]
        process = await forks.spawn(flags, {}, listener.fileno(), ready_w)
    finally:
        listener.close()
        os.close(ready_w)
    return process, ready_r


def _port_of(process: ForkedProcess) -> int:
    [(_, port)] = listening_sockets(process.pid)
    return port


@in_module_loop
async def test_a_forked_replica_says_ready_once_it_serves_and_answers_at_once(forks: ForkServer, tmp_path: Path):
    process, ready_r = await fork_with_ready_pipe(forks, train_iris_sklearn(tmp_path / "iris"))
    try:
        said = await asyncio.wait_for(asyncio.to_thread(os.read, ready_r, 256), 30)
    finally:
        os.close(ready_r)
    assert said.startswith(b"ready ") and float(said.split()[1]) >= 0  # with its model's load time
    port = _port_of(process)
    async with httpx.AsyncClient() as http:  # no retry: "ready" means the socket serves the model now
        answer = await http.post(f"http://127.0.0.1:{port}/v1/models/iris:predict", json={"instances": IRIS_ROWS})
        metrics = await http.get(f"http://127.0.0.1:{port}/metrics")
    assert answer.json() == {"predictions": [1, 1]}
    assert "warm-up" not in metrics.text  # the app's warm-up in the fork server left no trace in the replica
    process.send_signal(signal.SIGTERM)
    async with asyncio.timeout(15):
        assert await process.wait() == 0


@in_module_loop
async def test_a_model_that_cannot_load_closes_the_ready_pipe_without_a_word(forks: ForkServer, tmp_path: Path) -> None:
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "model.joblib").write_bytes(b"this is not a model")
    process, ready_r = await fork_with_ready_pipe(forks, broken)
    try:
        said = await asyncio.wait_for(asyncio.to_thread(os.read, ready_r, 256), 30)
    finally:
        os.close(ready_r)
    assert said == b""
    async with asyncio.timeout(15):
        assert await process.wait() == 3
    assert (await process.stderr.read()).decode().startswith("ModelLoadFailed: cannot unpickle")


def _maps(pid: int) -> str:
    return Path(f"/proc/{pid}/maps").read_text()


@pytest.mark.slow
@in_module_loop
async def test_torch_replicas_fork_from_a_torch_fork_server_and_the_cpu_one_never_loads_torch(
        forks: ForkServer, tmp_path: Path) -> None:
    torch_forks = ForkServer(replica_environment([]), OUTPUT_LINE_LIMIT, profile=TORCH)
    await torch_forks.start()
    try:
        async with asyncio.timeout(60):
            await torch_forks.wait_ready()
        process, ready_r = await fork_with_ready_pipe(torch_forks, train_iris_torchscript(tmp_path / "iris"), "pytorch")
        try:
            said = await asyncio.wait_for(asyncio.to_thread(os.read, ready_r, 256), 30)
        finally:
            os.close(ready_r)
        assert said.startswith(b"ready "), (await process.stderr.read()).decode()
        async with httpx.AsyncClient() as http:
            answer = await http.post(f"http://127.0.0.1:{_port_of(process)}/v1/models/iris:predict",
                                     json={"instances": IRIS_ROWS})
        assert [row.index(max(row)) for row in answer.json()["predictions"]] == [1, 1]
        assert forks._process is not None and torch_forks._process is not None
        assert "libtorch_cpu" not in _maps(forks._process.pid)  # scikit-learn's forks never pay for torch
        assert "libtorch_cpu" in _maps(torch_forks._process.pid)
        process.send_signal(signal.SIGTERM)
        async with asyncio.timeout(15):
            assert await process.wait() == 0
    finally:
        await torch_forks.close()


def test_a_fork_server_that_mapped_nvidias_driver_forks_no_gpu_replica():
    from zeroserve.serving.forkserver import cuda_driver_loaded

    this_process = Path("/proc/self/maps").read_text()
    assert not cuda_driver_loaded(this_process)  # this machine's torch is the CPU build
    driver = "7f2a1c000000-7f2a1c200000 r-xp 00000000 08:01 1234 /usr/lib/x86_64-linux-gnu/libcuda.so.560.35.03\n"
    assert cuda_driver_loaded(this_process + driver)
