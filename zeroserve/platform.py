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

from zeroserve import metrics
from zeroserve.auth import Auth
from zeroserve.backends.base import Backend
from zeroserve.backends.local import LocalBackend
from zeroserve.bus import Bus
from zeroserve.deployments import Deployments
from zeroserve.errors import ZeroserveError
from zeroserve.events import Status
from zeroserve.logs import DeploymentLogs
from zeroserve.settings import Settings
from zeroserve.storage import ModelCache
from zeroserve.store import Store
from zeroserve.templates import ResourcePlan, ServingTemplate, load_resource_plans, load_templates

log = logging.getLogger(__name__)


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
            backend=backend or LocalBackend(settings, models, logs),
            templates=templates,
            plans=plans,
            auth=Auth.open(settings, store),
        )

    async def close(self) -> None:
        await self.backend.close()
        await self.logs.stop()
        await self.bus.close()

    async def restore(self) -> None:
        """After a restart: every RUNNING or PENDING deployment is applied again (no replica yet)."""
        for deployment in await self.store.deployments.list():
            group, id = deployment.group, deployment.id
            if deployment.status == Status.STOPPING:
                await self.backend.stop(group, id)
                await self.deployments.transition(group, id, Status.STOPPED, running_replicas=0)
                continue
            if deployment.status not in (Status.RUNNING, Status.PENDING) or deployment.inference_service is None:
                continue
            try:
                ready = await self.backend.apply(deployment.inference_service)
            except ZeroserveError as error:
                await self.deployments.transition(group, id, Status.DEAD, reason=error.reason, message=error.message)
                continue
            if ready:  # the gateway may listen elsewhere now: the URL says where it really is
                await self.deployments.transition(
                    group, id, Status.RUNNING, running_replicas=0, deployment_url=self.deployments.url(id)
                )
            log.info("restored deployment %s/%s", group, id, extra={"deployment": id})

    async def follow_backend(self) -> None:
        """Turn replica counts and failures the backend reports into status changes."""
        async for change in self.backend.watch():
            if change.running_replicas is not None:
                metrics.replicas.labels(change.group, change.id).set(change.running_replicas)
            try:
                current = await self.store.deployments.get(change.group, change.id)
                if current is None:
                    continue
                if change.failure is not None and current.status in (Status.PENDING, Status.RUNNING):
                    await self.deployments.transition(
                        change.group, change.id, Status.DEAD,
                        reason=change.failure.reason, message=change.failure.message,
                    )
                elif change.running_replicas is not None and current.status in (Status.PENDING, Status.RUNNING):
                    # PENDING too: replicas kept by minReplicas start before the deployment is RUNNING.
                    if change.running_replicas != current.running_replicas:
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

