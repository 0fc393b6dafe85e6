"""SAP AI API's deployment routes: create, list, read, stop, update in place, delete, read logs,
and follow a deployment live.

Every write is checked here first, synchronously, against the store and SAP's lifecycle rules (a
refused move answers at once with the current status and what is allowed), and then published as
a lifecycle event that the functions act on; every read comes from the store, or, for logs, from
the logs stream, which keeps a deployment's lines after its replicas and its record are gone.
``GET /v2/lm/deployments/{id}/events`` streams the deployment's status and log events as
server-sent events (the CloudEvent type is the SSE event name, its id the SSE id, its data the
SSE data) until the client leaves or the deployment is deleted.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import re
import secrets
import time
from collections import deque
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Literal

import anyio
from cloudevents.http import CloudEvent
from fastapi import APIRouter, Body, Depends, Path, Query, Request
from fastapi.responses import JSONResponse, PlainTextResponse
from fastapi.sse import EventSourceResponse, ServerSentEvent
from nats.errors import TimeoutError as NatsTimeout
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy
from pydantic import BaseModel, ConfigDict, Field, field_validator

from zeroserve.core.binding import from_nats
from zeroserve.core.bus import LOGS_STREAM
from zeroserve.core.store import Configuration, Deployment, Registry
from zeroserve.deployments.lifecycle import DELETABLE, STOPPABLE
from zeroserve.errors import DeploymentNotFound, InvalidTransition, MalformedEvent
from zeroserve.events import (
    ID_PATTERN,
    DeploymentDeleted,
    DeploymentLog,
    DeploymentRequested,
    DeploymentStatus,
    DeploymentStopped,
    EventData,
    Status,
    ending,
    new_event,
    parse_data,
    subject_for,
)
from zeroserve.gateway.errors import ApiError, answers, not_found
from zeroserve.gateway.params import SAP_ID, ExecutableIds, ScenarioFilter, stored, stored_or_404
from zeroserve.gateway.security import InGroup, platform_of
from zeroserve.platform import Platform

log = logging.getLogger(__name__)

SOURCE = "/zeroserve/gateway"
# SAP's id pattern for deployments, configurations, executables and scenarios.
# SAP's ttl: a number and a unit, minutes, hours or days, in either case (the spec's character
# class also admits a comma, which means nothing: refused here).
TTL_PATTERN = r"^[0-9]+[mMhHdD]$"
# configurationId may change only while the deployment serves or is about to (SAP's rule).
RECONFIGURABLE = {Status.RUNNING, Status.PENDING}
# Only the properties SAP requires, for $select=status.
SELECTED = ("id", "configurationId", "status", "createdAt", "modifiedAt")
STATUS_MESSAGE_LIMIT = 256  # SAP's maxLength of statusMessage
# A logs query scans the group's log stream from its start time; these bound how long and how much.
LOG_QUERY_DEADLINE_S = 10.0
LOG_FETCH_BATCH = 512

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
    """SAP's AiDeploymentModificationRequest: a stop, or a new configuration."""

    model_config = ConfigDict(extra="ignore")

    targetStatus: Literal["STOPPED"] | None = None
    configurationId: Annotated[str | None, Field(pattern=SAP_ID)] = None


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


def _time(moment: datetime | None) -> str | None:
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z") if moment else None


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
        "createdAt": _time(deployment.created_at),
        "modifiedAt": _time(deployment.modified_at),
        "submissionTime": _time(deployment.submitted_at),
        "startTime": _time(deployment.started_at),
        "completionTime": _time(deployment.completed_at),
    }
    if select == "status":
        body = {name: body[name] for name in SELECTED}
    # Absent rather than null: the spec types these as plain strings and objects.
    return {name: value for name, value in body.items() if value is not None}


async def deployment_or_404(registry: Registry[Deployment], group: str, id: str) -> Deployment:
    return await stored_or_404(registry, group, id, f"no deployment {id} in resource group {group}")


async def followed(deploymentId: DeploymentIdPath, scope: InGroup, request: Request) -> Deployment:  # noqa: N803
    # A dependency, not the stream's first step: an unknown id must answer 404 before streaming starts.
    return await deployment_or_404(platform_of(request).store.deployments, scope.group, deploymentId)


Followed = Annotated[Deployment, Depends(followed)]


def router(platform: Platform) -> APIRouter:
    router = APIRouter(tags=["Deployment"])
    store = platform.store

    async def publish(data: EventData, group: str) -> None:
        await platform.bus.publish(new_event(data, source=SOURCE, subject=getattr(data, "id", None)), group)

    async def deployment_of(group: str, deployment_id: str) -> Deployment:
        return await deployment_or_404(store.deployments, group, deployment_id)

    async def usable_configuration(group: str, configuration_id: str) -> Configuration:
        """The configuration and its serving template, or a 400 that says which is missing."""
        configuration = await stored(store.configurations, group, configuration_id)
        if configuration is None:
            raise ApiError(400, "ConfigurationNotFound",
                           f"no configuration {configuration_id} in resource group {group}")
        if configuration.executable_id not in platform.templates:
            known = ", ".join(sorted(platform.templates)) or "none"
            raise ApiError(400, "ExecutableNotFound", f"configuration {configuration_id} uses executable "
                           f"{configuration.executable_id!r}, which is not a serving template here (known: {known})")
        return configuration

    def requested(deployment_id: str, configuration: Configuration, ttl: str | None) -> DeploymentRequested:
        return DeploymentRequested(
            id=deployment_id, executable_id=configuration.executable_id, configuration_id=configuration.id,
            scenario_id=configuration.scenario_id,
            parameters={binding.key: binding.value for binding in configuration.parameter_bindings},
            input_artifacts={binding.key: binding.artifact_id for binding in configuration.input_artifact_bindings},
            ttl=ttl,
        )

    async def with_configuration(deployment: Deployment, select: str | None = None) -> dict[str, Any]:
        # An event may have named any configuration id, not only one the store can hold.
        configuration = (await stored(store.configurations, deployment.group, deployment.configuration_id)
                         if deployment.configuration_id else None)
        return view(deployment, configuration, select)

    async def stop(group: str, deployment: Deployment) -> None:
        if deployment.status not in STOPPABLE:
            raise ApiError(412, "InvalidTransition", f"deployment {deployment.id} is {deployment.status.value}: only "
                           "PENDING or RUNNING deployments can be stopped"
                           + (" (it can be deleted)" if deployment.status in DELETABLE else ""))
        await publish(DeploymentStopped(id=deployment.id), group)

    async def delete(group: str, deployment: Deployment) -> None:
        if deployment.status not in DELETABLE:
            raise ApiError(412, "InvalidTransition", f"deployment {deployment.id} is {deployment.status.value}: only "
                           "UNKNOWN, STOPPED or DEAD deployments can be deleted"
                           + (" (stop it first)" if deployment.status in STOPPABLE else ""))
        if deployment.status == Status.UNKNOWN:
            try:
                await platform.deployments.reserve_deletion(group, deployment.id)
            except InvalidTransition as moved_on:
                raise ApiError(412, "InvalidTransition", moved_on.message) from None
            except DeploymentNotFound:
                raise not_found(f"no deployment {deployment.id} in resource group {group}") from None
        await publish(DeploymentDeleted(id=deployment.id), group)

    @router.post("/v2/lm/deployments", status_code=202, summary="Create deployment", responses=answers(404))
    async def create(body: CreationRequest, scope: InGroup) -> JSONResponse:
        group = scope.group
        configuration = await usable_configuration(group, body.configurationId)
        # The event format takes lower-case units; SAP also accepts upper case.
        ttl = body.ttl.lower() if body.ttl else None
        request = requested(new_deployment_id(), configuration, ttl)
        # The record first, so that a GET right after this answer finds the deployment.
        deployment = await platform.deployments.request(group, request)
        await publish(request, group)
        log.info("deployment %s/%s requested with configuration %s", group, request.id, configuration.id,
                 extra={"deployment": request.id})
        location = f"{platform.settings.gateway_url}/v2/lm/deployments/{request.id}"
        content = {"id": request.id, "message": "Deployment scheduled.", "deploymentUrl": deployment.deployment_url,
                   "status": Status.UNKNOWN.value, **({"ttl": ttl} if ttl else {})}
        return JSONResponse(content, status_code=202, headers={"Location": location})

    async def matching(
        group: str, executable_ids: str | None, configuration_id: str | None, scenario_id: str | None,
        status: str | None,
    ) -> list[Deployment]:
        executables = {part for part in executable_ids.split(",") if part} if executable_ids else None
        found = [
            deployment for deployment in await platform.store.deployments.list(group)
            if (executables is None or deployment.executable_id in executables)
            and (configuration_id is None or deployment.configuration_id == configuration_id)
            and (scenario_id is None or deployment.scenario_id == scenario_id)
            and (status is None or deployment.status.value == status)
        ]
        # Newest first, ties by id: a stable order for paging.
        return sorted(found, key=lambda d: (-d.created_at.timestamp(), d.id))

    @router.get("/v2/lm/deployments/$count", response_class=PlainTextResponse, summary="Get number of deployments",
                responses=answers(404))
    async def count(
        scope: InGroup, executable_ids: ExecutableIds = None, configuration_id: ConfigurationFilter = None,
        scenario_id: ScenarioFilter = None, status: StatusFilter = None,
    ) -> PlainTextResponse:
        found = await matching(scope.group, executable_ids, configuration_id, scenario_id, status)
        return PlainTextResponse(str(len(found)))

    @router.get("/v2/lm/deployments", summary="Get list of deployments", responses=answers(404))
    async def query(
        scope: InGroup, executable_ids: ExecutableIds = None, configuration_id: ConfigurationFilter = None,
        scenario_id: ScenarioFilter = None, status: StatusFilter = None,
        top: Annotated[int, Query(alias="$top", ge=0, le=100000)] = 10000,
        skip: Annotated[int, Query(alias="$skip", ge=0)] = 0,
        select: Select = None,
    ) -> dict[str, Any]:
        found = await matching(scope.group, executable_ids, configuration_id, scenario_id, status)
        page = found[skip:skip + top]
        # SAP's count is of every match, not of the page.
        return {"count": len(found), "resources": [await with_configuration(d, select) for d in page]}

    @router.patch("/v2/lm/deployments", status_code=202, summary="Stop or delete several deployments",
                  responses=answers(404))
    async def modify_many(scope: InGroup, body: BulkModificationRequest) -> dict[str, Any]:
        # SAP sends application/merge-patch+json; FastAPI reads any +json body as JSON.
        ids = [item.id for item in body.deployments]
        if len(set(ids)) != len(ids):
            raise ApiError(400, "BadRequest", "body.deployments: each deployment may appear once")
        results: list[dict[str, Any]] = []
        for item in body.deployments:
            try:
                deployment = await deployment_of(scope.group, item.id)
                if item.targetStatus == "STOPPED":
                    await stop(scope.group, deployment)
                    message = "Deployment modification scheduled"
                else:
                    await delete(scope.group, deployment)
                    message = "Deployment deletion scheduled"
                results.append({"id": item.id, "message": message})
            except ApiError as refused:
                results.append({"id": item.id, "error": {"code": refused.code, "message": refused.message}})
        return {"deployments": results}

    @router.get("/v2/lm/deployments/{deploymentId}", summary="Get information about specific deployment",
                responses=answers(404))
    async def get(deploymentId: DeploymentIdPath, scope: InGroup, select: Select = None) -> dict[str, Any]:
        return await with_configuration(await deployment_of(scope.group, deploymentId), select)

    @router.patch("/v2/lm/deployments/{deploymentId}", status_code=202,
                  summary="Stop a deployment or change its configuration", responses=answers(404, 412))
    async def modify(
        deploymentId: DeploymentIdPath, scope: InGroup, body: Annotated[ModificationRequest, Body()],
    ) -> dict[str, Any]:
        deployment_id = deploymentId
        group = scope.group
        if (body.targetStatus is None) == (body.configurationId is None):
            raise ApiError(400, "BadRequest", "give either targetStatus (STOPPED) or configurationId, not both "
                           "and not neither")
        deployment = await deployment_of(group, deployment_id)
        if body.targetStatus is not None:
            await stop(group, deployment)
            return {"id": deployment_id, "message": "Deployment modification scheduled"}
        assert body.configurationId is not None
        if deployment.status not in RECONFIGURABLE:
            raise ApiError(412, "InvalidTransition", f"deployment {deployment_id} is {deployment.status.value}: its "
                           "configuration can change only while it is RUNNING or PENDING")
        configuration = await usable_configuration(group, body.configurationId)
        # Same id, same URL: the functions update it in place and the old version serves meanwhile.
        await publish(requested(deployment_id, configuration, deployment.ttl), group)
        return {"id": deployment_id, "message": "Deployment modification scheduled"}

    @router.delete("/v2/lm/deployments/{deploymentId}", status_code=202, summary="Mark deployment as deleted",
                   responses=answers(404, 412))
    async def remove(deploymentId: DeploymentIdPath, scope: InGroup) -> dict[str, Any]:
        await delete(scope.group, await deployment_of(scope.group, deploymentId))
        return {"id": deploymentId, "message": "Deployment deletion scheduled"}

    @router.get("/v2/lm/deployments/{deploymentId}/logs", summary="Get logs of specific deployment",
                responses=answers(404))
    async def logs(
        deploymentId: DeploymentIdPath, scope: InGroup,
        top: Annotated[int, Query(alias="$top", ge=1, le=5000)] = 1000,
        start: Annotated[datetime | None, Query(description="RFC 3339; defaults to an hour ago")] = None,
        end: Annotated[datetime | None, Query(description="RFC 3339; defaults to now")] = None,
        order: Annotated[Literal["asc", "desc"], Query(alias="$order")] = "asc",
    ) -> dict[str, Any]:
        deployment_id = deploymentId
        group = scope.group
        try:  # in UTC, where a time near year 1 or 9999 (or an hour before end) may not exist
            end_at = _aware(end).astimezone(UTC) if end else datetime.now(UTC)
            start_at = _aware(start).astimezone(UTC) if start else end_at - timedelta(hours=1)
        except OverflowError:
            raise ApiError(400, "BadRequest", "start and end (and the default start, an hour before end) must lie "
                           "between the years 1 and 9999 in UTC") from None
        if start_at > end_at:
            raise ApiError(400, "BadRequest", "start is after end")
        valid = re.fullmatch(ID_PATTERN, deployment_id) is not None
        records = await read_logs(platform, group, deployment_id, start_at, end_at, top, order) if valid else []
        # Logs outlive the deployment; an id that never had either is unknown.
        if not records and await stored(store.deployments, group, deployment_id) is None:
            raise not_found(f"no deployment {deployment_id} in resource group {group}, and no logs of one "
                            f"between {_time(start_at)} and {_time(end_at)}")
        return {"data": {"result": [
            {"timestamp": _time(record.timestamp), "msg": record.message, "source": record.source}
            for record in records
        ]}}

    @router.get("/v2/lm/deployments/{deploymentId}/events", response_class=EventSourceResponse,
                summary="Follow a deployment's status and log events (server-sent events)", responses=answers(404))
    async def events(deployment: Followed) -> AsyncIterator[ServerSentEvent]:
        async for event in follow(platform, deployment):
            yield event

    return router



def _aware(moment: datetime) -> datetime:
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


async def read_logs(
    platform: Platform, group: str, deployment_id: str, start: datetime, end: datetime, top: int, order: str,
) -> list[DeploymentLog]:
    """The deployment's log records between ``start`` and ``end``, oldest first (``asc``) or newest first.

    An ephemeral consumer starts at ``start`` on the group's log subject and reads what the stream
    holds up to ``end``, then stops: it never waits for lines yet to come, and gives up after
    LOG_QUERY_DEADLINE_S with what it has. The subject carries the group, not the deployment, so
    other deployments' lines are read and skipped.
    """
    subject = subject_for(DeploymentLog.event_type, group)
    config = ConsumerConfig(
        deliver_policy=DeliverPolicy.BY_START_TIME, opt_start_time=start, ack_policy=AckPolicy.NONE,
        filter_subject=subject, mem_storage=True, inactive_threshold=30.0,
    )
    subscription = await platform.bus.js.pull_subscribe(subject, stream=LOGS_STREAM, config=config)
    # asc keeps the first `top`, desc the last `top`.
    kept: deque[DeploymentLog] = deque(maxlen=None if order == "asc" else top)
    info = await subscription.consumer_info()
    try:
        pending = info.num_pending or 0
        deadline = time.monotonic() + LOG_QUERY_DEADLINE_S
        while pending > 0 and time.monotonic() < deadline:
            try:
                messages = await subscription.fetch(batch=min(pending, LOG_FETCH_BATCH), timeout=1.0)
            except (TimeoutError, NatsTimeout):
                continue
            for message in messages:
                pending = message.metadata.num_pending
                if message.metadata.timestamp > end:
                    pending = 0  # the stream is in publishing order: everything after is later
                    break
                record = _log_record(message.headers, message.data)
                if record is None or record.id != deployment_id or not start <= record.timestamp <= end:
                    continue
                kept.append(record)
                if order == "asc" and len(kept) >= top:
                    pending = 0
                    break
    finally:
        with contextlib.suppress(Exception):
            await subscription.unsubscribe()
        with contextlib.suppress(Exception):
            await platform.bus.js.delete_consumer(LOGS_STREAM, info.name)
    records = sorted(kept, key=lambda r: r.timestamp)
    return records if order == "asc" else records[::-1]


def _log_record(headers: dict[str, str] | None, body: bytes) -> DeploymentLog | None:
    try:
        data = parse_data(from_nats(headers, body))
    except MalformedEvent as error:  # someone published junk on the log subject: skip it, say so
        log.warning("skipped a malformed log record: %s", error)
        return None
    return data if isinstance(data, DeploymentLog) else None


async def follow(platform: Platform, deployment: Deployment) -> AsyncIterator[ServerSentEvent]:
    """The deployment's status and log events as they happen, starting with its current status."""
    group, deployment_id = deployment.group, deployment.id
    queue: asyncio.Queue[tuple[CloudEvent, EventData]] = asyncio.Queue(maxsize=1000)

    async def arrived(message: Any) -> None:
        try:
            event = from_nats(message.headers, message.data)
            data = parse_data(event)
        except MalformedEvent:
            return
        if getattr(data, "id", None) != deployment_id:
            return
        if queue.full():  # a client that does not read: drop its oldest rather than grow without bound
            queue.get_nowait()
        queue.put_nowait((event, data))

    nc = platform.bus.nc
    subscriptions = [
        await nc.subscribe(subject_for(event_type, group), cb=arrived)
        for event_type in (DeploymentStatus.event_type, DeploymentLog.event_type)
    ]
    try:
        # Subscribed before reading the record: a change in between is seen at least once.
        current = await platform.store.deployments.get(group, deployment_id)
        if current is None:
            return
        yield ServerSentEvent(event=DeploymentStatus.event_type,
                              raw_data=json.dumps(current.status_event().model_dump(
                                  mode="json", by_alias=True, exclude_none=True)))
        while True:
            event, data = await queue.get()
            yield ServerSentEvent(event=str(event["type"]), id=str(event["id"]),
                                  raw_data=json.dumps(data.model_dump(mode="json", by_alias=True, exclude_none=True)))
            if isinstance(data, DeploymentStatus) and data.target_status == "DELETED":
                return
    finally:
        # The request's cancel scope is cancelled when the client leaves: shield the unsubscribe.
        with anyio.CancelScope(shield=True):
            for subscription in subscriptions:
                with contextlib.suppress(Exception):
                    await subscription.unsubscribe()
