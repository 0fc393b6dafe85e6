"""Restart restore: after the control plane restarts, the backend is brought back in line with the
store. Every RUNNING or PENDING deployment is applied again (it serves again from zero replicas),
one left STOPPING is stopped, and a status written but perhaps never announced (a crash between
the two) is announced again; a deployment that cannot be restored is logged and the others still are.
"""

from __future__ import annotations

import asyncio
import logging

from zeroserve.backends.base import Backend
from zeroserve.core.store import Deployment
from zeroserve.deployments.lifecycle import Deployments
from zeroserve.errors import ZeroserveError
from zeroserve.events import Status

log = logging.getLogger(__name__)


async def restore_deployments(deployments: Deployments, backend: Backend) -> None:
    """Restore every deployment in the store; one that fails is logged and skipped."""
    for deployment in await deployments.store.deployments.list():
        try:
            await restore(deployments, backend, deployment)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("deployment %s/%s not restored", deployment.group, deployment.id,
                          extra={"deployment": deployment.id})


async def restore(deployments: Deployments, backend: Backend, deployment: Deployment) -> None:
    group, id = deployment.group, deployment.id
    if deployment.status in (Status.UNKNOWN, Status.PENDING, Status.STOPPING):
        # A status is written, then announced: a crash between the two leaves it unannounced,
        # and finishing the move below would announce a jump the lifecycle does not allow
        # (RUNNING -> STOPPED). Announced again, it is at worst a repeat of the same status.
        await deployments.announce(group, id, causation=f"restore.{deployment.modified_at.timestamp()}")
    if deployment.status == Status.STOPPING:
        await backend.stop(group, id)
        await deployments.transition(group, id, Status.STOPPED, running_replicas=0)
        return
    if deployment.status not in (Status.RUNNING, Status.PENDING) or deployment.inference_service is None:
        return
    try:
        ready = await backend.apply(deployment.inference_service)
    except ZeroserveError as error:
        await deployments.transition(group, id, Status.DEAD, reason=error.reason, message=error.message)
        return
    if ready:  # the gateway may listen elsewhere now: the URL says where it really is
        await deployments.transition(group, id, Status.RUNNING, running_replicas=0, deployment_url=deployments.url(id))
    log.info("restored deployment %s/%s", group, id, extra={"deployment": id})
