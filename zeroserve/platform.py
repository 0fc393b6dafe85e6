"""The platform's parts, wired together: what functions, the gateway and the CLI work with.

``Platform.open`` connects to NATS, makes sure the streams and buckets exist, loads the serving
templates and resource plans, and builds the backend. ``restore`` brings the backend back in line
with the store after a restart (RUNNING deployments serve again, from zero), and
``follow_backend`` turns what the backend notices (replicas, failures) into status changes.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import Any

from zeroserve.artifacts.cache import ModelCache
from zeroserve.auth import Auth
from zeroserve.backends.base import Backend, Change
from zeroserve.backends.local import LocalBackend
from zeroserve.core import metrics
from zeroserve.core.bus import Bus
from zeroserve.core.store import Deployment, Store
from zeroserve.deployments.lifecycle import Deployments
from zeroserve.deployments.logs import DeploymentLogs
from zeroserve.errors import ZeroserveError
from zeroserve.events import Status
from zeroserve.settings import Settings
from zeroserve.templates.plans import ResourcePlan, load_resource_plans
from zeroserve.templates.serving import ServingTemplate, load_templates

log = logging.getLogger(__name__)


def make_backend(settings: Settings, models: ModelCache, logs: DeploymentLogs) -> Backend:
    """The backend ``settings.backend`` names: local processes, or KServe on a cluster."""
    if settings.backend == "kserve":
        from zeroserve.backends.kserve.backend import KserveBackend  # the kubernetes client only when used

        return KserveBackend(settings, logs)
    return LocalBackend(settings, models, logs)


@dataclass
class Platform:
    settings: Settings
    bus: Bus
    store: Store
    deployments: Deployments
    logs: DeploymentLogs
    models: ModelCache
    backend: Backend
    templates: dict[str, ServingTemplate]
    plans: dict[str, ResourcePlan]
    auth: Auth

    @classmethod
    async def open(cls, settings: Settings, nats_url: str, backend: Backend | None = None) -> Platform:
        # Templates and plans first: a mistake in them stops start-up before anything is connected.
        templates = load_templates(settings.templates_dir)
        plans = load_resource_plans(settings)
        bus = await Bus.connect(nats_url, settings)
        try:
            store = await Store.open(bus.js)
        except BaseException:
            await bus.close()
            raise
        logs = DeploymentLogs(bus)
        logs.start()
        models = ModelCache(settings)
        return cls(
            settings=settings,
            bus=bus,
            store=store,
            deployments=Deployments(store, bus, settings.gateway_url),
            logs=logs,
            models=models,
            backend=backend or make_backend(settings, models, logs),
            templates=templates,
            plans=plans,
            auth=Auth.open(settings, store),
        )

    async def close(self) -> None:
        await self.backend.close()
        await self.logs.stop()
        await self.bus.close()

    async def restore(self) -> None:
        """After a restart: every RUNNING or PENDING deployment is applied again (no replica yet), and
        one left STOPPING is stopped. One that cannot be restored is logged; the others still are."""
        for deployment in await self.store.deployments.list():
            try:
                await self._restore(deployment)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("deployment %s/%s not restored", deployment.group, deployment.id,
                              extra={"deployment": deployment.id})

    async def _restore(self, deployment: Deployment) -> None:
        group, id = deployment.group, deployment.id
        if deployment.status in (Status.UNKNOWN, Status.PENDING, Status.STOPPING):
            # A status is written, then announced: a crash between the two leaves it unannounced,
            # and finishing the move below would announce a jump the lifecycle does not allow
            # (RUNNING -> STOPPED). Announced again, it is at worst a repeat of the same status.
            await self.deployments.announce(group, id, causation=f"restore.{deployment.modified_at.timestamp()}")
        if deployment.status == Status.STOPPING:
            await self.backend.stop(group, id)
            await self.deployments.transition(group, id, Status.STOPPED, running_replicas=0)
            return
        if deployment.status not in (Status.RUNNING, Status.PENDING) or deployment.inference_service is None:
            return
        try:
            ready = await self.backend.apply(deployment.inference_service)
        except ZeroserveError as error:
            await self.deployments.transition(group, id, Status.DEAD, reason=error.reason, message=error.message)
            return
        if ready:  # the gateway may listen elsewhere now: the URL says where it really is
            await self.deployments.transition(
                group, id, Status.RUNNING, running_replicas=0, deployment_url=self.deployments.url(id)
            )
        log.info("restored deployment %s/%s", group, id, extra={"deployment": id})

    async def follow_backend(self) -> None:
        """Turn what the backend reports (replicas, failures, the status it sees) into status changes."""
        async for change in self.backend.watch():
            if change.running_replicas is not None:
                metrics.replicas.labels(change.group, change.id).set(change.running_replicas)
            try:
                current = await self.store.deployments.get(change.group, change.id)
                if current is None or current.status not in (Status.PENDING, Status.RUNNING):
                    continue  # stopping, stopped, dead or gone: the lifecycle functions own it now
                if change.status is not None:
                    await self._follow_status(change, current)
                elif change.failure is not None:
                    await self.deployments.transition(
                        change.group, change.id, Status.DEAD,
                        reason=change.failure.reason, message=change.failure.message,
                    )
                elif change.running_replicas is not None and change.running_replicas != current.running_replicas:
                    # PENDING too: replicas kept by minReplicas start before the deployment is RUNNING.
                    # status None: whatever it is when written (a handler may move it meanwhile)
                    await self.deployments.transition(
                        change.group, change.id, None, running_replicas=change.running_replicas
                    )
            except ZeroserveError as error:  # the deployment moved on meanwhile (stopped, deleted)
                log.info("backend change for %s/%s not recorded: %s", change.group, change.id, error)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("backend change for %s/%s not recorded", change.group, change.id)

    async def _follow_status(self, change: Change, current: Deployment) -> None:
        """A status the backend sees (kserve): RUNNING once ready, DEAD on failure, PENDING with the
        reason it waits for. Nothing is written when the record says so already (a watcher that
        restarts reports every deployment once more)."""
        status = change.status
        replicas = change.running_replicas if change.running_replicas is not None else current.running_replicas
        if status == Status.PENDING and current.status == Status.RUNNING:
            status = Status.RUNNING  # an update rolling out: the previous version still serves
        fields: dict[str, Any]
        if status == Status.RUNNING:
            if change.reason and current.status == Status.RUNNING:  # an update that failed; the old one serves
                await self.logs.control(change.group, change.id, f"{change.reason}: {change.message}")
            fields = dict(running_replicas=replicas, backend_url=change.backend_url or current.backend_url)
            if current.status != Status.RUNNING:
                fields.update(reason=None, message=None)
        elif status in (Status.PENDING, Status.DEAD):
            fields = dict(running_replicas=replicas, reason=change.reason, message=change.message)
        else:
            return  # STOPPING/STOPPED: the stop function records those
        if status == current.status and all(getattr(current, name) == value for name, value in fields.items()):
            return
        await self.deployments.transition(change.group, change.id, status, **fields)
