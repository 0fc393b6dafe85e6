"""``GET /v2/lm/deployments/{id}/events``: a deployment's status and log events, live, as server-sent events (SSE).

The CloudEvent type is the SSE event name, its data the SSE data, and the SSE id its position in the
streams that keep it (``gateway/replay.py``): a client that reconnects with ``Last-Event-ID`` gets every
event after that one, none twice. A fresh stream starts with the deployment's current status; it lasts
until the client leaves or the deployment is deleted.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import Depends, Header
from fastapi.sse import EventSourceResponse, ServerSentEvent

from zeroserve.core.store import Deployment
from zeroserve.gateway import replay
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
# Any text: what a browser or proxy sends back is the last id it saw, but a value that is not one of this
# stream's positions (another server's, a blank) starts a fresh stream rather than failing the reconnect.
LastEventId = Annotated[str | None, Header(alias="Last-Event-ID", max_length=100, description=(
    "The id of the last event received (<events sequence>.<logs sequence>): the stream goes on after it "
    "(replayed from JetStream); any other value starts a fresh stream"))]


@router.get("/v2/lm/deployments/{deploymentId}/events", response_class=EventSourceResponse,
            summary="Follow a deployment's status and log events (server-sent events); a reconnecting client "
            "gives the last id it saw as Last-Event-ID and gets every event after it",
            responses={200: {"content": {"text/event-stream": {"schema": EVENT_STREAM}}}, **answers(404)})
async def events(deployment: Followed, platform: PlatformDep, last_event_id: LastEventId = None,
                 ) -> AsyncIterator[ServerSentEvent]:
    since = replay.Position.parse(last_event_id) if last_event_id and replay.is_position(last_event_id) else None
    updates = replay.follow(platform.bus, platform.store, deployment.group, deployment.id, since)
    async with contextlib.aclosing(updates):
        async for update, position in updates:
            yield ServerSentEvent(event=update.type, id=str(position),
                                  raw_data=json.dumps(update.data.model_dump(mode="json", by_alias=True,
                                                                             exclude_none=True)))
