"""Delete a stopped or dead deployment: its backend objects and its record go; its logs stay."""

from zeroserve import Context, DeploymentDeleted, on
from zeroserve.deployments.lifecycle import check_can_delete


@on(DeploymentDeleted, claim=True)
async def deployment_deleted(request: DeploymentDeleted, ctx: Context) -> None:
    check_can_delete(ctx.deployment)
    await ctx.backend.delete(ctx.group, request.id)
    await ctx.set_deleted(request.id)
    await ctx.log(request.id, "deleted")
