"""Delete a stopped or dead deployment: its backend objects and its record go; its logs stay."""

from zeroserve.core.runner import Context, on
from zeroserve.deployments.lifecycle import check_can_delete
from zeroserve.events import DeploymentDeleted


@on(DeploymentDeleted, claim=True)
async def deployment_deleted(request: DeploymentDeleted, ctx: Context) -> None:
    check_can_delete(ctx.deployment)
    await ctx.backend.delete(ctx.group, request.id)
    await ctx.set_deleted(request.id)
    await ctx.log(request.id, "deleted")
