"""Deployments with a ttl: stopped, then deleted, once the ttl has passed since they were created.
``enforce_ttl`` looks at every deployment with a ttl each ``settings.ttl_check_interval_s``, in the
deployment index (memory, not 10,000 reads of the store). An expired one that can be stopped
(PENDING or RUNNING) gets a ``deployment.stopped``; once it can be deleted (STOPPED, or UNKNOWN or
DEAD) a ``deployment.deleted``. It acts only through those events, as a
user would, so the functions stay the only ones that change a deployment. The event ids are
derived from the deployment and its creation time, so when several gateways run this loop, or one
looks again before the stop has finished, JetStream keeps one stop and one delete.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from zeroserve.core.store import Deployment
from zeroserve.deployments.lifecycle import can_delete, can_stop
from zeroserve.events import DeploymentDeleted, DeploymentStopped, EventData, lifetime, new_event

if TYPE_CHECKING:
    from zeroserve.platform import Platform

log = logging.getLogger(__name__)

SOURCE = "/zeroserve/expiry"


def _now() -> datetime:
    return datetime.now(UTC)


def expired(deployment: Deployment, at: datetime) -> bool:
    return deployment.ttl is not None and deployment.created_at + lifetime(deployment.ttl) <= at


async def expire(platform: Platform, deployment: Deployment) -> None:
    """Take one expired deployment a step further: stop it, or delete it once it has stopped."""
    data: EventData
    if can_stop(deployment):
        data, step = DeploymentStopped(id=deployment.id), "stopped"
    elif can_delete(deployment):
        data, step = DeploymentDeleted(id=deployment.id), "deleted"
    else:
        return  # STOPPING: the delete follows on a later look
    # The same deployment (same creation time) always gets the same ids: repeats are dropped.
    event_id = f"ttl.{deployment.group}.{deployment.id}.{deployment.created_at.timestamp():.6f}.{step}"
    published = await platform.bus.publish(new_event(data, source=SOURCE, subject=deployment.id, id=event_id),
                                           deployment.group)
    if not published.duplicate:
        log.info("deployment %s/%s outlived its ttl %s: %s", deployment.group, deployment.id, deployment.ttl, step,
                 extra={"deployment": deployment.id, "event": event_id})
        await platform.logs.control(deployment.group, deployment.id, f"ttl {deployment.ttl} has passed: {step}")


async def with_ttl(platform: Platform) -> list[Deployment]:
    """The deployments that have a ttl: only their records are read (from the index, in memory)."""
    summaries = await platform.fleet.summaries()
    if summaries is None:  # the index lags: the store, as it is
        return [d for d in await platform.store.deployments.list() if d.ttl is not None]
    return [record for summary in summaries if summary.ttl is not None
            and (record := platform.fleet.record(summary)) is not None]


async def enforce_ttl(platform: Platform, *, clock: Callable[[], datetime] = _now) -> None:
    """Run until cancelled. ``clock`` is what "now" is (tests move it forward instead of waiting minutes)."""
    while True:
        try:
            at = clock()
            for deployment in await with_ttl(platform):
                try:
                    if expired(deployment, at):
                        await expire(platform, deployment)
                except (OverflowError, ValueError) as error:  # a ttl stored before it was checked
                    log.warning("ttl %r of %s/%s cannot be checked: %s", deployment.ttl, deployment.group,
                                deployment.id, error)
        except asyncio.CancelledError:
            raise
        except Exception:  # NATS away for a moment, say: the next look tries again
            log.exception("ttl check failed")
        await asyncio.sleep(platform.settings.ttl_check_interval_s)
