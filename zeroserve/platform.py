"""The platform's parts, wired together: what functions, the gateway and the CLI work with.
``Platform.open`` connects to NATS, makes sure the streams and buckets exist, loads the serving
templates and resource plans (``executables`` adds each group's own, from git or applied), and builds
the backend; ``restore`` (after a restart) and ``follow_backend`` (while the platform runs) hand those
parts to ``deployments.restore`` and ``deployments.watcher``.
"""

from __future__ import annotations

from dataclasses import dataclass

from zeroserve.artifacts.cache import ModelCache
from zeroserve.auth import Auth
from zeroserve.backends.base import Backend
from zeroserve.backends.local import LocalBackend
from zeroserve.core.bus import Bus
from zeroserve.core.store import Store
from zeroserve.deployments import watcher
from zeroserve.deployments.index import DeploymentIndex
from zeroserve.deployments.lifecycle import Deployments
from zeroserve.deployments.logs import DeploymentLogs
from zeroserve.deployments.restore import restore_deployments
from zeroserve.settings import Settings
from zeroserve.templates.applications import Applications
from zeroserve.templates.executables import Executables
from zeroserve.templates.plans import ResourcePlan, load_resource_plans
from zeroserve.templates.serving import ServingTemplate, load_templates


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
    # The operator's templates (settings.templates_dir), the same in every group.
    templates: dict[str, ServingTemplate]
    plans: dict[str, ResourcePlan]
    auth: Auth
    # What each group may deploy: the operator's templates and those added from git or applied.
    executables: Executables
    applications: Applications
    # Every deployment, followed in memory: what the API's lists and the ttl check read (started on first use).
    fleet: DeploymentIndex

    @classmethod
    async def open(cls, settings: Settings, nats_url: str, backend: Backend | None = None) -> Platform:
        # Templates and plans first: a mistake in them stops start-up before anything is connected.
        templates = load_templates(settings.templates_dir)
        plans = load_resource_plans(settings)
        bus = await Bus.connect(nats_url, settings)
        try:
            store = await Store.open(bus.js, settings.nats_replicas)
            executables = await Executables.open(store, templates)
            applications = await Applications.open(store, executables, plans, settings)
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
            deployments=Deployments(store, bus, settings.gateway_url, scenario_of=executables.scenario_of),
            logs=logs,
            models=models,
            backend=backend or make_backend(settings, models, logs),
            templates=templates,
            plans=plans,
            auth=Auth.open(settings, store),
            executables=executables,
            applications=applications,
            fleet=DeploymentIndex(store.deployments),
        )

    async def close(self) -> None:
        await self.fleet.close()
        await self.applications.close()
        await self.backend.close()
        await self.logs.stop()
        await self.bus.close()

    async def restore(self) -> None:
        """After a restart: the backend brought back in line with the store (``deployments.restore``)."""
        await restore_deployments(self.deployments, self.backend)

    async def follow_backend(self) -> None:
        """Until cancelled: what the backend notices becomes status changes (``deployments.watcher``)."""
        await watcher.follow_backend(self.deployments, self.backend, self.logs)
