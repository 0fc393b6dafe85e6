"""An artifact exists at a URI: check the URI, register the artifact, stage its files locally.
Staging downloads the files into the model cache now (a local file:// artifact is linked there),
so that the first inference request of a deployment that uses it does not wait for them; the
cache makes room by evicting what no deployment uses, and refuses what cannot fit. With the
kserve backend nothing is staged: the artifact stays "registered" and KServe fetches it. An
``ai://<secret>/<path>`` URI is read through that object store secret of the artifact's group.
The API writes the record before it publishes the event; registering keeps what that record
holds and the event does not say (when it was created, its metrics and labels). The record says
where the artifact came from (its origin: the API, a webhook or an event, with the run and
parameters the event names).
"""

from zeroserve import ArtifactCreated, ArtifactStatus, Context, MalformedEvent, ZeroserveError, on
from zeroserve.artifacts.registration import origin_of, record_staging, register
from zeroserve.events import ID_PATTERN, is_id


@on(ArtifactCreated)
async def artifact_created(created: ArtifactCreated, ctx: Context) -> None:
    artifact_id = created.id or ctx.event_id
    if not is_id(artifact_id):
        raise MalformedEvent(f"artifact.created has no data.id and its CloudEvent id {artifact_id!r} cannot be "
                             f"one (ids must match {ID_PATTERN}): give the artifact an id")
    try:
        source = await ctx.models.locate(created.url, ctx.group, ctx.store.object_store_secrets)
    except ZeroserveError as refused:
        await ctx.emit(ArtifactStatus(
            id=artifact_id, status="rejected", url=created.url, reason=refused.reason, message=refused.message,
        ), subject=artifact_id)
        raise

    artifact = await register(ctx.store.artifacts, ctx.group, artifact_id, created, origin_of(ctx.event, created))
    if artifact is None:
        return  # registered through the API and deleted since, with its resource group: nothing to stage
    await ctx.emit(ArtifactStatus(id=artifact.id, status="registered", url=artifact.url), subject=artifact.id)

    if ctx.settings.backend == "kserve":
        return  # on a cluster KServe's storage-initializer fetches it for each replica: nothing to stage here
    try:
        local_path = await ctx.models.stage(source)
    except ZeroserveError as failed:
        await record_staging(ctx.store.artifacts, ctx.group, artifact_id,
                             status="rejected", reason=failed.reason, message=failed.message)
        await ctx.emit(ArtifactStatus(
            id=artifact.id, status="rejected", url=artifact.url, reason=failed.reason, message=failed.message,
        ), subject=artifact.id)
        raise

    await record_staging(ctx.store.artifacts, ctx.group, artifact_id, status="staged", local_path=str(local_path))
    await ctx.emit(ArtifactStatus(
        id=artifact.id, status="staged", url=artifact.url, local_path=str(local_path),
    ), subject=artifact.id)
