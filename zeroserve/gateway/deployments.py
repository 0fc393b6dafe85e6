"""SAP AI API's deployment routes: create, list, count, read, stop, update in place, delete.

Every write is checked here first, synchronously, against the store and SAP's lifecycle rules (a
refused move answers at once with the current status and what is allowed), and then published as
a lifecycle event that the functions act on; every read comes from the store. A deployment's logs
are ``gateway/logs.py``'s, its live status and log events ``gateway/sse.py``'s.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections.abc import Callable
from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import Body, Path, Query
from fastapi.responses import JSONResponse, PlainTextResponse
from pydantic import BaseModel, ConfigDict, Field, WithJsonSchema, field_validator

from zeroserve.api import records
from zeroserve.core.store import Configuration, Deployment, Registry
from zeroserve.deployments.index import Summary
from zeroserve.deployments.lifecycle import check_can_delete, check_can_reconfigure, check_can_stop
from zeroserve.errors import DeploymentNotFound, InvalidTransition, ZeroserveError
from zeroserve.events import (
    DeploymentDeleted,
    DeploymentRequested,
    DeploymentStopped,
    EventData,
    Status,
    ending,
    new_event,
    utc_text,
)
from zeroserve.gateway.errors import ErrorAnswer, answers, not_found
from zeroserve.gateway.params import SAP_ID, ExecutableIds, ScenarioFilter, stored, stored_or_404
from zeroserve.gateway.routing import Router
from zeroserve.gateway.security import InGroup, PlatformDep
from zeroserve.platform import Platform
from zeroserve.templates.modes import mode_of
from zeroserve.templates.render import check_values

log = logging.getLogger(__name__)

router = Router(tags=["Deployment"])

SOURCE = "/zeroserve/gateway"
# SAP's ttl: a number and a unit, minutes, hours or days, in either case (the spec's character
# class also admits a comma, which means nothing: refused here). Up to 6 digits: 999999 days end
# before the year 9999, after which no time can be told.
TTL_PATTERN = r"^[0-9]{1,6}[mMhHdD]$"
# Only the properties SAP requires, for $select=status.
SELECTED = ("id", "configurationId", "status", "createdAt", "modifiedAt")
STATUS_MESSAGE_LIMIT = 256  # SAP's maxLength of statusMessage

ConfigurationFilter = Annotated[str | None, Query(alias="configurationId", pattern=SAP_ID)]
StatusFilter = Annotated[
    Literal["PENDING", "RUNNING", "COMPLETED", "DEAD", "STOPPING", "STOPPED", "UNKNOWN"] | None,
    Query(alias="status"),
]

# A deployment id in a URL path, by SAP's pattern (events hold ids to zeroserve's, events.DeploymentId).
DeploymentIdPath = Annotated[str, Path(pattern=SAP_ID)]

Select = Annotated[Literal["status"] | None, Query(alias="$select", description="Only the status (and required ids)")]


class CreationRequest(BaseModel):
    """SAP's AiDeploymentCreationRequest."""

    model_config = ConfigDict(extra="ignore")

    configurationId: Annotated[str, Field(pattern=SAP_ID)]
    ttl: Annotated[str | None, Field(pattern=TTL_PATTERN)] = None

    @field_validator("ttl")
    @classmethod
    def _ends(cls, ttl: str | None) -> str | None:
        # The pattern admits any number of digits; the ttl check must be able to say when it ends.
        return None if ttl is None else ending(ttl)


class ModificationRequest(BaseModel):
    """SAP's AiDeploymentModificationRequest: a stop, or a new configuration, as the description says
    (``oneOf``): either field, not both and not neither, and neither may be null."""

    model_config = ConfigDict(extra="ignore", json_schema_extra={
        "oneOf": [{"required": ["targetStatus"]}, {"required": ["configurationId"]}]})

    targetStatus: Annotated[Literal["STOPPED"] | None, WithJsonSchema({"type": "string", "enum": ["STOPPED"]})] = None
    configurationId: Annotated[str | None, Field(pattern=SAP_ID),
                               WithJsonSchema({"type": "string", "pattern": SAP_ID})] = None

    @field_validator("targetStatus", "configurationId", mode="before")
    @classmethod
    def _given(cls, value: object) -> object:
        # Only a value given runs this: an absent field is None by default, a null one is refused.
        if value is None:
            raise ValueError("may be absent, not null")
        return value


class BulkItem(BaseModel):
    model_config = ConfigDict(extra="ignore")

    id: Annotated[str, Field(pattern=SAP_ID)]
    targetStatus: Literal["STOPPED", "DELETED"]


class BulkModificationRequest(BaseModel):
    """SAP's AiDeploymentBulkModificationRequest."""

    model_config = ConfigDict(extra="ignore")

    deployments: Annotated[list[BulkItem], Field(min_length=1, max_length=100)]


def new_deployment_id() -> str:
    # 16 characters like SAP's ids; a letter first, as KServe wants of an InferenceService name.
    return "d" + secrets.token_hex(8)[:15]


def time_text(moment: datetime | None) -> str | None:
    """``utc_text``, for a time a deployment may not have yet (absent from the answer then)."""
    return utc_text(moment) if moment else None


def view(deployment: Deployment, configuration: Configuration | None, select: str | None = None) -> dict[str, Any]:
    """The deployment as SAP's AiDeploymentResponseWithDetails shows it."""
    status_details = (
        {"reason": deployment.reason, **({"message": deployment.message} if deployment.message else {})}
        if deployment.reason else None
    )
    predictor_scaling: dict[str, Any] = {"runningReplicas": deployment.running_replicas}
    if deployment.min_replicas is not None:
        predictor_scaling["minReplicas"] = deployment.min_replicas
    if deployment.max_replicas is not None:
        predictor_scaling["maxReplicas"] = deployment.max_replicas
    details: dict[str, Any] = {"scaling": {"backendDetails": {"predictor": predictor_scaling}}}
    if deployment.resource_plan:
        details["resources"] = {"backendDetails": {"predictor": {"resourcePlan": deployment.resource_plan}}}
    body: dict[str, Any] = {
        "id": deployment.id,
        "deploymentUrl": deployment.deployment_url,
        "configurationId": deployment.configuration_id,
        "configurationName": configuration.name if configuration else None,
        "executableId": deployment.executable_id,
        "scenarioId": deployment.scenario_id,
        "status": deployment.status.value,
        "targetStatus": deployment.target_status,
        "statusMessage": deployment.message[:STATUS_MESSAGE_LIMIT] if deployment.message else None,
        "statusDetails": status_details,
        "lastOperation": deployment.last_operation,
        "latestRunningConfigurationId": deployment.latest_running_configuration_id,
        "ttl": deployment.ttl,
        "details": details,
        "createdAt": time_text(deployment.created_at),
        "modifiedAt": time_text(deployment.modified_at),
        "submissionTime": time_text(deployment.submitted_at),
        "startTime": time_text(deployment.started_at),
        "completionTime": time_text(deployment.completed_at),
    }
    if select == "status":
        body = {name: body[name] for name in SELECTED}
    # Absent rather than null: the spec types these as plain strings and objects.
    return {name: value for name, value in body.items() if value is not None}


async def deployment_or_404(registry: Registry[Deployment], group: str, id: str) -> Deployment:
    return await stored_or_404(registry, group, id, f"no deployment {id} in resource group {group}")


async def publish(platform: Platform, data: EventData, group: str) -> None:
    await platform.bus.publish(new_event(data, source=SOURCE, subject=getattr(data, "id", None)), group)


async def usable_configuration(platform: Platform, group: str, configuration_id: str) -> Configuration:
    """The configuration and its serving template, or a 400 that says which is missing."""
    configuration = await stored(platform.store.configurations, group, configuration_id)
    if configuration is None:
        raise ErrorAnswer(400, "ConfigurationNotFound",
                       f"no configuration {configuration_id} in resource group {group}")
    template = await platform.executables.get(group, configuration.executable_id)
    if template is None:
        known = ", ".join(sorted(await platform.executables.templates(group))) or "none"
        raise ErrorAnswer(400, "ExecutableNotFound", f"configuration {configuration_id} uses executable "
                       f"{configuration.executable_id!r}, which is not a serving template here (known: {known})")
    try:  # checked when it was created, but the template or the settings may have changed since
        check_values(template, {b.key: b.value for b in configuration.parameter_bindings},
                     settings=platform.settings)
    except ZeroserveError as refused:
        raise ErrorAnswer(400, refused.reason, f"configuration {configuration_id}: {refused.message}") from None
    await servable_artifacts(platform, group, configuration)
    return configuration


async def servable_artifacts(platform: Platform, group: str, configuration: Configuration) -> None:
    """A 400 now for an input artifact the backend's model servers cannot read (ai:// on a cluster)."""
    for binding in configuration.input_artifact_bindings:
        artifact = await platform.store.artifacts.get(group, binding.artifact_id)
        try:
            if artifact is not None:
                platform.models.deployable(artifact.url)
        except ZeroserveError as refused:
            raise ErrorAnswer(400, refused.reason, f"configuration {configuration.id}, input artifact "
                              f"{binding.key!r}: {refused.message}") from None


async def same_mode(platform: Platform, deployment: Deployment, configuration: Configuration) -> None:
    """On a cluster, a 412 now for an update into KServe's other mode, which KServe cannot make in place
    (the backend would refuse it later, and the previous version would keep serving)."""
    if platform.settings.backend != "kserve" or deployment.inference_service is None:
        return
    template = await platform.executables.get(deployment.group, configuration.executable_id)
    assert template is not None  # usable_configuration checked it
    wanted = check_values(template, {b.key: b.value for b in configuration.parameter_bindings},
                          settings=platform.settings)
    annotations = (deployment.inference_service.get("metadata") or {}).get("annotations") or {}
    running = mode_of(annotations, template.name)
    if running != wanted:
        raise ErrorAnswer(412, "DeploymentModeChanged", f"deployment {deployment.id} runs in KServe's {running} "
                          f"mode and configuration {configuration.id} asks for {wanted}, which KServe cannot change "
                          "in place: stop and delete the deployment, then create it again")


def requested(deployment_id: str, configuration: Configuration, ttl: str | None) -> DeploymentRequested:
    return DeploymentRequested(
        id=deployment_id, executable_id=configuration.executable_id, configuration_id=configuration.id,
        scenario_id=configuration.scenario_id,
        parameters={binding.key: binding.value for binding in configuration.parameter_bindings},
        input_artifacts={binding.key: binding.artifact_id for binding in configuration.input_artifact_bindings},
        ttl=ttl,
    )


async def with_configuration(platform: Platform, deployment: Deployment, select: str | None = None) -> dict[str, Any]:
    # An event may have named any configuration id, not only one the store can hold.
    configuration = (await stored(platform.store.configurations, deployment.group, deployment.configuration_id)
                     if deployment.configuration_id else None)
    return view(deployment, configuration, select)


def refused_now(check: Callable[[Deployment], None], deployment: Deployment) -> None:
    """SAP's lifecycle rule, checked when the call is made: 412 with the current status and what is allowed."""
    try:
        check(deployment)
    except InvalidTransition as refused:
        raise ErrorAnswer(412, refused.reason, refused.message) from None


async def stop(platform: Platform, group: str, deployment: Deployment) -> None:
    refused_now(check_can_stop, deployment)
    await publish(platform, DeploymentStopped(id=deployment.id), group)


async def delete(platform: Platform, group: str, deployment: Deployment) -> None:
    refused_now(check_can_delete, deployment)
    if deployment.status == Status.UNKNOWN:
        try:
            await platform.deployments.reserve_deletion(group, deployment.id)
        except InvalidTransition as moved_on:
            raise ErrorAnswer(412, "InvalidTransition", moved_on.message) from None
        except DeploymentNotFound:
            raise not_found(f"no deployment {deployment.id} in resource group {group}") from None
    await publish(platform, DeploymentDeleted(id=deployment.id), group)


async def matching(
    platform: Platform, group: str, executable_ids: str | None, configuration_id: str | None,
    scenario_id: str | None, status: str | None,
) -> list[Summary | Deployment]:
    """The group's deployments that pass the filters, newest first, ties by id (a stable order for
    paging): summaries from the deployment index, or whole records when the index lags the store."""
    executables = {part for part in executable_ids.split(",") if part} if executable_ids else None
    found: list[Summary] | list[Deployment] | None = await platform.fleet.summaries(group)
    if found is None:
        found = await platform.fleet.deployments(group)
    return [
        deployment for deployment in found
        if (executables is None or deployment.executable_id in executables)
        and (configuration_id is None or deployment.configuration_id == configuration_id)
        and (scenario_id is None or deployment.scenario_id == scenario_id)
        and (status is None or str(deployment.status) == status)
    ]


async def page_of(platform: Platform, found: list[Summary | Deployment], select: str | None) -> list[dict[str, Any]]:
    """The page's deployments as SAP shows them, their configurations read once each, at once."""
    deployments = [d if isinstance(d, Deployment) else platform.fleet.record(d) for d in found]
    present = [d for d in deployments if d is not None]
    ids: set[tuple[str, str | None]] = {(d.group, d.configuration_id) for d in present if d.configuration_id}
    # An event may have named any configuration id, not only one the store can hold.
    read = await asyncio.gather(*(stored(platform.store.configurations, group, id or "") for group, id in ids))
    configurations = dict(zip(ids, read, strict=True))
    return [view(d, configurations.get((d.group, d.configuration_id)), select) for d in present]


@router.post("/v2/lm/deployments", status_code=202, response_model=records.Created,
             summary="Create deployment", responses=answers(404))
async def create(body: CreationRequest, scope: InGroup, platform: PlatformDep) -> JSONResponse:
    group = scope.group
    configuration = await usable_configuration(platform, group, body.configurationId)
    # The event format takes lower-case units; SAP also accepts upper case.
    ttl = body.ttl.lower() if body.ttl else None
    request = requested(new_deployment_id(), configuration, ttl)
    # The record first, so that a GET right after this answer finds the deployment.
    deployment = await platform.deployments.request(group, request)
    await publish(platform, request, group)
    log.info("deployment %s/%s requested with configuration %s", group, request.id, configuration.id,
             extra={"deployment": request.id})
    location = f"{platform.settings.gateway_url}/v2/lm/deployments/{request.id}"
    content = {"id": request.id, "message": "Deployment scheduled.", "deploymentUrl": deployment.deployment_url,
               "status": Status.UNKNOWN.value, **({"ttl": ttl} if ttl else {})}
    return JSONResponse(content, status_code=202, headers={"Location": location})


@router.get("/v2/lm/deployments/$count", response_class=PlainTextResponse, summary="Get number of deployments",
            responses=answers(404))
async def count(
    scope: InGroup, platform: PlatformDep, executable_ids: ExecutableIds = None,
    configuration_id: ConfigurationFilter = None, scenario_id: ScenarioFilter = None, status: StatusFilter = None,
) -> PlainTextResponse:
    found = await matching(platform, scope.group, executable_ids, configuration_id, scenario_id, status)
    return PlainTextResponse(str(len(found)))


@router.get("/v2/lm/deployments", response_model=records.DeploymentList,
            summary="Get list of deployments", responses=answers(404))
async def query(
    scope: InGroup, platform: PlatformDep, executable_ids: ExecutableIds = None,
    configuration_id: ConfigurationFilter = None, scenario_id: ScenarioFilter = None, status: StatusFilter = None,
    top: Annotated[int, Query(alias="$top", ge=0, le=100000)] = 10000,
    skip: Annotated[int, Query(alias="$skip", ge=0)] = 0,
    select: Select = None,
) -> dict[str, Any]:
    found = await matching(platform, scope.group, executable_ids, configuration_id, scenario_id, status)
    # SAP's count is of every match, not of the page.
    return {"count": len(found), "resources": await page_of(platform, found[skip:skip + top], select)}


@router.patch("/v2/lm/deployments", status_code=202, response_model=records.BulkResults,
              summary="Stop or delete several deployments",
              responses=answers(404))
async def modify_many(scope: InGroup, body: BulkModificationRequest, platform: PlatformDep) -> dict[str, Any]:
    # SAP sends application/merge-patch+json; FastAPI reads any +json body as JSON.
    results: list[dict[str, Any]] = []
    seen: set[str] = set()
    for item in body.deployments:
        if item.id in seen:
            # Answered, not acted on: the description cannot say "each id once", so the request is valid.
            results.append({"id": item.id, "error": {"code": "Duplicate", "message": f"deployment {item.id} "
                            "appears more than once in this request: only its first change is made"}})
            continue
        seen.add(item.id)
        try:
            deployment = await deployment_or_404(platform.store.deployments, scope.group, item.id)
            if item.targetStatus == "STOPPED":
                await stop(platform, scope.group, deployment)
                message = "Deployment modification scheduled"
            else:
                await delete(platform, scope.group, deployment)
                message = "Deployment deletion scheduled"
            results.append({"id": item.id, "message": message})
        except ErrorAnswer as refused:
            results.append({"id": item.id, "error": {"code": refused.code, "message": refused.message}})
    return {"deployments": results}


@router.get("/v2/lm/deployments/{deploymentId}", response_model=records.Deployment,
            summary="Get information about specific deployment",
            responses=answers(404))
async def get(
    deploymentId: DeploymentIdPath, scope: InGroup, platform: PlatformDep, select: Select = None,
) -> dict[str, Any]:
    deployment = await deployment_or_404(platform.store.deployments, scope.group, deploymentId)
    return await with_configuration(platform, deployment, select)


@router.patch("/v2/lm/deployments/{deploymentId}", status_code=202, response_model=records.Created,
              summary="Stop a deployment or change its configuration", responses=answers(404, 412))
async def modify(
    deploymentId: DeploymentIdPath, scope: InGroup, body: Annotated[ModificationRequest, Body()],
    platform: PlatformDep,
) -> dict[str, Any]:
    deployment_id = deploymentId
    group = scope.group
    if (body.targetStatus is None) == (body.configurationId is None):
        raise ErrorAnswer(400, "BadRequest", "give either targetStatus (STOPPED) or configurationId, not both "
                       "and not neither")
    deployment = await deployment_or_404(platform.store.deployments, group, deployment_id)
    if body.targetStatus is not None:
        await stop(platform, group, deployment)
        return {"id": deployment_id, "message": "Deployment modification scheduled"}
    assert body.configurationId is not None
    refused_now(check_can_reconfigure, deployment)
    configuration = await usable_configuration(platform, group, body.configurationId)
    await same_mode(platform, deployment, configuration)
    # Same id, same URL: the functions update it in place and the old version serves meanwhile.
    await publish(platform, requested(deployment_id, configuration, deployment.ttl), group)
    return {"id": deployment_id, "message": "Deployment modification scheduled"}


@router.delete("/v2/lm/deployments/{deploymentId}", status_code=202, response_model=records.Created,
               summary="Mark deployment as deleted",
               responses=answers(404, 412))
async def remove(deploymentId: DeploymentIdPath, scope: InGroup, platform: PlatformDep) -> dict[str, Any]:
    await delete(platform, scope.group, await deployment_or_404(platform.store.deployments, scope.group, deploymentId))
    return {"id": deploymentId, "message": "Deployment deletion scheduled"}
