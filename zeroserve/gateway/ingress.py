"""Event ingress over HTTP: ``POST /v2/events`` puts users' CloudEvents on the bus.

For clients that speak HTTP rather than NATS. The three content modes of the CloudEvents HTTP
binding are read (by ``zeroserve.core.binding``): binary (``ce-*`` headers, percent-encoded, body =
data), structured (``application/cloudevents+json``) and batch
(``application/cloudevents-batch+json``, a JSON array of structured events). Each event is validated
against the data model of its type before anything is published, so a mistake is a 400 that names
the field (and, in a batch, the event) rather than a dead letter later; a batch is published only
when every event in it is valid. Only the event types users send are accepted: the ones zeroserve
announces itself (``deployment.status``, ...) would be taken for the platform's word. Events go to
the caller's resource group, with the CloudEvent id as ``Nats-Msg-Id``, so sending the same event
twice has one effect.
"""

from __future__ import annotations

import json
import re
from typing import Any

from cloudevents.http import CloudEvent
from fastapi import Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ValidationError
from pydantic.json_schema import models_json_schema

from zeroserve.api import records
from zeroserve.core.binding import BATCH, STRUCTURED, BatchTooLarge, from_http, to_nats
from zeroserve.errors import MalformedEvent
from zeroserve.events import (
    EVENT_TYPES,
    ID_PATTERN,
    IN_TYPES,
    ArtifactCreated,
    is_id,
    parse_data,
)
from zeroserve.gateway.errors import ErrorAnswer, answers
from zeroserve.gateway.routing import Router
from zeroserve.gateway.security import InGroup, PlatformDep

# Events are small JSON documents; anything near this is a mistake or an attack, not a model.
MAX_BODY_BYTES = 1024 * 1024
MAX_BATCH = 1000
# The id becomes a NATS header (Nats-Msg-Id), which cannot carry spaces at its ends, CR/LF or non-ASCII.
_SAFE_ID = re.compile(r"^[\x21-\x7e]([\x20-\x7e]{0,254}[\x21-\x7e])?$")
# A source is a URI reference, any text (percent-encoded on its way to NATS), within a bound.
MAX_SOURCE = 1024


class AcceptedEvent(BaseModel):
    id: str
    type: str
    # True when an event with this id was already accepted (inside the dedupe window): not acted on twice.
    duplicate: bool


class Accepted(BaseModel):
    """202 of POST /v2/events."""

    group: str
    events: list[AcceptedEvent]


async def read_body(request: Request, limit: int = MAX_BODY_BYTES) -> bytes:
    """The request body, refused with 413 as soon as it is known to be over ``limit``."""
    length = request.headers.get("content-length")
    if length is not None and length.isdigit() and int(length) > limit:
        raise ErrorAnswer(413, "PayloadTooLarge", f"the body is {length} bytes; at most {limit} are accepted")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise ErrorAnswer(413, "PayloadTooLarge", f"the body is over {limit} bytes, the most accepted")
        chunks.append(chunk)
    return b"".join(chunks)


def as_described(event: CloudEvent) -> None:
    """Raise ``MalformedEvent`` unless the event's JSON data has the types the description gives it: JSON's
    own, none coerced (``false`` is no number, ``"1"`` no integer), as a reader of the description expects."""
    raw = event.get_data()
    if isinstance(raw, dict):
        try:
            EVENT_TYPES[event["type"]].model_validate_json(json.dumps(raw), strict=True)
        except ValidationError as error:
            where = ".".join(["data", *(str(part) for part in error.errors()[0]["loc"])])
            raise MalformedEvent(f"{event['type']}: {where}: {error.errors()[0]['msg']}") from None


def check(event: CloudEvent) -> None:
    """Raise ``MalformedEvent`` unless users may send this event and its data is valid."""
    event_type = event["type"]
    if event_type not in IN_TYPES:
        if event_type in EVENT_TYPES:
            raise MalformedEvent(f"type {event_type} is announced by zeroserve itself and cannot be sent; "
                                 f"events you may send: {', '.join(IN_TYPES)}")
        raise MalformedEvent(f"unknown event type {event_type!r}; events you may send: {', '.join(IN_TYPES)}")
    if not _SAFE_ID.fullmatch(event["id"]):  # match() would let a trailing newline into Nats-Msg-Id
        raise MalformedEvent(f"id {event['id'][:80]!r} must be 1-256 printable ASCII characters, "
                             "without spaces at either end")
    if not 0 < len(event["source"]) <= MAX_SOURCE:
        raise MalformedEvent(f"source must be 1-{MAX_SOURCE} characters (a URI reference), not {len(event['source'])}")
    data = parse_data(event)
    as_described(event)
    to_nats(event)  # attribute names and datacontenttype must fit NATS headers: refused now, not half-published
    # The function would dead-letter it later; the sender is here now and can fix it.
    if isinstance(data, ArtifactCreated) and data.id is None and not is_id(event["id"]):
        raise MalformedEvent(f"{event_type}: data.id: required when the event id {event['id'][:80]!r} "
                             f"cannot serve as artifact id (ids must match {ID_PATTERN})")



router = Router(tags=["events"])

COMPONENTS = "#/components/schemas/"
EVENT_SCHEMA = "SentEvent"


def event_schemas() -> dict[str, Any]:
    """The description's schemas of an event a user may send (``SentEvent``), one branch per type with
    that type's data, and the data's own schemas: what ``check`` accepts, as the description states it."""
    models = [EVENT_TYPES[event_type] for event_type in IN_TYPES]
    refs, top = models_json_schema([(model, "validation") for model in models],
                                   ref_template=COMPONENTS + "Sent{model}")
    schemas = {f"Sent{name}": schema for name, schema in top.get("$defs", {}).items()}
    branches = []
    for model in models:
        branch: dict[str, Any] = {"type": "object", "required": ["specversion", "id", "source", "type", "data"],
                                  # Extension attributes are accepted (lower-case letters and digits), not described.
                                  "additionalProperties": False, "properties": {
            "specversion": {"type": "string", "enum": ["1.0"]},
            "id": {"type": "string", "pattern": _SAFE_ID.pattern, "description": "Printable ASCII, 1-256"},
            "source": {"type": "string", "minLength": 1, "maxLength": MAX_SOURCE,
                       "description": "A URI reference; any text, percent-encoded on its way to NATS"},
            "type": {"type": "string", "enum": [model.event_type]},
            "data": refs[(model, "validation")]}}
        if model is ArtifactCreated:  # the event id serves as artifact id unless data.id is given
            branch["anyOf"] = [{"properties": {"id": {"pattern": ID_PATTERN}}},
                               {"properties": {"data": {"required": ["id"], "properties": {"id": {"type": "string"}}}}}]
        branches.append(branch)
    schemas[EVENT_SCHEMA] = {"oneOf": branches, "description": "A CloudEvent in structured mode"}
    return schemas


@router.post(
    "/v2/events", status_code=202, response_model=records.Accepted,
    summary="Publish CloudEvents (structured or batch mode; binary mode too) to the caller's resource group",
    description="One event (application/cloudevents+json) or several (application/cloudevents-batch+json, all "
    "published or none). Binary mode is accepted too though not described here, since what it needs is in "
    "headers: the data as the body, with ce-specversion, ce-id, ce-source and ce-type headers, percent-encoded.",
    responses=answers(400, 404, 413, meanings={
        400: "An event is not valid: the message names the field (and, in a batch, the event)",
        413: "The body is too large"}),
    openapi_extra={"requestBody": {"required": True, "content": {
        STRUCTURED: {"schema": {"$ref": f"{COMPONENTS}{EVENT_SCHEMA}"}, "description": "one event"},
        BATCH: {"schema": {"type": "array", "items": {"$ref": f"{COMPONENTS}{EVENT_SCHEMA}"}, "minItems": 1,
                           "maxItems": MAX_BATCH},
                "description": "several events; all are published or none (an id seen before is a duplicate, "
                               "published once)"},
    }}},
)
async def publish(request: Request, scope: InGroup, platform: PlatformDep) -> JSONResponse:
    body = await read_body(request)
    try:
        events = from_http(request.headers, body, accept=check, max_batch=MAX_BATCH)
    except BatchTooLarge as error:  # the description's maxItems: a request it calls invalid
        raise ErrorAnswer(400, "InvalidEvent", error.message) from None
    except MalformedEvent as error:
        raise ErrorAnswer(400, "InvalidEvent", error.message) from None
    accepted: list[dict[str, Any]] = []
    for event in events:
        # All valid: publish in order. If NATS fails half way, sending the batch again is safe:
        # the ids already published are dropped as duplicates.
        published = await platform.bus.publish(event, scope.group)
        accepted.append({"id": event["id"], "type": event["type"], "duplicate": published.duplicate})
    return JSONResponse({"group": scope.group, "events": accepted}, status_code=202)

