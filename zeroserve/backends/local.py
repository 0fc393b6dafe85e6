"""The local backend: each deployment's replicas as KServe model-server processes on this machine.

It reads the same InferenceService object the kserve backend sends to a cluster, and runs what
that object asks for as Knative would: no process until the first request (the activator holds
that request, starts a replica, waits until it is ready, then lets it through), more replicas
while requests pile up past the concurrency target, idle replicas stopped after the idle window
down to ``minReplicas``. A replica listens on a socket this process binds on 127.0.0.1 and
hands over, so it is never reachable from another host. What it cannot run, it refuses with a
reason: an unknown model format, missing files, a GPU plan on a machine without GPUs.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import logging
import os
import re
import signal
import socket
import sys
import time
from collections import deque
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from zeroserve.artifacts.cache import ModelCache
from zeroserve.backends.base import Change
from zeroserve.deployments.logs import DeploymentLogs, output_records
from zeroserve.errors import (
    InvalidConfiguration,
    ModelLoadFailed,
    NoGPU,
    NotReady,
    Overloaded,
    ReplicaKilled,
    ReplicaStartFailed,
    Unschedulable,
    ZeroserveError,
)
from zeroserve.serving.forkserver import ForkedProcess, ForkServer
from zeroserve.serving.gpus import GpuInventory
from zeroserve.serving.runtimes import RUNTIMES
from zeroserve.settings import Settings

log = logging.getLogger(__name__)

# The line a replica prints once its model is loaded (zeroserve.serving.runtimes.server), with the time it took.
LOADED = re.compile(r"Loaded \S+ model .* in ([0-9.]+) s")
LAST_LINES = 20
# After a failed start that may pass, how long until the next try.
START_RETRY_S = 1.0
# Longest replica output line kept in a log record; longer ones are left out, never block the pipe.
OUTPUT_LINE_LIMIT = 1024 * 1024


@dataclass(frozen=True)
class ServiceSpec:
    """What the local backend reads of an InferenceService."""

    group: str
    id: str
    model_format: str
    storage_uri: str
    min_replicas: int
    max_replicas: int
    target_concurrency: int
    gpus: int

    @classmethod
    def from_inference_service(cls, isvc: dict[str, Any]) -> ServiceSpec:
        try:
            metadata, predictor = isvc["metadata"], isvc["spec"]["predictor"]
            model = predictor["model"]
            limits = (model.get("resources") or {}).get("limits") or {}
            min_replicas = int(predictor.get("minReplicas", 0))
            max_replicas = max(int(predictor.get("maxReplicas", 1)), min_replicas, 1)
            return cls(
                group=metadata["namespace"],
                id=metadata["name"],
                model_format=model["modelFormat"]["name"].lower(),
                storage_uri=model["storageUri"],
                min_replicas=min_replicas,
                max_replicas=max_replicas,
                target_concurrency=max(int(predictor.get("scaleTarget", 1)), 1),
                gpus=int(limits.get("nvidia.com/gpu", 0)),
            )
        except (KeyError, TypeError, ValueError) as error:
            raise InvalidConfiguration(f"the local backend cannot read this InferenceService: {error!r}") from error


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


@dataclass(eq=False)  # compared and hashed by identity: it is kept in sets
class Service:
    """One deployment on this machine: its spec, its replicas, the requests waiting for one."""

    spec: ServiceSpec
    model_dir: Path
    replicas: list[Replica] = field(default_factory=list)
    waiting: int = 0
    # Set when the model cannot load: every request fails at once with it (the deployment is DEAD).
    failure: ZeroserveError | None = None
    # After a start failed for a reason that may pass (slow, out of processes): no new try before.
    retry_at: float = 0.0
    last_error: ZeroserveError | None = None
    # Starts in a row that never got ready (timed out, or killed), and when the last one was counted.
    never_ready: int = 0
    counted_at: float = 0.0
    stopped: bool = False
    changed: asyncio.Condition = field(default_factory=asyncio.Condition)

    @property
    def serving(self) -> list[Replica]:
        return [r for r in self.replicas if r.ready and not r.draining and not r.exited]

    @property
    def starting(self) -> list[Replica]:
        return [r for r in self.replicas if not r.ready and not r.exited]

    @property
    def running(self) -> int:
        return len([r for r in self.replicas if r.ready and not r.exited])

    async def notify(self) -> None:
        async with self.changed:
            self.changed.notify_all()


@dataclass
class Lease:
    """A request's hold on a replica, from the activator to the end of the response."""

    replica: Replica
    cold: bool
    waited_s: float
    arrived_at: float = 0.0

    def phases(self) -> dict[str, float]:
        """A cold start's time by phase, in seconds: waiting before the replica's start began
        (queued), starting its process (replica start), loading the model (model load, as the
        replica measured it), and until it answered ready (ready); empty for a warm request."""
        replica = self.replica
        if not self.cold or replica.spawned_at is None or replica.ready_at is None:
            return {}
        load = min(replica.load_s or 0.0, replica.ready_at - replica.spawned_at)
        return {
            "queued": max(0.0, replica.asked_at - self.arrived_at),
            "replica-start": replica.spawned_at - max(replica.asked_at, self.arrived_at),
            "model-load": load,
            "ready": replica.ready_at - replica.spawned_at - load,
        }


class LocalBackend:
    """Runs InferenceServices as local model-server processes that scale to and from zero."""

    def __init__(
        self, settings: Settings, models: ModelCache, logs: DeploymentLogs, gpus: GpuInventory | None = None
    ) -> None:
        self.settings = settings
        self.models = models
        self.logs = logs
        self.gpus = gpus if gpus is not None else (
            GpuInventory(settings.gpus) if settings.gpus is not None else GpuInventory.detect()
        )
        self.services: dict[tuple[str, str], Service] = {}
        self._changes: asyncio.Queue[Change] = asyncio.Queue()
        self._numbers = 0
        self._client = httpx.AsyncClient(trust_env=False)
        self._reaper: asyncio.Task[None] | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        # Versions being drained after an update, and new versions not yet live: close() stops them too.
        self._retired: set[Service] = set()
        # CPU replicas are forks of a process with kserve imported (settings.fork_server), started
        # with the first deployment; until it is ready, and for GPU replicas, they are spawned.
        self.forks: ForkServer | None = None

    # -- the Backend protocol ------------------------------------------------------------------

    async def apply(self, isvc: dict[str, Any]) -> bool:
        spec = ServiceSpec.from_inference_service(isvc)
        if spec.model_format not in RUNTIMES:
            known = ", ".join(sorted(RUNTIMES))
            raise ModelLoadFailed(f"no local runtime for model format {spec.model_format!r} (known: {known})")
        if spec.gpus > self.gpus.total:
            raise NoGPU(
                f"the resource plan asks for {spec.gpus} GPU(s) per replica and this machine has "
                f"{self.gpus.total}: use a CPU plan (starter, basic, basic.8x) or run on a GPU node"
            )
        model_dir = await self.models.stage(spec.storage_uri, group=spec.group)
        if not any(p for p in model_dir.iterdir() if not p.name.startswith(".")):
            raise ModelLoadFailed(f"no model files at {spec.storage_uri}")
        self._start_reaper()
        if self.settings.fork_server and self.forks is None:
            self.forks = ForkServer(replica_environment([]), OUTPUT_LINE_LIMIT)
            try:
                await self.forks.start()
            except OSError as error:  # replicas are spawned then, as without it
                log.warning("no fork server (%s): replicas start as new processes", error)

        key = (spec.group, spec.id)
        old = self.services.get(key)
        if old is not None and not old.stopped and old.failure is None and (old.spec, old.model_dir) == (
            spec, model_dir
        ):
            return True  # the same request again: nothing to change
        replacement = Service(spec=spec, model_dir=model_dir)
        if old is None or old.stopped:
            self.services[key] = replacement
            await self._ensure_replicas(replacement, spec.min_replicas)
            return True

        # Update in place, as Knative rolls out a revision: a replica of the new version must load
        # and answer ready before it takes over (a version that cannot load is refused here, not
        # found out by the next request); the old version serves until then.
        self._retired.add(replacement)  # reachable by close() while it is not yet the live one
        try:
            await self._ensure_replicas(replacement, max(spec.min_replicas, 1))
        except BaseException:
            await self._stop_service(replacement)
            raise
        finally:
            self._retired.discard(replacement)
        self.services[key] = replacement
        old.stopped = True
        for replica in old.replicas:
            replica.draining = True
        await old.notify()  # requests waiting on the old version move to the new one
        self._retired.add(old)
        self._spawn(self._drain(old))
        self._report(replacement)
        return True

    async def stop(self, group: str, id: str) -> None:
        service = self.services.get((group, id))
        if service is not None:
            await self._stop_service(service)

    async def _stop_service(self, service: Service) -> None:
        service.stopped = True
        await service.notify()
        await asyncio.gather(*(self._stop_replica(service, r) for r in list(service.replicas)))

    async def delete(self, group: str, id: str) -> None:
        await self.stop(group, id)
        self.services.pop((group, id), None)

    async def watch(self) -> AsyncIterator[Change]:
        while True:
            yield await self._changes.get()

    async def close(self) -> None:
        if self._reaper is not None:
            self._reaper.cancel()
        for service in [*self.services.values(), *self._retired]:
            await self._stop_service(service)
        for task in list(self._tasks):
            task.cancel()
        if self.forks is not None:  # after the replicas: their exits come through it
            await self.forks.close()
        await self._client.aclose()

    async def scale_to_zero(self, group: str, id: str) -> None:
        """Stop every replica of a deployment now, as the idle window would (benchmarks, admins)."""
        service = self.services.get((group, id))
        if service is not None:
            await asyncio.gather(*(self._stop_replica(service, r) for r in list(service.replicas)))

    # -- the activator ----------------------------------------------------------------------------

    def service(self, group: str, id: str) -> Service | None:
        return self.services.get((group, id))

    @contextlib.asynccontextmanager
    async def lease(self, group: str, id: str) -> AsyncIterator[Lease]:
        """Hold a replica for one request: scale from zero or up if needed, bounded in queue and time."""
        started = time.monotonic()
        deadline = started + self.settings.replica_ready_timeout_s
        cold = False
        while True:
            service = self.services.get((group, id))
            if service is None:
                raise Unschedulable(f"deployment {id} is not deployed here")
            if service.failure is not None:  # a new exception each time: one shared would collect frames
                raise type(service.failure)(service.failure.message, reason=service.failure.reason)
            if service.stopped:
                raise Unschedulable(f"deployment {id} is stopped")
            replica = min(service.serving, key=lambda r: r.in_flight, default=None)
            if replica is not None and replica.in_flight < service.spec.target_concurrency:
                break
            may_start = time.monotonic() >= service.retry_at
            if may_start and not service.starting and len(service.serving) < service.spec.max_replicas:
                if not self._start_in_background(service) and replica is None:
                    raise Unschedulable(f"no replica of {id} can start: {service.spec.gpus} GPU(s) needed, "
                                        f"{self.gpus.free} free")
            if replica is not None:  # at the target everywhere and no room to grow: share
                break
            if service.waiting >= self.settings.activator_queue_limit:
                raise Overloaded(f"{service.waiting} requests already wait for a replica of {id}")
            cold = True
            service.waiting += 1
            # Wake on a change, or when a start may be tried again, or give up at the deadline.
            wake_at = deadline if may_start else min(deadline, service.retry_at)
            try:
                async with service.changed:
                    await asyncio.wait_for(service.changed.wait(), max(wake_at - time.monotonic(), 0))
            except TimeoutError:
                if time.monotonic() >= deadline:
                    raise NotReady(f"no replica of {id} was ready within "
                                   f"{self.settings.replica_ready_timeout_s:g} s") from None
            finally:
                service.waiting -= 1
        replica.in_flight += 1
        try:
            yield Lease(replica=replica, cold=cold, waited_s=time.monotonic() - started, arrived_at=started)
        finally:
            replica.in_flight -= 1
            replica.last_used = time.monotonic()

    # -- replicas -------------------------------------------------------------------------------

    def _add_replica(self, service: Service) -> Replica | None:
        """A new replica in the service's list at once (no await), so that concurrent requests count it."""
        spec = service.spec
        self._numbers += 1
        replica = Replica(spec, self._numbers, service.model_dir, [])
        try:
            replica.gpus = self.gpus.allocate(replica.owner, spec.gpus)
        except Unschedulable as error:
            self._spawn(self.logs.control(spec.group, spec.id, f"cannot start a replica: {error.message}"))
            return None
        service.replicas.append(replica)
        return replica

    def _start_in_background(self, service: Service) -> bool:
        replica = self._add_replica(service)
        if replica is not None:
            self._spawn(self._run_replica(service, replica))
        return replica is not None

    async def _start_replica(self, service: Service) -> Replica | None:
        replica = self._add_replica(service)
        return await self._run_replica(service, replica) if replica is not None else None

    async def _run_replica(self, service: Service, replica: Replica) -> Replica | None:
        spec = service.spec
        try:
            await replica.spawn(self.logs, self.forks, self.settings.replica_access_log)
            if replica.draining:  # stopped (update, stop) before it even started
                raise NotReady("stopped while starting")
            await self.logs.control(spec.group, spec.id, f"{replica.name} starting on 127.0.0.1:{replica.port}")
            await replica.wait_ready(self._client, self.settings.replica_ready_timeout_s)
        except BaseException as error:
            # Whatever went wrong (the model, the spawn itself, a cancel), the replica must not stay
            # listed as starting: that would hold every later request until its deadline.
            await replica.terminate()
            self._forget(service, replica)
            await service.notify()
            if not isinstance(error, ZeroserveError):
                raise
            await self._replica_failed(service, replica, error)
            return None
        service.never_ready = 0
        await self.logs.control(spec.group, spec.id, f"{replica.name} ready")
        self._spawn(self._supervise(service, replica))
        await service.notify()
        self._report(service)
        return replica

    async def _replica_failed(self, service: Service, replica: Replica, error: ZeroserveError) -> None:
        spec = service.spec
        if replica.draining or service.stopped:
            return  # stopped on purpose while it started (an update, a stop): no failure
        service.last_error = error
        # Starts that never got ready: one per round (replicas started together fail together), and
        # not a spawn that failed for want of processes (the machine's trouble, not this version's).
        counts = isinstance(error, NotReady | ReplicaKilled) and replica.asked_at >= service.counted_at
        if counts and not service.serving:
            service.never_ready += 1
            service.counted_at = time.monotonic()
            if service.never_ready >= self.settings.replica_start_attempts:
                # Knative's progress deadline, in small: a version that never gets a replica ready is
                # failed, not retried by every request forever (each would wait out its deadline).
                why = (f"within {self.settings.replica_ready_timeout_s:g} s" if isinstance(error, NotReady)
                       else "(the last was killed by a signal)")
                error = ModelLoadFailed(
                    replica.with_last_lines(f"no replica became ready {why}, {service.never_ready} starts in a row"),
                    reason="ReplicaNeverReady")
        if service.serving or not isinstance(error, ModelLoadFailed):
            # Others serve (a scale-up failed), or the cause may pass (slow start, no processes
            # left): this start failed, the deployment lives; the next try waits a moment.
            service.retry_at = time.monotonic() + START_RETRY_S
            await self.logs.control(spec.group, spec.id, f"{replica.name} failed to start: {error}")
            await service.notify()
            return
        service.failure = error
        await service.notify()
        # A new version that fails is the caller's to refuse; only the live one's failure is news.
        if self.services.get((spec.group, spec.id)) is service:
            self._changes.put_nowait(Change(spec.group, spec.id, failure=error))

    def _forget(self, service: Service, replica: Replica) -> bool:
        self.gpus.release(replica.owner)
        if replica in service.replicas:
            service.replicas.remove(replica)
            return True
        return False

    async def _supervise(self, service: Service, replica: Replica) -> None:
        """Notice a replica that exits on its own, and forget it."""
        assert replica.process is not None
        await replica.process.wait()
        await replica.drain_output()
        if self._forget(service, replica):
            live = not replica.draining and not service.stopped
            if live:
                await self.logs.control(service.spec.group, service.spec.id,
                                        f"{replica.name} exited with code {replica.process.returncode}")
            await service.notify()
            self._report(service)
            if live and len(service.serving) + len(service.starting) < service.spec.min_replicas:
                self._start_in_background(service)  # minReplicas is a promise: keep it

    async def _stop_replica(self, service: Service, replica: Replica) -> None:
        replica.draining = True
        await replica.terminate()
        if self._forget(service, replica):
            self._report(service)

    async def _drain(self, service: Service) -> None:
        """Stop an old version's replicas once the requests they hold are done."""
        deadline = time.monotonic() + self.settings.request_timeout_s
        try:
            # Polled: a request's end is not an event anyone waits on elsewhere, and drains are rare.
            while any(r.in_flight for r in service.replicas) and time.monotonic() < deadline:  # noqa: ASYNC110
                await asyncio.sleep(0.05)
            await asyncio.gather(*(self._stop_replica(service, r) for r in list(service.replicas)))
        finally:
            self._retired.discard(service)

    async def _ensure_replicas(self, service: Service, count: int) -> None:
        """Start replicas until ``count`` serve or start; raise what kept one from starting."""
        missing = count - len(service.serving) - len(service.starting)
        if missing <= 0:
            return
        started = await asyncio.gather(*(self._start_replica(service) for _ in range(missing)))
        if service.failure is not None:
            raise service.failure
        if None in started:
            if service.last_error is not None:
                raise service.last_error
            raise Unschedulable(f"could not start {count} replica(s) of {service.spec.id}: "
                                f"{service.spec.gpus} GPU(s) each, {self.gpus.free} free")

    def _report(self, service: Service) -> None:
        if not service.stopped:
            self._changes.put_nowait(Change(service.spec.group, service.spec.id, running_replicas=service.running))

    # -- scale down -------------------------------------------------------------------------------

    def _start_reaper(self) -> None:
        if self._reaper is None or self._reaper.done():
            self._reaper = asyncio.create_task(self._reap(), name="local-backend-reaper", context=contextvars.Context())

    async def _reap(self) -> None:
        interval = min(1.0, max(self.settings.idle_window_s / 4, 0.05))
        while True:
            await asyncio.sleep(interval)
            now = time.monotonic()
            for service in list(self.services.values()):
                if service.stopped or service.waiting:
                    continue
                idle = [r for r in service.serving
                        if r.in_flight == 0 and now - r.last_used >= self.settings.idle_window_s]
                room = len(service.serving) - service.spec.min_replicas
                chosen = idle[:max(room, 0)]
                for replica in chosen:  # all marked before any await: no request may lease them now
                    replica.draining = True
                for replica in chosen:
                    await self.logs.control(service.spec.group, service.spec.id,
                                            f"{replica.name} idle for {self.settings.idle_window_s:g} s: stopping")
                    await self._stop_replica(service, replica)

    def _spawn(self, coroutine: Any) -> None:
        # A context of its own: the task outlives the event whose handler may have started it.
        task = asyncio.create_task(coroutine, context=contextvars.Context())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
