"""What a deployment did, as this gateway saw it (zeroserve's own routes, under SAP's deployment path):
its last cold starts by phase (``/coldStarts``) and the requests it answered over the last minutes
(``/traffic``), for the console's charts. Both are held in memory by this process, so they tell what
this gateway answered since it started: several gateways each tell their own part. On a cluster
(the kserve backend) Knative's activator does the cold starts: there are none to tell here.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Query
from fastapi.responses import JSONResponse

from zeroserve.api import records
from zeroserve.core import metrics
from zeroserve.core.store import Deployment
from zeroserve.events import utc_text
from zeroserve.gateway.deployments import DeploymentIdPath
from zeroserve.gateway.errors import ErrorAnswer, answers
from zeroserve.gateway.params import stored
from zeroserve.gateway.routing import Router
from zeroserve.gateway.security import InGroup, PlatformDep
from zeroserve.platform import Platform

router = Router(tags=["Deployment"])


async def _deployment(platform: Platform, group: str, deployment_id: str) -> Deployment:
    deployment = await stored(platform.store.deployments, group, deployment_id)
    if deployment is None:
        # Gone (or never here): what this process held of it goes too.
        metrics.traffic.forget(group, deployment_id)
        raise ErrorAnswer(404, "DeploymentNotFound", f"no deployment {deployment_id} in resource group {group}")
    return deployment


@router.get(
    "/v2/lm/deployments/{deploymentId}/coldStarts", response_model=records.ColdStartList,
    summary="The deployment's last cold starts (up to 50, newest first) on this machine, where each went by phase "
    "(queued, replica-start, model-load, ready, forward), in ms; none on a cluster, where Knative's activator "
    "starts replicas", responses=answers(404))
async def cold_starts(deploymentId: DeploymentIdPath, scope: InGroup, platform: PlatformDep) -> dict[str, Any]:
    await _deployment(platform, scope.group, deploymentId)
    activator = platform.backend.activator
    found = activator.cold_starts.of(scope.group, deploymentId) if activator is not None else []
    return {"count": len(found), "resources": [
        {"replica": start.replica, "startedAt": utc_text(start.started_at), "totalMs": round(start.total_s * 1000, 1),
         "phases": {phase: round(seconds * 1000, 1) for phase, seconds in start.phases.items()}}
        for start in found]}


@router.get(
    "/v2/lm/deployments/{deploymentId}/traffic", response_model=records.Traffic,
    summary="The inference requests this gateway answered for the deployment in 10-second steps, oldest first, up "
    "to now (steps without requests included): requests, errors (status 400 or more) and the p50 and p95 "
    "latency in ms", responses=answers(404))
async def traffic(
    deploymentId: DeploymentIdPath, scope: InGroup, platform: PlatformDep,
    minutes: Annotated[int, Query(ge=1, le=60, description="How far back, in minutes")] = 15,
) -> JSONResponse:
    await _deployment(platform, scope.group, deploymentId)
    points = metrics.traffic.points(scope.group, deploymentId, minutes)
    # As it is: a step without requests has null latencies, which the Router's answers would leave out.
    return JSONResponse({"stepSeconds": metrics.traffic.step_s, "points": [
        {"time": utc_text(point.time), "requests": point.requests, "errors": point.errors,
         "p50Ms": point.p50_ms, "p95Ms": point.p95_ms} for point in points]})
