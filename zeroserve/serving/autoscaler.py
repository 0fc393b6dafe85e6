"""The autoscaler: how many replicas each deployment has on this machine, and their starts and
stops. It scales as Knative's would: one more replica when every serving one is at the concurrency
target (the activator asks for it, up to ``maxReplicas``), ``minReplicas`` always (kept when one
exits on its own), and a replica idle for the idle window stopped, down to ``minReplicas``; a
deployment whose idle window is ``learned`` has its last replica kept, stopped and pre-warmed as its
own idle times say (``idle_window.py``). It
starts each replica (its GPUs taken from the inventory, forked from the fork server when it can be,
held to its plan's CPU and memory: ``bounds.py``), follows it, and counts the starts that never get
ready: after ``replica_start_attempts`` in a row the version is failed (``ReplicaNeverReady``), as
Knative's progress deadline fails a revision. A replica past its plan's memory or out of GPU memory
fails the version at once (``MemoryLimitExceeded``, ``GpuOutOfMemory``), loading or serving. What
changes goes to the backend through ``report`` (a new replica count) and ``fail`` (a version that
cannot serve).
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import logging
import time
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

from zeroserve.deployments.logs import DeploymentLogs
from zeroserve.errors import (
    MemoryLimitExceeded,
    ModelLoadFailed,
    NotReady,
    ReplicaKilled,
    Unschedulable,
    ZeroserveError,
)
from zeroserve.serving.bounds import memory_passed
from zeroserve.serving.forkserver import TORCH, ForkServer
from zeroserve.serving.gpus import GpuInventory
from zeroserve.serving.idle_window import IdleTimes, Learning
from zeroserve.serving.replica import OUTPUT_LINE_LIMIT, Replica, replica_environment
from zeroserve.serving.runtimes import TORCH_FORMATS
from zeroserve.serving.service import Service
from zeroserve.settings import Settings
from zeroserve.templates.scaling import LEARNED

log = logging.getLogger(__name__)

# After a failed start that may pass, how long until the next try.
START_RETRY_S = 1.0


class Autoscaler:
    """Starts, follows and stops the replicas of the services in ``services``, within their bounds."""

    def __init__(
        self,
        settings: Settings,
        services: dict[tuple[str, str], Service],
        logs: DeploymentLogs,
        gpus: GpuInventory,
        report: Callable[[Service], None],
        fail: Callable[[Service, ZeroserveError], None],
    ) -> None:
        self.settings = settings
        self.services = services  # the live version of each deployment, shared with the backend
        self.logs = logs
        self.gpus = gpus
        self.report = report
        self.fail = fail
        # CPU replicas are forks of a process with kserve imported (settings.fork_server), started
        # with the first deployment; until it is ready, and for GPU replicas, they are spawned.
        self.forks: ForkServer | None = None
        # Those of torch's family fork from one with torch imported too, started with the first of
        # them: seconds and 537 MB that a machine serving only scikit-learn never pays.
        self.torch_forks: ForkServer | None = None
        self._numbers = 0
        self._reaper: asyncio.Task[None] | None = None
        # The services that have a replica (starting, serving or on its way out): what the reaper looks at.
        self._replicated: set[Service] = set()
        self._tasks: set[asyncio.Task[Any]] = set()
        # Called before each replica starts (the backend: the model back in the cache if it went).
        self.before_start: Callable[[Service], Awaitable[None]] | None = None
        # The clock of idle times (a test may drive it), and the idle times of each deployment whose
        # window is learned: only theirs, so a fleet of fixed ones pays nothing for the option.
        self.clock: Callable[[], float] = time.monotonic
        self.learning = Learning()
        self.idle_times: dict[tuple[str, str], IdleTimes] = {}

    async def start(self, model_format: str = "") -> None:
        """Begin to stop idle replicas, and start the fork servers (settings.fork_server): the CPU one
        with the first deployment, the torch one with the first of ``TORCH_FORMATS``."""
        if self._reaper is None or self._reaper.done():
            self._reaper = asyncio.create_task(self._reap(), name="local-backend-reaper", context=contextvars.Context())
        if not self.settings.fork_server:
            return
        if self.forks is None:
            self.forks = await self._start_fork_server(ForkServer(replica_environment([]), OUTPUT_LINE_LIMIT))
        if model_format in TORCH_FORMATS and self.torch_forks is None:
            self.torch_forks = await self._start_fork_server(
                ForkServer(replica_environment([]), OUTPUT_LINE_LIMIT, profile=TORCH))

    @staticmethod
    async def _start_fork_server(forks: ForkServer) -> ForkServer:
        try:
            await forks.start()
        except OSError as error:  # replicas are spawned then, as without it
            log.warning("no %s fork server (%s): replicas start as new processes", forks.profile, error)
        return forks

    def fork_server(self, model_format: str) -> ForkServer | None:
        """The fork server a replica of ``model_format`` forks from (if it is ready)."""
        return self.torch_forks if model_format in TORCH_FORMATS else self.forks

    # -- scale up ---------------------------------------------------------------------------------

    @staticmethod
    def has_room(service: Service) -> bool:
        """Whether one more replica may start: one start at a time, and fewer than maxReplicas serve."""
        return not service.starting and len(service.serving) < service.spec.max_replicas

    def scale_up(self, service: Service) -> bool:
        """Start one more replica in the background; False if its GPUs are not free."""
        replica = self._add_replica(service)
        if replica is not None:
            self.spawn(self._run_replica(service, replica))
        return replica is not None

    async def ensure_replicas(self, service: Service, count: int) -> None:
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

    def _add_replica(self, service: Service) -> Replica | None:
        """A new replica in the service's list at once (no await), so that concurrent requests count it."""
        spec = service.spec
        self._numbers += 1
        replica = Replica(spec, self._numbers, service.model_dir, [])
        if self.settings.replica_limits:
            replica.bounds = spec.bounds
        try:
            replica.gpus = self.gpus.allocate(replica.owner, spec.gpus)
        except Unschedulable as error:
            self.spawn(self.logs.control(spec.group, spec.id, f"cannot start a replica: {error.message}"))
            return None
        service.replicas.append(replica)
        self._replicated.add(service)
        return replica

    async def _start_replica(self, service: Service) -> Replica | None:
        replica = self._add_replica(service)
        return await self._run_replica(service, replica) if replica is not None else None

    async def _run_replica(self, service: Service, replica: Replica) -> Replica | None:
        spec = service.spec
        try:
            if self.before_start is not None:
                await self.before_start(service)
                replica.model_dir = service.model_dir
            await replica.spawn(self.logs, self.fork_server(spec.model_format), self.settings.replica_access_log)
            self._hold_to_plan(replica)
            if replica.draining:  # stopped (update, stop) before it even started
                raise NotReady("stopped while starting")
            await self.logs.control(spec.group, spec.id, f"{replica.name} starting on 127.0.0.1:{replica.port}")
            await replica.wait_ready(self.settings.replica_ready_timeout_s)
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
        self.spawn(self._supervise(service, replica))
        await service.notify()
        self.report(service)
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
        self.fail(service, error)

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
            fault = replica.exit_fault()
            if live and fault is not None:
                await self._broke_bounds(service, fault)
                return
            await service.notify()
            self.report(service)
            if live and len(service.serving) + len(service.starting) < service.spec.min_replicas:
                self.scale_up(service)  # minReplicas is a promise: keep it

    async def _broke_bounds(self, service: Service, fault: ZeroserveError) -> None:
        """A serving replica went past its plan's memory or out of GPU memory: the deployment is
        DEAD with that reason (the same model on the same plan would do it again), and its other
        replicas stop."""
        await self.logs.control(service.spec.group, service.spec.id, str(fault))
        service.failure = fault
        await service.notify()
        self.fail(service, fault)
        await self.stop_replicas(service)
        self.report(service)

    # -- a replica's share of the machine (serving/bounds.py) ---------------------------------------

    def _hold_to_plan(self, replica: Replica) -> None:
        """Put a replica just started on its plan's cores, and watch its memory."""
        assert replica.process is not None
        replica.bounds.pin(replica.process.pid, replica.number)
        if replica.bounds.memory is not None:
            self.spawn(self._watch_memory(replica))

    async def _watch_memory(self, replica: Replica) -> None:
        assert replica.process is not None and replica.bounds.memory is not None
        limit = replica.bounds.memory
        used = await memory_passed(replica.process, limit)
        if used is None:
            return
        # The verdict first, then the kill: whoever hears of the exit reads why.
        replica.fault = MemoryLimitExceeded(replica.with_last_lines(
            f"{replica.name} used {used / 1e6:.0f} MB of memory, more than its plan's {limit / 1e6:.0f} MB: "
            "stopped"))
        with contextlib.suppress(ProcessLookupError):
            replica.process.kill()

    def _forget(self, service: Service, replica: Replica) -> bool:
        self.gpus.release(replica.owner)
        if replica in service.replicas:
            service.replicas.remove(replica)
            if not service.replicas:
                self._replicated.discard(service)
            return True
        return False

    # -- scale down -------------------------------------------------------------------------------

    async def stop_replica(self, service: Service, replica: Replica) -> None:
        replica.draining = True
        await replica.terminate()
        if self._forget(service, replica):
            self.report(service)

    async def stop_replicas(self, service: Service) -> None:
        """Stop every replica of the service now, whatever it is doing."""
        await asyncio.gather(*(self.stop_replica(service, r) for r in list(service.replicas)))

    async def drain(self, service: Service) -> None:
        """Stop an old version's replicas once the requests they hold are done."""
        deadline = time.monotonic() + self.settings.request_timeout_s
        # Polled: a request's end is not an event anyone waits on elsewhere, and drains are rare.
        while any(r.in_flight for r in service.replicas) and time.monotonic() < deadline:  # noqa: ASYNC110
            await asyncio.sleep(0.05)
        await self.stop_replicas(service)

    async def _reap(self) -> None:
        interval = min(1.0, max(self.settings.idle_window_s / 4, 0.05))
        while True:
            await asyncio.sleep(interval)
            await self.reap()

    async def reap(self, now: float | None = None) -> None:
        """Stop what has been idle long enough, and pre-warm what a learned window expects soon."""
        now = self.clock() if now is None else now
        window_s = self.settings.idle_window_s
        # Only the services with a replica, and learned ones that may pre-warm: a fleet of deployments at
        # zero costs the reaper nothing.
        candidates = set(self._replicated)
        candidates.update(service for key in self.idle_times if (service := self.services.get(key)) is not None)
        for service in candidates:
            live = self.services.get((service.spec.group, service.spec.id)) is service
            if not live or service.stopped or service.waiting:
                continue
            if service.spec.idle_window != LEARNED:
                await self._stop_idle(service, now, window_s, service.spec.min_replicas)
                continue
            # Replicas beyond one go after the fixed window, as concurrency falls; the last one as learned.
            await self._stop_idle(service, now, window_s, max(service.spec.min_replicas, 1))
            await self._follow_learned(service, now)

    async def _stop_idle(self, service: Service, now: float, window_s: float, floor: int, why: str = "") -> None:
        """Stop the replicas idle for ``window_s``, down to ``floor``."""
        idle = [r for r in service.serving if r.in_flight == 0 and now - r.last_used >= window_s]
        chosen = idle[:max(len(service.serving) - floor, 0)]
        for replica in chosen:  # all marked before any await: no request may be assigned them now
            replica.draining = True
        for replica in chosen:
            await self.logs.control(service.spec.group, service.spec.id,
                                    f"{replica.name} {why or f'idle for {window_s:g} s'}: stopping")
            await self.stop_replica(service, replica)

    async def _follow_learned(self, service: Service, now: float) -> None:
        """The last replica of a deployment whose window is learned: kept while the window wants one,
        stopped outside it, and started again (pre-warmed) when the window's pre-warm time comes."""
        spec = service.spec
        idle = self.idle_times.get((spec.group, spec.id))
        if idle is None:  # no request yet (a replica an update started, say): nothing learned, the fixed window
            await self._stop_idle(service, now, self.settings.idle_window_s, spec.min_replicas)
            return
        if idle.since is None:
            return  # a request in flight
        window = idle.window(self.learning, self.settings.idle_window_s)
        idle_s = now - idle.since
        if not window.wants_replica(idle_s):
            why = (f"the next request is expected in {window.prewarm_s - idle_s:.0f} s (learned)"
                   if idle_s <= window.prewarm_s else
                   f"idle for {idle_s:.0f} s, past its {'learned' if window.learned else 'fixed'} window")
            await self._stop_idle(service, now, 0.0, spec.min_replicas, why)
            return
        if (window.prewarm_s > 0 and idle.prewarmed_for != idle.since and not service.replicas
                and time.monotonic() >= service.retry_at and self.has_room(service)):
            idle.prewarmed_for = idle.since  # once per idle time: a start that fails is not retried in a loop
            await self.logs.control(spec.group, spec.id, f"pre-warming a replica: the next request is expected "
                                    f"within {window.keep_alive_s:.0f} s (learned idle window)")
            self.scale_up(service)

    def request_began(self, service: Service, at: float) -> None:
        """A request arrived at ``at``: where the window is learned, the idle time it ends counts."""
        spec = service.spec
        if spec.idle_window != LEARNED:
            return
        idle = self.idle_times.get((spec.group, spec.id))
        if idle is None:
            idle = self.idle_times[spec.group, spec.id] = IdleTimes(self.learning)
        idle.began(at, self.learning)

    def request_ended(self, service: Service) -> None:
        if service.spec.idle_window != LEARNED:
            return
        idle = self.idle_times.get((service.spec.group, service.spec.id))
        if idle is not None:
            idle.ended(self.clock())

    def forget(self, group: str, id: str) -> None:
        """A deleted deployment's idle times go with it."""
        self.idle_times.pop((group, id), None)

    def stop_reaper(self) -> None:
        if self._reaper is not None:
            self._reaper.cancel()

    # -- tasks --------------------------------------------------------------------------------------

    def spawn(self, coroutine: Coroutine[Any, Any, Any]) -> None:
        """Run ``coroutine`` in the background until it ends or the autoscaler closes."""
        # A context of its own: the task outlives the event whose handler may have started it.
        task = asyncio.create_task(coroutine, context=contextvars.Context())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def close(self) -> None:
        """Stop the reaper, the tasks still running, and then the fork servers."""
        self.stop_reaper()
        for task in list(self._tasks):
            task.cancel()
        for forks in (self.forks, self.torch_forks):  # after the replicas: their exits come through it
            if forks is not None:
                await forks.close()
