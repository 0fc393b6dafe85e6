"""``GET /v2/lm/deployments/{id}/events``: a deployment's status and log events, live, as server-sent events (SSE).

The CloudEvent type is the SSE event name, its id the SSE id, its data the SSE data; the stream
starts with the deployment's current status and lasts until the client leaves or the deployment
is deleted. What happens is followed through ``zeroserve.deployments.logs.follow``.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import Depends
from fastapi.sse import EventSourceResponse, ServerSentEvent

from zeroserve.core.store import Deployment
from zeroserve.deployments import logs as deployment_logs
from zeroserve.gateway.deployments import DeploymentIdPath, deployment_or_404
from zeroserve.gateway.errors import answers
from zeroserve.gateway.routing import Router
from zeroserve.gateway.security import InGroup, PlatformDep

router = Router(tags=["Deployment"])

# What each event of the stream is: ``event:`` the CloudEvent type, ``id:`` usable as Last-Event-ID, ``data:``
# the event's data as JSON (a deployment.status or deployment.log).
EVENT_STREAM = {"type": "string", "description": "text/event-stream: event: <CloudEvent type>, id: <stream "
                "sequence, for Last-Event-ID>, data: <the CloudEvent's data, JSON>"}


async def followed(deploymentId: DeploymentIdPath, scope: InGroup, platform: PlatformDep) -> Deployment:  # noqa: N803
    # A dependency, not the stream's first step: an unknown id must answer 404 before streaming starts.
    return await deployment_or_404(platform.store.deployments, scope.group, deploymentId)


Followed = Annotated[Deployment, Depends(followed)]


@router.get("/v2/lm/deployments/{deploymentId}/events", response_class=EventSourceResponse,
            summary="Follow a deployment's status and log events (server-sent events)",
            responses={200: {"content": {"text/event-stream": {"schema": EVENT_STREAM}}}, **answers(404)})
async def events(deployment: Followed, platform: PlatformDep) -> AsyncIterator[ServerSentEvent]:
    updates = deployment_logs.follow(platform.bus, platform.store, deployment.group, deployment.id)
    async with contextlib.aclosing(updates):
        async for update in updates:
            yield ServerSentEvent(event=update.type, id=update.id,
                                  raw_data=json.dumps(update.data.model_dump(mode="json", by_alias=True,
                                                                             exclude_none=True)))
