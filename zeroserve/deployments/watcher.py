"""The backend-to-status watcher: what the backend notices about a deployment (``Backend.watch()``
changes: replica counts, a model that fails to load, the status KServe sees) becomes a status
change of a PENDING or RUNNING deployment; a stopping, stopped, dead or deleted one belongs to the
lifecycle functions and is left alone, and nothing is written when the record says so already.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from zeroserve.backends.base import Backend, Change
from zeroserve.core import metrics
from zeroserve.core.store import Deployment
from zeroserve.deployments.lifecycle import Deployments
from zeroserve.deployments.logs import DeploymentLogs
from zeroserve.errors import ZeroserveError
from zeroserve.events import Status

log = logging.getLogger(__name__)


async def follow_backend(deployments: Deployments, backend: Backend, logs: DeploymentLogs) -> None:
    """Turn what the backend reports (replicas, failures, the status it sees) into status changes."""
    async for change in backend.watch():
        if change.running_replicas is not None:
            metrics.replicas.labels(change.group, change.id).set(change.running_replicas)
        try:
            current = await deployments.store.deployments.get(change.group, change.id)
            if current is None or current.status not in (Status.PENDING, Status.RUNNING):
                continue  # stopping, stopped, dead or gone: the lifecycle functions own it now
            if change.status is not None:
                await follow_status(deployments, logs, change, current)
            elif change.failure is not None:
                await deployments.transition(
                    change.group, change.id, Status.DEAD, reason=change.failure.reason, message=change.failure.message,
                )
            elif change.running_replicas is not None and change.running_replicas != current.running_replicas:
                # PENDING too: replicas kept by minReplicas start before the deployment is RUNNING.
                # status None: whatever it is when written (a handler may move it meanwhile)
                await deployments.transition(change.group, change.id, None, running_replicas=change.running_replicas)
        except ZeroserveError as error:  # the deployment moved on meanwhile (stopped, deleted)
            log.info("backend change for %s/%s not recorded: %s", change.group, change.id, error)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("backend change for %s/%s not recorded", change.group, change.id)


async def follow_status(deployments: Deployments, logs: DeploymentLogs, change: Change, current: Deployment) -> None:
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
            await logs.control(change.group, change.id, f"{change.reason}: {change.message}")
        fields = dict(running_replicas=replicas, backend_url=change.backend_url or current.backend_url)
        if current.status != Status.RUNNING:
            fields.update(reason=None, message=None)
    elif status in (Status.PENDING, Status.DEAD):
        fields = dict(running_replicas=replicas, reason=change.reason, message=change.message)
    else:
        return  # STOPPING/STOPPED: the stop function records those
    if status == current.status and all(getattr(current, name) == value for name, value in fields.items()):
        return
    await deployments.transition(change.group, change.id, status, **fields)
