"""Deploy an artifact with a serving template on a resource plan, or update a deployment in place.
The template, the configuration (parameters and artifact bindings) and the plan render into one
KServe InferenceService, which the backend applies. A new deployment goes UNKNOWN -> PENDING ->
RUNNING; a request it can never satisfy leaves it DEAD with the reason. The same id again is an
update: the URL stays, the old version keeps serving until the new one is ready, and a bad update
is refused without touching what serves.
"""

import asyncio

from zeroserve import (
    ArtifactCreated,
    ArtifactNotFound,
    ArtifactPending,
    Context,
    DeploymentRequested,
    InvalidConfiguration,
    Status,
    on,
)
from zeroserve.deployments.lifecycle import applying, record_applied
from zeroserve.templates import validation
from zeroserve.templates.render import render


@on(DeploymentRequested, claim=True)
async def deployment_requested(request: DeploymentRequested, ctx: Context) -> None:
    serving = ctx.deployment.status == Status.RUNNING
    if request.configuration_id is None:  # made by an event: the configuration it amounts to, recorded
        request = await ctx.deployments.configured(ctx.group, request, made=ctx.deployment)
    # A failure in here: a new deployment ends DEAD, an update leaves the previous version serving.
    async with applying(ctx):
        isvc = await inference_service(request, ctx)
        details = status_details(request, isvc, ctx)
        if not serving:
            await ctx.set_status(request.id, Status.PENDING, target_status="RUNNING", **details)
        ready = await ctx.backend.apply(isvc)
    # Recorded once applied: a restart re-applies what last worked, never a refused update. When it
    # serves already, the spec and RUNNING's details are one write: nobody sees one without the other.
    if ready:
        await ctx.set_status(request.id, Status.RUNNING, applied=(request, isvc), **details)
        await ctx.log(request.id, f"serving {request.executable_id} at {details['deployment_url']}")
    else:  # and a stop or delete another runner handled meanwhile stays done
        await record_applied(ctx, request, isvc)


def status_details(request: DeploymentRequested, isvc: dict, ctx: Context) -> dict:
    predictor = isvc["spec"]["predictor"]
    return dict(
        deployment_url=ctx.deployments.url(request.id),
        min_replicas=predictor.get("minReplicas", 0),
        max_replicas=predictor.get("maxReplicas", 1),
        resource_plan=isvc["metadata"]["labels"].get("ai.sap.com/resourcePlan"),
        executable_id=request.executable_id,
        configuration_id=request.configuration_id,
    )


async def inference_service(request: DeploymentRequested, ctx: Context) -> dict:
    template = await ctx.executables.get(ctx.group, request.executable_id)
    if template is None:
        known = ", ".join(sorted(await ctx.executables.templates(ctx.group))) or "none"
        raise InvalidConfiguration(f"no serving template {request.executable_id!r} (known: {known})")
    artifacts = {}
    for name, artifact_id in request.input_artifacts.items():
        artifact = await ctx.store.artifacts.get(ctx.group, artifact_id)
        if artifact is None:
            missing = f"artifact {artifact_id!r} (input {name!r}) is not registered in {ctx.group}"
            # Its artifact.created, published before this request, may not be handled yet (another
            # function reads it, in parallel): retried with back-off, DEAD only if still missing at the end.
            if not ctx.final_attempt and await ctx.awaits("artifact_created", ArtifactCreated, artifact_id):
                raise ArtifactPending(f"{missing} yet: an artifact.created published before this request is "
                                      "still to be handled")
            raise ArtifactNotFound(missing)
        if artifact.status == "rejected":
            raise ArtifactNotFound(f"artifact {artifact_id!r} was rejected: {artifact.message}")
        ctx.models.deployable(artifact.url)  # on a cluster an ai:// artifact is refused here, not left to fail
        # ai:// URLs become what they point at through the group's object store secret: the
        # InferenceService carries a concrete URI (s3://, file://) and never the secret's keys.
        source = await ctx.models.locate(artifact.url, ctx.group, ctx.store.object_store_secrets)
        if source.private:
            # Staged now, with the group's keys: the backend finds this copy by its URI and group.
            await ctx.models.stage(source)
        artifacts[name] = source.uri
    # render() checks the object against KServe's InferenceService schema before it returns. The first
    # check reads that schema (640 kB, about 40 ms): in a thread, once; each render after takes about a
    # millisecond, here (a thread hop for each would cost a burst of deployments more than it saves).
    if not validation.prepared():
        await asyncio.to_thread(validation.prepare)
    return render(template, deployment_id=request.id, group=ctx.group, parameters=request.parameters,
                  artifacts=artifacts, plans=ctx.plans, settings=ctx.settings)
