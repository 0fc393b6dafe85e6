"""A replica: one KServe model-server process serving one version of a deployment on 127.0.0.1. It
is started on a loopback socket bound here and handed over (so it is never reachable from another
host), as a fork of the fork server when it can be, else as a new process with its GPUs in its
environment; its output becomes the deployment's log records; it is ready once the model answers
ready, and stopped with SIGTERM (SIGKILL after a grace). It records where its start went (spawned,
model loaded, ready) for the requests that waited for it.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import signal
import socket
import sys
import time
from collections import deque
from pathlib import Path

import httpx

from zeroserve.deployments.logs import DeploymentLogs, output_records
from zeroserve.errors import ModelLoadFailed, NotReady, ReplicaKilled, ReplicaStartFailed
from zeroserve.serving.forkserver import ForkedProcess, ForkServer
from zeroserve.serving.gpus import GpuInventory
from zeroserve.serving.spec import ServiceSpec

# The line a replica prints once its model is loaded (zeroserve.serving.runtimes.server), with the time it took.
LOADED = re.compile(r"Loaded \S+ model .* in ([0-9.]+) s")
LAST_LINES = 20
# Longest replica output line kept in a log record; longer ones are left out, never block the pipe.
OUTPUT_LINE_LIMIT = 1024 * 1024


def replica_environment(gpus: list[int]) -> dict[str, str]:
    """A replica's environment: this one, unbuffered, and the GPUs it may use (none: "")."""
    return {
        **os.environ,
        "PYTHONUNBUFFERED": "1",
        # nvidia-smi numbers GPUs in PCI order; make CUDA agree, so the indices mean the same card.
        "CUDA_DEVICE_ORDER": "PCI_BUS_ID",
        "CUDA_VISIBLE_DEVICES": GpuInventory.cuda_visible_devices(gpus),
    }


class Replica:
    """One model-server process serving one version of a deployment."""

    def __init__(self, spec: ServiceSpec, number: int, model_dir: Path, gpus: list[int]) -> None:
        self.spec = spec
        self.number = number
        self.model_dir = model_dir
        self.gpus = gpus
        self.port = 0
        self.process: asyncio.subprocess.Process | ForkedProcess | None = None
        self.in_flight = 0
        self.last_used = time.monotonic()
        self.ready = False
        self.draining = False
        self.last_lines: deque[str] = deque(maxlen=LAST_LINES)
        self._readers: list[asyncio.Task[None]] = []
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
        flags = ["--model-format", self.spec.model_format, "--model-name", self.spec.id,
                 "--model-dir", str(self.model_dir), *(["--access-log"] if access_log else [])]
        try:
            if forks is not None and forks.ready and not self.gpus:
                # A fork of a process that has imported kserve already: ~0.1 s instead of ~1.5 s.
                # (A GPU replica is spawned: its CUDA_VISIBLE_DEVICES must be in its environment
                # from the start, and the fork server's says "no GPU".)
                self.process = await forks.spawn(flags, {}, listener.fileno())
                return
            self.process = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "zeroserve.serving.runtimes.server", *flags,
                "--listen-fd", str(listener.fileno()),
                "--parent-pid", str(os.getpid()),  # the replica exits if this process is gone
                pass_fds=(listener.fileno(),),
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
                env=replica_environment(self.gpus),
                # Its own session: a Ctrl-C in the terminal reaches zeroserve, which drains replicas in order.
                start_new_session=True,
                limit=OUTPUT_LINE_LIMIT,
            )
        finally:
            listener.close()
            if self.process is not None:
                self.spawned_at = time.monotonic()
                self._follow_output(logs)

    def _follow_output(self, logs: DeploymentLogs) -> None:
        assert self.process is not None and self.process.stdout is not None and self.process.stderr is not None
        self._readers = [
            asyncio.create_task(self._read(self.process.stdout, "stdout", logs)),
            asyncio.create_task(self._read(self.process.stderr, "stderr", logs)),
        ]

    async def _read(self, stream: asyncio.StreamReader, name: str, logs: DeploymentLogs) -> None:
        async for record in output_records(stream):
            self.last_lines.extend(record.splitlines()[-LAST_LINES:])
            loaded = LOADED.search(record) if self.load_s is None else None
            if loaded:
                self.load_s = float(loaded.group(1))
            await logs.write(self.spec.group, self.spec.id, self.name, name, record)  # type: ignore[arg-type]

    async def wait_ready(self, client: httpx.AsyncClient, timeout: float) -> None:
        """Return once the model answers ready; raise ModelLoadFailed if the process dies first."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.exited:
                await self.drain_output()
                assert self.process is not None and self.process.returncode is not None
                code = self.process.returncode
                if code < 0:  # killed (by someone, the OOM killer): not the model's own verdict
                    raise ReplicaKilled(self.with_last_lines(f"replica was killed by signal {-code} before ready"))
                raise ModelLoadFailed(self.with_last_lines(f"replica exited with code {code} before it was ready"))
            with contextlib.suppress(httpx.TransportError):
                response = await client.get(f"{self.url}/v2/health/ready", timeout=1.0)
                if response.status_code == 200:
                    self.ready = True
                    self.last_used = self.ready_at = time.monotonic()
                    return
            await asyncio.sleep(0.02)
        raise NotReady(self.with_last_lines(f"replica was not ready within {timeout:g} s"))

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
