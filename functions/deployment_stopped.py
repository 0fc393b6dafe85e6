"""Stop a deployment: STOPPING, every replica and resource released, then STOPPED."""

from zeroserve.core.runner import Context, on
from zeroserve.deployments.lifecycle import STOPPABLE
from zeroserve.errors import InvalidTransition
from zeroserve.events import DeploymentStopped, Status


@on(DeploymentStopped)
async def deployment_stopped(request: DeploymentStopped, ctx: Context) -> None:
    if not await ctx.deployments.claim(ctx.group, request.id, ctx.sequence):
        return  # a later request has acted on it: this redelivered stop is out of date
    deployment = await ctx.deployments.get(ctx.group, request.id)
    if deployment.status == Status.STOPPED:
        # Stopping twice is stopping once; but a retry may find STOPPED recorded and not yet
        # announced, so announce it (a repeat of the same announcement is dropped as a duplicate).
        await ctx.deployments.announce(ctx.group, request.id, causation=ctx.event_id)
        return
    if deployment.status not in STOPPABLE | {Status.STOPPING}:
        raise InvalidTransition(f"deployment {request.id} is {deployment.status.value}: only PENDING or "
                                "RUNNING deployments can be stopped")
    await ctx.set_status(request.id, Status.STOPPING, target_status="STOPPED")
    await ctx.backend.stop(ctx.group, request.id)
    await ctx.set_status(request.id, Status.STOPPED, running_replicas=0)
    await ctx.log(request.id, "stopped; every replica released")
