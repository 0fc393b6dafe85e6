"""A replica: one KServe model-server process serving one version of a deployment on 127.0.0.1. It
is started on a loopback socket bound here and handed over (so it is never reachable from another
host), as a fork of the fork server when it can be, else as a new process with its GPUs in its
environment; either way with its plan's thread counts (``bounds.py``). Its output becomes the
deployment's log records; it is ready once it says so on its ready pipe (no polling), and stopped
with SIGTERM (SIGKILL after a grace). It records where its start went (spawned, model loaded,
ready) for the requests that waited for it, and why it ended if it broke its bounds.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import sys
import time
from collections import deque
from pathlib import Path

from zeroserve.deployments.logs import DeploymentLogs, output_records
from zeroserve.errors import (
    GpuOutOfMemory,
    ModelLoadFailed,
    NotReady,
    ReplicaKilled,
    ReplicaStartFailed,
    ZeroserveError,
)
from zeroserve.serving.bounds import ReplicaBounds
from zeroserve.serving.forkserver import ForkedProcess, ForkServer
from zeroserve.serving.gpus import GpuInventory
from zeroserve.serving.runtimes.faults import EXIT_GPU_OUT_OF_MEMORY
from zeroserve.serving.spec import ServiceSpec

LAST_LINES = 20
# Longest replica output line kept in a log record; longer ones are left out, never block the pipe.
OUTPUT_LINE_LIMIT = 1024 * 1024


def gpu_environment(gpus: list[int]) -> dict[str, str]:
    """What names a replica's GPUs to CUDA (none: "", it sees no GPU)."""
    # nvidia-smi numbers GPUs in PCI order; make CUDA agree, so the indices mean the same card.
    return {"CUDA_DEVICE_ORDER": "PCI_BUS_ID", "CUDA_VISIBLE_DEVICES": GpuInventory.cuda_visible_devices(gpus)}


def replica_environment(gpus: list[int]) -> dict[str, str]:
    """A replica's environment: this one, unbuffered, and the GPUs it may use (none: "")."""
    return {
        **os.environ,
        "PYTHONUNBUFFERED": "1",
        **gpu_environment(gpus),
        # A replica serves the artifact it was staged; the Hugging Face libraries never reach a hub
        # from it (the huggingface runtime loads with local_files_only besides), unless told to.
        "HF_HUB_OFFLINE": os.environ.get("HF_HUB_OFFLINE", "1"),
    }


class ReadySignal:
    """The first line a replica writes on its ready pipe (``ready <model load seconds>``), or b"" if
    the pipe closes first, read by the event loop when it comes: no thread, no poll."""

    def __init__(self, fd: int) -> None:
        self.fd: int | None = fd
        self.line: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()
        os.set_blocking(fd, False)
        asyncio.get_running_loop().add_reader(fd, self._readable)

    def _readable(self) -> None:
        assert self.fd is not None
        try:
            said = os.read(self.fd, 256)  # one short write: a pipe delivers it whole
        except BlockingIOError:
            return
        except OSError:
            said = b""
        if not self.line.done():
            self.line.set_result(said)
        self.close()

    @property
    def said(self) -> bytes:
        """What the replica said so far: b"" until it says something, or if it never will."""
        return self.line.result() if self.line.done() and not self.line.cancelled() else b""

    def close(self) -> None:
        if self.fd is not None:
            asyncio.get_running_loop().remove_reader(self.fd)
            os.close(self.fd)
            self.fd = None
        if not self.line.done():
            self.line.cancel()


class Replica:
    """One model-server process serving one version of a deployment."""

    def __init__(self, spec: ServiceSpec, number: int, model_dir: Path, gpus: list[int]) -> None:
        self.spec = spec
        self.number = number
        self.model_dir = model_dir
        self.gpus = gpus
        # Its plan's CPU and memory on this machine (the autoscaler's to set), and why it was ended
        # if it was for breaking them (the memory watch's verdict).
        self.bounds = ReplicaBounds()
        self.fault: ZeroserveError | None = None
        self.port = 0
        self.process: asyncio.subprocess.Process | ForkedProcess | None = None
        self.in_flight = 0
        self.last_used = time.monotonic()
        self.ready = False
        self.draining = False
        self.last_lines: deque[str] = deque(maxlen=LAST_LINES)
        self._readers: list[asyncio.Task[None]] = []
        self._said: ReadySignal | None = None
        # Where a start went (monotonic times): asked for, process running, answering ready; and the
        # model load time the replica reports itself. Shown to the requests that waited for it.
        self.asked_at = time.monotonic()
        self.spawned_at: float | None = None
        self.ready_at: float | None = None
        self.load_s: float | None = None
        self.start_reported = False

    @property
    def name(self) -> str:
        return f"replica-{self.number}"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def owner(self) -> str:
        """Who holds this replica's GPUs in the inventory."""
        return f"{self.spec.group}/{self.spec.id}/{self.number}"

    @property
    def exited(self) -> bool:
        # A replica not yet spawned counts as starting: it is already on its way.
        return self.process is not None and self.process.returncode is not None

    async def spawn(self, logs: DeploymentLogs, forks: ForkServer | None = None, access_log: bool = False) -> None:
        try:
            await self._spawn(logs, forks, access_log)
        except OSError as error:  # out of file descriptors, processes, memory: may pass
            raise ReplicaStartFailed(f"could not start a model-server process: {error}") from error

    async def _spawn(self, logs: DeploymentLogs, forks: ForkServer | None, access_log: bool) -> None:
        # The socket is bound here, on loopback, and inherited: no port race, no other address.
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.bind(("127.0.0.1", 0))
        listener.listen(1024)
        self.port = listener.getsockname()[1]
        # The replica says "ready" on this pipe once its socket serves: heard at once, never polled.
        ready_r, ready_w = os.pipe()
        flags = ["--model-format", self.spec.model_format, "--model-name", self.spec.id,
                 "--model-dir", str(self.model_dir), *(["--access-log"] if access_log else [])]
        try:
            if forks is not None and forks.ready and (not self.gpus or forks.gpu_forks):
                # A fork of a process that has imported kserve and built its app already: a few tens
                # of ms instead of ~1.5 s. A GPU replica forks only from a server that never loaded
                # NVIDIA's driver; its GPUs are in its environment before anything in it touches CUDA.
                env = {**self.bounds.environment(), **(gpu_environment(self.gpus) if self.gpus else {})}
                self.process = await forks.spawn(flags, env, listener.fileno(), ready_w, gpus=bool(self.gpus))
                return
            self.process = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "zeroserve.serving.runtimes.server", *flags,
                "--listen-fd", str(listener.fileno()),
                "--ready-fd", str(ready_w),
                "--parent-pid", str(os.getpid()),  # the replica exits if this process is gone
                pass_fds=(listener.fileno(), ready_w),
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
                env={**replica_environment(self.gpus), **self.bounds.environment()},
                # Its own session: a Ctrl-C in the terminal reaches zeroserve, which drains replicas in order.
                start_new_session=True,
                limit=OUTPUT_LINE_LIMIT,
            )
        finally:
            listener.close()
            os.close(ready_w)  # the replica's copy is the only writer left: its exit ends the pipe
            if self.process is not None:
                self.spawned_at = time.monotonic()
                self._said = ReadySignal(ready_r)
                self._follow_output(logs)
            else:
                os.close(ready_r)

    def _follow_output(self, logs: DeploymentLogs) -> None:
        assert self.process is not None and self.process.stdout is not None and self.process.stderr is not None
        self._readers = [
            asyncio.create_task(self._read(self.process.stdout, "stdout", logs)),
            asyncio.create_task(self._read(self.process.stderr, "stderr", logs)),
        ]

    async def _read(self, stream: asyncio.StreamReader, name: str, logs: DeploymentLogs) -> None:
        async for record in output_records(stream):
            self.last_lines.extend(record.splitlines()[-LAST_LINES:])
            await logs.write(self.spec.group, self.spec.id, self.name, name, record)  # type: ignore[arg-type]

    async def wait_ready(self, timeout: float) -> None:
        """Return once the replica says its model serves; raise ModelLoadFailed if the process dies first."""
        assert self.process is not None and self._said is not None
        deadline = time.monotonic() + timeout
        exited = asyncio.ensure_future(self.process.wait())
        try:
            await asyncio.wait((self._said.line, exited), timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
            said = self._said.said
            if said.startswith(b"ready"):
                self.ready = True
                self.last_used = self.ready_at = time.monotonic()
                with contextlib.suppress(ValueError, IndexError):
                    self.load_s = float(said.split()[1])
                return
            if self._said.line.done() and not exited.done():
                # The pipe closed without a word: the replica is on its way out; its exit says why.
                await asyncio.wait((exited,), timeout=max(deadline - time.monotonic(), 2.0))
        finally:
            exited.cancel()
        if self.exited:
            await self.drain_output()
            fault = self.exit_fault()
            if fault is not None:
                raise fault
            assert self.process.returncode is not None
            code = self.process.returncode
            if code < 0:  # killed (by someone, the OOM killer): not the model's own verdict
                raise ReplicaKilled(self.with_last_lines(f"replica was killed by signal {-code} before ready"))
            raise ModelLoadFailed(self.with_last_lines(f"replica exited with code {code} before it was ready"))
        raise NotReady(self.with_last_lines(f"replica was not ready within {timeout:g} s"))

    def exit_fault(self) -> ZeroserveError | None:
        """Why the replica ended, if it broke its bounds: past its plan's memory (the watch's
        verdict), or out of GPU memory (its exit code says so); None for any other end."""
        if self.fault is None and self.process is not None and self.process.returncode == EXIT_GPU_OUT_OF_MEMORY:
            self.fault = GpuOutOfMemory(self.with_last_lines(f"{self.name} ran out of GPU memory"))
        return self.fault

    def with_last_lines(self, message: str) -> str:
        """``message``, followed by the replica's last lines of output if it wrote any."""
        return message + "; last lines:\n" + "\n".join(self.last_lines) if self.last_lines else message

    async def drain_output(self) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.gather(*self._readers, return_exceptions=True), 2.0)

    async def terminate(self, grace: float = 5.0) -> None:
        self.ready = False
        if self.process is not None and self.process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                self.process.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(self.process.wait(), grace)
            except TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    self.process.kill()
                await self.process.wait()
        await self.drain_output()
        for reader in self._readers:
            reader.cancel()
        if self._said is not None:
            self._said.close()
