"""An artifact exists at a URI: check the URI, register the artifact, stage its files locally.

Staging downloads the files into the model cache now (a local file:// artifact is linked there),
so that the first inference request of a deployment that uses it does not wait for them.
"""

import re

from zeroserve.errors import MalformedEvent, ZeroserveError
from zeroserve.events import ID_PATTERN, ArtifactCreated, ArtifactStatus
from zeroserve.runner import Context, on
from zeroserve.store import Artifact

VALID_ID = re.compile(ID_PATTERN)


@on(ArtifactCreated)
async def artifact_created(created: ArtifactCreated, ctx: Context) -> None:
    artifact_id = created.id or ctx.event_id
    if not VALID_ID.match(artifact_id):
        raise MalformedEvent(f"artifact.created has no data.id and its CloudEvent id {artifact_id!r} cannot be "
                             f"one (ids must match {ID_PATTERN}): give the artifact an id")
    artifact = Artifact(id=artifact_id, group=ctx.group, **created.model_dump(exclude={"id"}))
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
