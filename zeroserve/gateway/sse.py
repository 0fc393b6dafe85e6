"""Live events as server-sent events (SSE): ``GET /v2/lm/deployments/{id}/events``, a deployment's status and
log events, and ``GET /v2/events/stream``, every event of the caller's resource group.

The CloudEvent type is the SSE event name and the SSE id its position in the streams that keep it
(``gateway/replay.py``): a client that reconnects with ``Last-Event-ID`` gets every event after that one,
none twice. A deployment's stream carries each event's data and starts with the deployment's current
status; it lasts until the client leaves or the deployment is deleted. A group's stream carries each whole
CloudEvent (JSON: id, type, source, subject, time, data, ...) from the moment it is opened, until the client
leaves.
"""

from __future__ import annotations

import contextlib
import json
import re
from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import Depends, Header, Query
from fastapi.sse import EventSourceResponse, ServerSentEvent

from zeroserve.core.binding import to_structured
from zeroserve.core.store import Deployment
from zeroserve.events import EVENT_TYPES, PREFIX
from zeroserve.gateway import replay
from zeroserve.gateway.deployments import DeploymentIdPath, deployment_or_404
from zeroserve.gateway.errors import ErrorAnswer, answers
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


GROUP_EVENT_STREAM = {"type": "string", "description": "text/event-stream: event: <CloudEvent type>, id: <stream "
                      "sequence, for Last-Event-ID>, data: <the CloudEvent, JSON (structured mode)>"}
# Each type in full or without io.zeroserve., as the description states it (so a fuzzer's "0" is a 400 it expects).
_TYPE = "(" + re.escape(PREFIX) + ")?(" + "|".join(re.escape(t.removeprefix(PREFIX)) for t in EVENT_TYPES) + ")"
EventTypes = Annotated[str | None, Query(
    alias="types", max_length=2000, pattern=rf"^{_TYPE}(,{_TYPE})*$", description=(
        "Only these event types, comma-separated (io.zeroserve. may be left out); deployment.log only when "
        "named here. Without it: every event of the group but the deployment logs"))]


def event_types(text: EventTypes = None) -> frozenset[str] | None:
    """The event types a ``types`` query names, in full; 400 naming the first that is no event type (a dependency,
    so that the 400 comes before streaming starts)."""
    if text is None:
        return None
    named = [name if name.startswith(PREFIX) else PREFIX + name for name in text.split(",")]
    unknown = [name for name in named if name not in EVENT_TYPES]
    if unknown:
        raise ErrorAnswer(400, "BadRequest", f"query.types: {unknown[0][:100]!r} is not an event type; the types "
                          f"are {', '.join(EVENT_TYPES)}")
    return frozenset(named)


async def start(platform: PlatformDep, last_event_id: LastEventId = None) -> replay.Position:
    """Where a group's stream starts: after Last-Event-ID, or where the streams end now. Fixed before the answer
    starts, so that an event published once a client has the answer's head is always in its stream."""
    if last_event_id and replay.is_position(last_event_id):
        return replay.Position.parse(last_event_id)
    return await replay.now(platform.bus)


@router.get("/v2/events/stream", response_class=EventSourceResponse, tags=["events"],
            summary="Follow every event of the resource group (server-sent events): artifacts, configurations, "
            "deployment requests and statuses, and deployment logs when types names them; each message's data is "
            "the whole CloudEvent; a reconnecting client gives the last id it saw as Last-Event-ID",
            responses={200: {"content": {"text/event-stream": {"schema": GROUP_EVENT_STREAM}}}, **answers(400, 404)})
async def group_events(scope: InGroup, platform: PlatformDep,
                       wanted: Annotated[frozenset[str] | None, Depends(event_types)],
                       since: Annotated[replay.Position, Depends(start)]) -> AsyncIterator[ServerSentEvent]:
    events = replay.follow_group(platform.bus, scope.group, wanted, since)
    async with contextlib.aclosing(events):
        async for event, position in events:
            yield ServerSentEvent(event=str(event["type"]), id=str(position), raw_data=to_structured(event).decode())
