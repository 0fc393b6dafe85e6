"""The activator: every inference request to a deployment on this machine passes it for a replica.
As Knative's activator does, it holds a request while its deployment has no replica ready (scale
from zero), asks the autoscaler for one more when every serving replica is at the concurrency
target, and hands each request the least busy replica as an ``Assignment``, held until its response
ends. It bounds the wait: ``Overloaded`` (429) once ``activator_queue_limit`` requests already wait,
``NotReady`` (504) past ``replica_ready_timeout_s``, and a deployment that cannot be served fails at
once. Where a cold start went, by phase, is told to the request (``phases``) and, once per replica,
to the deployment's log and to ``cold_starts`` (the deployment's last cold starts).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass

from zeroserve.core import tracing
from zeroserve.deployments.logs import DeploymentLogs
from zeroserve.errors import NotReady, Overloaded, Unschedulable
from zeroserve.serving.autoscaler import Autoscaler
from zeroserve.serving.cold_starts import ColdStarts
from zeroserve.serving.replica import Replica
from zeroserve.serving.service import Service
from zeroserve.settings import Settings


@dataclass
class Assignment:
    """The replica a request was given, from the activator to the end of its response.

    Not a "lease": that word names leader election's Kubernetes Lease (backends/kserve), a hold
    on a role; this is one request's place on one replica.
    """

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


def _trace_phases(assignment: Assignment) -> None:
    """A cold start's phases as spans of the request that waited (``Assignment.phases``, at their times)."""
    replica = assignment.replica
    phases = assignment.phases()
    if not phases or replica.spawned_at is None or replica.ready_at is None:
        return
    loaded = replica.spawned_at + phases["model-load"]
    attributes = {"zeroserve.replica": replica.name, "zeroserve.deployment": replica.spec.id}
    for name, started, ended in (("queued", assignment.arrived_at, replica.asked_at),
                                 ("replica-start", max(replica.asked_at, assignment.arrived_at), replica.spawned_at),
                                 ("model-load", replica.spawned_at, loaded), ("ready", loaded, replica.ready_at)):
        tracing.record(name, max(started, assignment.arrived_at), ended, **attributes)


class Activator:
    """Assigns each request a replica of its deployment, starting one when none serves."""

    def __init__(self, settings: Settings, services: dict[tuple[str, str], Service], autoscaler: Autoscaler,
                 logs: DeploymentLogs) -> None:
        self.settings = settings
        self.services = services  # the live version of each deployment, shared with the backend
        self.autoscaler = autoscaler
        self.logs = logs
        self.cold_starts = ColdStarts()

    def service(self, group: str, id: str) -> Service | None:
        return self.services.get((group, id))

    @contextlib.asynccontextmanager
    async def assign(self, group: str, id: str) -> AsyncIterator[Assignment]:
        """Hold a replica for one request: scale from zero or up if needed, bounded in queue and time."""
        started = time.monotonic()
        arrived = self.autoscaler.clock()
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
            if may_start and self.autoscaler.has_room(service):
                if not self.autoscaler.scale_up(service) and replica is None:
                    raise Unschedulable(f"no replica of {id} can start: {service.spec.gpus} GPU(s) needed, "
                                        f"{self.autoscaler.gpus.free} free")
            if replica is not None:  # at the target everywhere and no room to grow: share
                break
            if service.waiting >= self.settings.activator_queue_limit:
                raise Overloaded(f"{service.waiting} requests already wait for a replica of {id}")
            cold = True
            # Wake on a change, or when a start may be tried again, or give up at the deadline.
            await self._wait(service, deadline if may_start else min(deadline, service.retry_at), deadline)
        replica.in_flight += 1
        self.autoscaler.request_began(service, arrived)
        assignment = Assignment(replica=replica, cold=cold, waited_s=time.monotonic() - started, arrived_at=started)
        if cold and tracing.tracer is not None:
            _trace_phases(assignment)
        try:
            yield assignment
        finally:
            replica.in_flight -= 1
            replica.last_used = self.autoscaler.clock()
            self.autoscaler.request_ended(service)

    async def _wait(self, service: Service, wake_at: float, deadline: float) -> None:
        """Wait, counted among the service's waiting requests, for a change or until ``wake_at``."""
        service.waiting += 1
        try:
            async with service.changed:
                await asyncio.wait_for(service.changed.wait(), max(wake_at - time.monotonic(), 0))
        except TimeoutError:
            if time.monotonic() >= deadline:
                raise NotReady(f"no replica of {service.spec.id} was ready within "
                               f"{self.settings.replica_ready_timeout_s:g} s") from None
        finally:
            service.waiting -= 1

    async def report_cold_start(self, assignment: Assignment, forward_s: float) -> None:
        """Tell the deployment's log where a replica's cold start went, once per replica: by the
        first request that waited for it, with the time its forward took."""
        replica = assignment.replica
        if not assignment.cold or replica.start_reported:
            return
        replica.start_reported = True
        phases = {**assignment.phases(), "forward": forward_s}
        spent = ", ".join(f"{name} {seconds * 1000:.0f} ms" for name, seconds in phases.items())
        total = assignment.waited_s + forward_s
        self.cold_starts.record(replica.spec.group, replica.spec.id, replica.name, phases, total)
        await self.logs.control(replica.spec.group, replica.spec.id,
                                f"cold start of {replica.name} took {total * 1000:.0f} ms: {spent}")
