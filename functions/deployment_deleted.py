"""Delete a stopped or dead deployment: its backend objects and its record go; its logs stay."""

from zeroserve.core.runner import Context, on
from zeroserve.deployments.lifecycle import DELETABLE
from zeroserve.errors import InvalidTransition
from zeroserve.events import DeploymentDeleted


@on(DeploymentDeleted)
async def deployment_deleted(request: DeploymentDeleted, ctx: Context) -> None:
    # Claimed before it goes, so that a request handled after this delete (the API deletes UNKNOWN
    # deployments, whose request may still be queued) sees it is out of date and creates nothing.
    if not await ctx.deployments.claim(ctx.group, request.id, ctx.sequence, deleting=True):
        return  # a later request has acted on it: this redelivered delete is out of date
    deployment = await ctx.deployments.get(ctx.group, request.id)
    if deployment.status not in DELETABLE:
        raise InvalidTransition(f"deployment {request.id} is {deployment.status.value}: stop it before "
                                "deleting it (UNKNOWN, STOPPED or DEAD deployments can be deleted)")
    await ctx.backend.delete(ctx.group, request.id)
    await ctx.deployments.delete(ctx.group, request.id, causation=ctx.event_id)
    await ctx.log(request.id, "deleted")
