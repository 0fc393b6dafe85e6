"""Stop a deployment: STOPPING, every replica and resource released, then STOPPED."""

from zeroserve import Context, DeploymentStopped, Status, on
from zeroserve.deployments.lifecycle import check_can_stop


@on(DeploymentStopped, claim=True)
async def deployment_stopped(request: DeploymentStopped, ctx: Context) -> None:
    if ctx.deployment.status == Status.STOPPED:
        # Stopping twice is stopping once; but a retry may find STOPPED recorded and not yet
        # announced, so announce it (a repeat of the same announcement is dropped as a duplicate).
        await ctx.announce(request.id)
        return
    if ctx.deployment.status != Status.STOPPING:  # STOPPING: a retry finishes the stop it began
        check_can_stop(ctx.deployment)
    await ctx.set_status(request.id, Status.STOPPING, target_status="STOPPED")
    await ctx.backend.stop(ctx.group, request.id)
    await ctx.set_status(request.id, Status.STOPPED, running_replicas=0)
    await ctx.log(request.id, "stopped; every replica released")
