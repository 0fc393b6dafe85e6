"""A service: one version of a deployment on this machine, as Knative keeps a revision: its spec,
the replicas that serve it, the requests waiting for one, and what its starts went through (a
failure that makes every request fail at once, a pause before the next try, starts that never got
ready). The activator, the autoscaler and the local backend share it; its ``changed`` condition
wakes the requests that wait when a replica comes, goes, or the service stops or fails."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from pathlib import Path

from zeroserve.errors import ZeroserveError
from zeroserve.serving.replica import Replica
from zeroserve.serving.spec import ServiceSpec


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
