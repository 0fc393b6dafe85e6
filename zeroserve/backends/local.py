"""The local backend: each deployment's replicas as KServe model-server processes on this machine.
It reads the same InferenceService object the kserve backend sends to a cluster, and runs what that
object asks for as Knative would, from the parts in ``zeroserve.serving``: no process until the
first request (the ``Activator`` holds it and has a replica started), replicas added and stopped by
the ``Autoscaler`` between ``minReplicas`` and ``maxReplicas``, and an update rolled out as a new
revision that must answer ready before it takes over. What it cannot run, it refuses with a reason:
an unknown model format, missing files, a GPU plan on a machine without GPUs.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from zeroserve.artifacts.cache import ModelCache
from zeroserve.backends.base import Change
from zeroserve.deployments.logs import DeploymentLogs
from zeroserve.errors import ModelLoadFailed, NoGPU, RuntimeNotInstalled, ZeroserveError
from zeroserve.extras import install_hint, missing
from zeroserve.serving.activator import Activator
from zeroserve.serving.autoscaler import Autoscaler
from zeroserve.serving.gpus import GpuInventory
from zeroserve.serving.runtimes import FRAMEWORKS, RUNTIMES
from zeroserve.serving.service import Service
from zeroserve.serving.spec import ServiceSpec
from zeroserve.settings import Settings


class LocalBackend:
    """Runs InferenceServices as local model-server processes that scale to and from zero."""

    def __init__(
        self, settings: Settings, models: ModelCache, logs: DeploymentLogs, gpus: GpuInventory | None = None
    ) -> None:
        self.settings = settings
        self.models = models
        self.logs = logs
        self.gpus = gpus if gpus is not None else (
            GpuInventory(settings.gpus) if settings.gpus is not None else GpuInventory.detecting()
        )
        self.services: dict[tuple[str, str], Service] = {}
        self._changes: asyncio.Queue[Change] = asyncio.Queue()
        # Versions being drained after an update, and new versions not yet live: close() stops them too.
        self._retired: set[Service] = set()
        self.autoscaler = Autoscaler(settings, self.services, logs, self.gpus, self._report, self._report_failure)
        self.activator = Activator(settings, self.services, self.autoscaler, logs)
        self.autoscaler.before_start = self._restage
        models.add_user(self.model_dirs)

    async def apply(self, isvc: dict[str, Any]) -> bool:
        spec = ServiceSpec.from_inference_service(isvc)
        if spec.model_format not in RUNTIMES:
            known = ", ".join(sorted(RUNTIMES))
            raise ModelLoadFailed(f"no local runtime for model format {spec.model_format!r} (known: {known})")
        _check_framework(spec.model_format)
        await self.gpus.ready()
        if spec.gpus > self.gpus.total:
            raise NoGPU(
                f"the resource plan asks for {spec.gpus} GPU(s) per replica and this machine has "
                f"{self.gpus.total}: use a CPU plan (starter, basic, basic.8x) or run on a GPU node"
            )
        # Held from eviction until the service that uses it is in place (then ``model_dirs`` names it).
        progress = functools.partial(self.logs.control, spec.group, spec.id)
        canary = isvc["spec"]["predictor"].get("canaryTrafficPercent", 100)
        if canary != 100:  # accepted as on a cluster, but there is no traffic split here: say so
            await progress(f"canaryTrafficPercent {canary} applies on a cluster only: on this machine an update "
                           "takes all traffic once its replica is ready, and the old version serves until then")
        async with self.models.holding(spec.storage_uri, group=spec.group, progress=progress) as model_dir:
            return await self._run(spec, model_dir)

    async def _run(self, spec: ServiceSpec, model_dir: Path) -> bool:
        if not await asyncio.to_thread(_has_model_files, model_dir):
            raise ModelLoadFailed(f"no model files at {spec.storage_uri}")
        await self.autoscaler.start(spec.model_format)

        key = (spec.group, spec.id)
        old = self.services.get(key)
        if old is not None and not old.stopped and old.failure is None and (old.spec, old.model_dir) == (
            spec, model_dir
        ):
            return True  # the same request again: nothing to change
        replacement = Service(spec=spec, model_dir=model_dir)
        if old is None or old.stopped:
            self.services[key] = replacement
            await self.autoscaler.ensure_replicas(replacement, spec.min_replicas)
            return True
        await self._roll_out(old, replacement)
        return True

    def model_dirs(self) -> set[Path]:
        """The model cache entries this backend uses: its deployments' that may start a replica (RUNNING
        at zero too, PENDING, a new version rolling out), and any a replica still has open."""
        services = [*self.services.values(), *self._retired]
        used = {s.model_dir for s in services if not s.stopped and s.failure is None}
        return used | {r.model_dir for s in services for r in s.replicas if not r.exited}

    async def _restage(self, service: Service) -> None:
        """Before a replica starts: its use recorded for the least-recently-used order (no thread, no
        lock: a live deployment's entry is never evicted), and the artifact staged again if its
        entry went all the same (removed by hand)."""
        if self.models.touch(service.model_dir):
            return
        spec = service.spec
        service.model_dir = await self.models.stage(spec.storage_uri, group=spec.group,
                                                    progress=functools.partial(self.logs.control, spec.group, spec.id))

    async def _roll_out(self, old: Service, replacement: Service) -> None:
        """Update in place, as Knative rolls out a revision: a replica of the new version must load
        and answer ready before it takes over (a version that cannot load is refused here, not
        found out by the next request); the old version serves until then, and drains after."""
        self._retired.add(replacement)  # reachable by close() while it is not yet the live one
        try:
            await self.autoscaler.ensure_replicas(replacement, max(replacement.spec.min_replicas, 1))
        except BaseException:
            await self._stop_service(replacement)
            raise
        finally:
            self._retired.discard(replacement)
        self.services[replacement.spec.group, replacement.spec.id] = replacement
        old.stopped = True
        for replica in old.replicas:
            replica.draining = True
        await old.notify()  # requests waiting on the old version move to the new one
        self._retired.add(old)
        self.autoscaler.spawn(self._drain(old))
        self._report(replacement)

    async def _drain(self, service: Service) -> None:
        try:
            await self.autoscaler.drain(service)
        finally:
            self._retired.discard(service)

    async def stop(self, group: str, id: str) -> None:
        service = self.services.get((group, id))
        if service is not None:
            await self._stop_service(service)

    async def _stop_service(self, service: Service) -> None:
        service.stopped = True
        await service.notify()
        await self.autoscaler.stop_replicas(service)

    async def delete(self, group: str, id: str) -> None:
        await self.stop(group, id)
        self.services.pop((group, id), None)
        self.activator.cold_starts.forget(group, id)
        self.autoscaler.forget(group, id)

    async def watch(self) -> AsyncIterator[Change]:
        while True:
            yield await self._changes.get()

    async def close(self) -> None:
        self.autoscaler.stop_reaper()  # first: it must not stop the replicas being stopped here
        for service in [*self.services.values(), *self._retired]:
            await self._stop_service(service)
        await self.autoscaler.close()

    async def scale_to_zero(self, group: str, id: str) -> None:
        """Stop every replica of a deployment now, as the idle window would (benchmarks, admins)."""
        service = self.services.get((group, id))
        if service is not None:
            await self.autoscaler.stop_replicas(service)

    def _report(self, service: Service) -> None:
        if not service.stopped:
            self._changes.put_nowait(Change(service.spec.group, service.spec.id, running_replicas=service.running))

    def _report_failure(self, service: Service, failure: ZeroserveError) -> None:
        # A new version that fails is the caller's to refuse; only the live one's failure is news.
        if self.services.get((service.spec.group, service.spec.id)) is service:
            self._changes.put_nowait(Change(service.spec.group, service.spec.id, failure=failure))


def _has_model_files(model_dir: Path) -> bool:
    return any(not path.name.startswith(".") for path in model_dir.iterdir())


def _check_framework(model_format: str) -> None:
    """Refuse a model format whose framework is not installed here, naming the extra that installs it."""
    extra, modules = FRAMEWORKS.get(model_format, ("server", ()))
    absent = missing(modules)
    if absent:
        raise RuntimeNotInstalled(
            f"the {model_format} runtime needs {', '.join(absent)}, not installed with this zeroserve: "
            f"{install_hint(extra)}, then restart zeroserve")
