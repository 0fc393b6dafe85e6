"""An artifact exists at a URI: check the URI, register the artifact, stage its files locally.

Staging copies (or downloads) the files into the model cache now, so that the first inference
request of a deployment that uses the artifact does not wait for them.
"""

from zeroserve.errors import ZeroserveError
from zeroserve.events import ArtifactCreated, ArtifactStatus
from zeroserve.runner import Context, on
from zeroserve.store import Artifact


@on(ArtifactCreated)
async def artifact_created(created: ArtifactCreated, ctx: Context) -> None:
    artifact = Artifact(
        id=created.id or ctx.event_id, group=ctx.group, **created.model_dump(exclude={"id"})
    )
    try:
        ctx.models.check(artifact.url)
    except ZeroserveError as refused:
        await ctx.emit(ArtifactStatus(
            id=artifact.id, status="rejected", url=artifact.url, reason=refused.reason, message=refused.message,
        ), subject=artifact.id)
        raise

    await ctx.store.artifacts.put(ctx.group, artifact.id, artifact)
    await ctx.emit(ArtifactStatus(id=artifact.id, status="registered", url=artifact.url), subject=artifact.id)

    try:
        local_path = await ctx.models.stage(artifact.url)
    except ZeroserveError as failed:
        await ctx.store.artifacts.put(ctx.group, artifact.id, artifact.model_copy(update={
            "status": "rejected", "reason": failed.reason, "message": failed.message,
        }))
        await ctx.emit(ArtifactStatus(
            id=artifact.id, status="rejected", url=artifact.url, reason=failed.reason, message=failed.message,
        ), subject=artifact.id)
        raise

    await ctx.store.artifacts.put(ctx.group, artifact.id, artifact.model_copy(update={
        "status": "staged", "local_path": str(local_path),
    }))
    await ctx.emit(ArtifactStatus(
        id=artifact.id, status="staged", url=artifact.url, local_path=str(local_path),
    ), subject=artifact.id)
