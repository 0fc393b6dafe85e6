"""Webhooks over HTTP: senders that trigger work (in), and subscriptions to what happens (out).

In: ``POST /v2/webhooks/<name>`` for each sender configured in ``settings.webhooks``. There is no
token: a call is believed when its Standard Webhooks signature matches the source's secret, its
timestamp is inside ``webhook_tolerance_s`` of now, and its ``webhook-id`` has not been seen
before (seen ids are kept in a JetStream KV bucket that forgets them once their timestamps could
no longer pass, so every gateway of a cluster knows them). The body becomes events by the source's
``kind``: ``s3`` (bucket notifications), ``mlflow`` (model-registry webhooks) or ``generic`` (the
body is the data of one event type). Event ids derive from the webhook-id, so a sender that sends
again after a lost response causes nothing new.

Out: ``/v2/subscriptions`` manages, per resource group, where the platform's announcements are
delivered (by ``zeroserve.webhooks.dispatcher.Dispatcher``) and the secret they are signed with. A URL whose
host is or resolves to an address that is not public is refused (400) unless the operator allows
its network (``webhook_allowed_networks``; see ``zeroserve.webhooks.targets``).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import re
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote_plus, urlsplit

from cloudevents.http import CloudEvent
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from nats.js.api import KeyValueConfig, StorageType
from nats.js.errors import BucketNotFoundError, KeyNotFoundError
from nats.js.kv import KeyValue
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator
from pydantic.alias_generators import to_camel

from zeroserve.artifacts.uris import unreadable
from zeroserve.core.store import Subscription
from zeroserve.errors import MalformedEvent
from zeroserve.events import (
    EVENT_TYPES,
    ID_PATTERN,
    IN_TYPES,
    OUT_TYPES,
    PREFIX,
    ArtifactCreated,
    DeploymentRequested,
    EventData,
    Label,
    content_id,
    new_event,
    parse_data,
)
from zeroserve.gateway.errors import ApiError, answers, not_found
from zeroserve.gateway.ingress import read_body
from zeroserve.gateway.params import stored_or_404
from zeroserve.gateway.security import InGroup
from zeroserve.platform import Platform
from zeroserve.settings import WebhookSource
from zeroserve.webhooks.signatures import InvalidSignature, new_secret, verify
from zeroserve.webhooks.targets import ForbiddenTarget, UnresolvableTarget, check_target

log = logging.getLogger(__name__)

SEEN_BUCKET = "zeroserve_webhook_ids"
_ID = re.compile(ID_PATTERN)
# MLflow signs like Standard Webhooks (v1,<base64> over id.timestamp.body; mlflow/webhooks/delivery.py)
# but under its own header names, and with the UTF-8 bytes of its secret as the key.
_MLFLOW_HEADERS = ("x-mlflow-delivery-id", "x-mlflow-timestamp", "x-mlflow-signature")
_STANDARD_HEADERS = ("webhook-id", "webhook-timestamp", "webhook-signature")


# --- webhooks in ----------------------------------------------------------------------------------------


class Unusable(Exception):
    """The webhook is genuine but its body cannot become events (400)."""


class Misconfigured(Exception):
    """The source's settings cannot work: the operator's to fix, not the sender's (500)."""


@dataclass
class Mapped:
    """What one webhook becomes: events, and a note on what was left out."""

    events: list[EventData] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


class SeenIds:
    """The webhook-ids already acted on, for at least as long as a replay could pass the time check."""

    def __init__(self, platform: Platform) -> None:
        self.platform = platform
        # A timestamp passes from tolerance before acceptance until tolerance after: twice that, plus slack.
        self.ttl_s = 2 * platform.settings.webhook_tolerance_s + 60
        self._kv: KeyValue | None = None
        self._lock = asyncio.Lock()

    async def bucket(self) -> KeyValue:
        async with self._lock:
            if self._kv is None:
                js = self.platform.bus.js
                try:
                    kv = await js.key_value(SEEN_BUCKET)
                except BucketNotFoundError:
                    kv = await js.create_key_value(KeyValueConfig(bucket=SEEN_BUCKET, ttl=self.ttl_s, history=1,
                                                                  storage=StorageType.FILE))
                else:
                    status = await kv.status()
                    if status.ttl is None or status.ttl < self.ttl_s:  # the tolerance was raised since
                        config = status.stream_info.config
                        config.max_age = self.ttl_s
                        await js.update_stream(config)
                self._kv = kv
            return self._kv

    @staticmethod
    def key(source: str, webhook_id: str) -> str:
        return hashlib.sha256(f"{source}\n{webhook_id}".encode()).hexdigest()

    async def timestamp(self, source: str, webhook_id: str) -> str | None:
        """The timestamp the id was first accepted with, or None when it was not seen."""
        try:
            entry = await (await self.bucket()).get(self.key(source, webhook_id))
        except KeyNotFoundError:
            return None
        return entry.value.decode() if entry.value is not None else None

    async def remember(self, source: str, webhook_id: str, timestamp: str) -> None:
        await (await self.bucket()).put(self.key(source, webhook_id), timestamp.encode())


def derived_id(text: str, suffix: str = "", *, unique: str | None = None) -> str:
    """An id that matches ID_PATTERN, readable from ``text``; hashed with ``unique`` when that is needed
    to keep two different things apart (the slug lost characters, or was cut)."""
    slug = re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")
    room = 63 - len(suffix)
    if slug != text or len(slug) > room or unique is not None:
        digest = hashlib.sha256((unique or text).encode()).hexdigest()[:8]
        slug = (slug[: room - 9].strip("-") or "x") + "-" + digest
    return slug + suffix


def _object(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def s3_events(name: str, source: WebhookSource, body: Any) -> Mapped:
    """S3 (AWS, MinIO, ...) bucket notifications, ``{"Records": [...]}``: each new object is an artifact."""
    if not isinstance(body, dict) or not isinstance(body.get("Records"), list):
        return Mapped(notes=["no Records in the notification (a test event?): nothing to do"])
    mapped = Mapped()
    for index, record in enumerate(body["Records"]):
        if not isinstance(record, dict):
            raise Unusable(f"Records[{index}] is not an object")
        event_name = str(record.get("eventName", "")).removeprefix("s3:")
        if not event_name.startswith("ObjectCreated:"):
            mapped.notes.append(f"Records[{index}]: {event_name or 'no eventName'} is not acted on")
            continue
        s3 = _object(record.get("s3"))
        bucket = _object(s3.get("bucket")).get("name")
        raw_key = _object(s3.get("object")).get("key")
        if not isinstance(raw_key, str) or not raw_key:
            raise Unusable(f"Records[{index}].s3.object.key is missing")
        # Keys arrive URL-encoded, spaces as '+', as S3 sends them.
        key = unquote_plus(raw_key)
        if isinstance(bucket, str) and bucket:
            url = f"s3://{bucket}/{key}"
        elif source.url_prefix:
            url = source.url_prefix + key
        else:
            raise Unusable(f"Records[{index}] names no bucket and source {name!r} has no url_prefix")
        mapped.events.append(ArtifactCreated(
            id=derived_id(key.rsplit("/", 1)[-1].rsplit(".", 1)[0] or key, unique=url),
            name=key, url=url, labels=[Label(key="s3.event", value=event_name)],
        ))
    return mapped


def mlflow_artifact_id(model: str, version: str) -> str:
    return derived_id(model, f"-v{derived_id(version)}")


def mlflow_events(name: str, source: WebhookSource, body: Any) -> Mapped:
    """MLflow model-registry webhooks (MLflow 3.3+).

    The body is ``{"entity", "action", "timestamp", "data"}`` (mlflow/webhooks/delivery.py); ``data`` of
    ``model_version.created`` is ``{name, version, source, run_id, tags, description}`` and of
    ``model_version_alias.created`` is ``{name, alias, version}`` (mlflow.webhooks.ModelVersionCreatedPayload,
    ModelVersionAliasCreatedPayload: https://mlflow.org/docs/latest/api_reference/python_api/mlflow.webhooks.html).
    """
    if not isinstance(body, dict) or not isinstance(body.get("data"), dict):
        raise Unusable("not an MLflow webhook: no data object")
    entity, action, data = body.get("entity"), body.get("action"), body["data"]

    def text(key: str) -> str:
        value = data.get(key)
        if isinstance(value, int) and not isinstance(value, bool):
            value = str(value)
        if not isinstance(value, str) or not value:
            raise Unusable(f"{entity}.{action}: data.{key} is missing")
        return value

    if (entity, action) == ("model_version", "created"):
        model, version = text("name"), text("version")
        description = data.get("description")
        return Mapped(events=[ArtifactCreated(
            id=mlflow_artifact_id(model, version), name=model, url=text("source"),
            description=description if isinstance(description, str) else None,
            labels=[Label(key="mlflow.model", value=model), Label(key="mlflow.version", value=version)],
        )])
    if (entity, action) == ("model_version_alias", "created"):
        model, alias, version = text("name"), text("alias"), text("version")
        target = source.aliases.get(alias)
        if target is None:
            return Mapped(notes=[f"alias {alias!r} deploys nothing: source {name!r} names no deployment for it"])
        reserved = {"deployment", "executable", "input", "scenario", "configuration"}
        try:
            request = DeploymentRequested(
                id=target["deployment"], executable_id=target["executable"],
                scenario_id=target.get("scenario"), configuration_id=target.get("configuration"),
                parameters={k: v for k, v in target.items() if k not in reserved},
                input_artifacts={target.get("input", "model"): mlflow_artifact_id(model, version)},
            )
        except (KeyError, ValidationError) as error:
            raise Misconfigured(f"aliases.{alias} needs a valid deployment id and an executable: {error}") from None
        return Mapped(events=[request])
    return Mapped(notes=[f"MLflow event {entity}.{action} is not acted on"])


def generic_events(name: str, source: WebhookSource, body: Any) -> Mapped:
    """The body is the data of one event of the source's ``event_type``."""
    if source.event_type not in IN_TYPES:
        raise Misconfigured(f"event_type {source.event_type!r} is not one of {', '.join(IN_TYPES)}")
    probe = CloudEvent({"type": source.event_type, "source": "/", "id": "x"}, body)
    try:
        return Mapped(events=[parse_data(probe)])
    except MalformedEvent as error:
        raise Unusable(error.message) from None


MAPPINGS: dict[str, Callable[[str, WebhookSource, Any], Mapped]] = {
    "s3": s3_events, "mlflow": mlflow_events, "generic": generic_events,
}


def signature_headers(source: WebhookSource, request: Request) -> tuple[str | bytes, list[str | None]]:
    """The key and (id, timestamp, signature) headers to check: Standard Webhooks', or MLflow's own."""
    secret = source.secret.get_secret_value()
    if source.kind == "mlflow" and "webhook-signature" not in request.headers and any(
            h in request.headers for h in _MLFLOW_HEADERS):
        return secret.encode(), [request.headers.get(h) for h in _MLFLOW_HEADERS]
    return secret, [request.headers.get(h) for h in _STANDARD_HEADERS]


def event_id(source_name: str, webhook_id: str, index: int, count: int) -> str:
    base = "wh-" + content_id(source_name, webhook_id, length=24)
    return base if count == 1 else f"{base}-{index}"


def inbound(platform: Platform) -> APIRouter:
    """Public routes: each call is verified by its Standard Webhooks signature instead of a token."""
    api = APIRouter(tags=["webhooks"])
    seen = SeenIds(platform)
    settings = platform.settings

    @api.post(
        "/v2/webhooks/{name}", summary="Receive a signed webhook from a configured sender",
        responses={202: {"description": "events published"}, 200: {"description": "nothing to do (see note)"},
                   **answers(400, 401, 404, 413, 500, meanings={
                       400: "Signed, but the body cannot become events",
                       401: "Signature missing or wrong, timestamp stale, or a replay",
                       404: "No such webhook source",
                       500: "The source's settings cannot work (secret, group or aliases): the operator's to fix"})},
    )
    async def receive(name: str, request: Request) -> JSONResponse:
        source = settings.webhooks.get(name)
        if source is None:
            raise not_found(f"webhook source {name} not found")
        body = await read_body(request)
        key, (webhook_id, timestamp, signature) = signature_headers(source, request)
        try:
            verify(key, webhook_id, timestamp, signature, body, settings.webhook_tolerance_s)
        except InvalidSignature as error:
            raise ApiError(401, "Unauthorized", f"webhook {name}: {error.message}") from None
        except Exception as error:  # binascii.Error etc. from a secret that is not whsec_ base64
            log.error("webhook source %s: its secret cannot be used: %s", name, type(error).__name__)
            raise ApiError(500, "WebhookMisconfigured", f"webhook source {name} is misconfigured") from None
        assert webhook_id is not None and timestamp is not None
        answer: dict[str, Any] = {"source": name, "group": source.group, "webhookId": webhook_id}

        first = await seen.timestamp(name, webhook_id)
        if first == timestamp:
            raise ApiError(401, "Unauthorized", f"webhook {name}: webhook-id {webhook_id[:80]!r} was already "
                           "received with this timestamp: a replay is not acted on")
        if first is not None:
            # Signed anew with a fresh timestamp, so by the secret's holder: a retry of a delivery whose answer
            # was lost. Acting again would do the work twice; refusing would have the sender retry for days.
            return JSONResponse({**answer, "events": [], "duplicate": True,
                                 "note": "this webhook-id was acted on before; nothing done again"})

        if not _ID.fullmatch(source.group):
            log.error("webhook source %s: group %r is not a valid resource group", name, source.group)
            raise ApiError(500, "WebhookMisconfigured", f"webhook source {name} is misconfigured")
        try:
            document = json.loads(body)
        except (ValueError, RecursionError) as error:
            raise ApiError(400, "InvalidWebhook", f"webhook {name}: the body is not JSON: {error}") from None
        try:
            mapped = MAPPINGS[source.kind](name, source, document)
        except Unusable as error:
            raise ApiError(400, "InvalidWebhook", f"webhook {name} ({source.kind}): {error}") from None
        except Misconfigured as error:
            log.error("webhook source %s: %s", name, error)
            raise ApiError(500, "WebhookMisconfigured", f"webhook source {name} is misconfigured: {error}") from None

        accepted = []
        for index, data in enumerate(mapped.events):
            event = new_event(data, source=f"/zeroserve/webhooks/{name}", subject=getattr(data, "id", None),
                              id=event_id(name, webhook_id, index, len(mapped.events)))
            published = await platform.bus.publish(event, source.group)
            accepted.append({"id": event["id"], "type": event["type"], "duplicate": published.duplicate})
        # Only once acted on: a call that failed before this may be sent again and must then work.
        await seen.remember(name, webhook_id, timestamp)
        if mapped.notes:
            answer["note"] = "; ".join(mapped.notes)
        return JSONResponse({**answer, "events": accepted}, status_code=202 if accepted else 200)

    return api


# --- webhooks out: subscriptions -----------------------------------------------------------------------


def _full_type(name: str) -> str:
    return name if name.startswith(PREFIX) else PREFIX + name


class SubscriptionRequest(BaseModel):
    """Body of POST /v2/subscriptions."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid")

    url: str = Field(max_length=2048, description="Where events are POSTed: an http or https URL.")
    event_types: list[str] = Field(
        min_length=1, max_length=len(OUT_TYPES),
        description="Event types to deliver (io.zeroserve. may be left out): " + ", ".join(OUT_TYPES),
    )
    description: str | None = Field(default=None, max_length=5000)

    @field_validator("url")
    @classmethod
    def _http(cls, url: str) -> str:
        # The URL is not repeated in the answer: its query, path or user part is often the receiver's secret.
        if unreadable(url) is not None:
            raise ValueError("cannot be read: its host or port is malformed")
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https"):
            given = f"{parts.scheme[:20]}://" if parts.scheme else "one without a scheme"
            raise ValueError(f"must be an http:// or https:// URL, not {given}")
        if not parts.hostname:
            raise ValueError("must name a host")
        return url

    @field_validator("event_types")
    @classmethod
    def _out(cls, names: list[str]) -> list[str]:
        types = list(dict.fromkeys(_full_type(n) for n in names))
        for event_type in types:
            if event_type not in OUT_TYPES:
                what = "is sent to zeroserve, not by it" if event_type in EVENT_TYPES else "is not an event type"
                raise ValueError(f"{event_type} {what}; subscribe to: {', '.join(OUT_TYPES)}")
        return types


def view(subscription: Subscription, *, secret: bool = False) -> dict[str, Any]:
    shown: dict[str, Any] = {
        "id": subscription.id, "url": subscription.url, "eventTypes": subscription.event_types,
        "description": subscription.description, "createdAt": subscription.created_at.isoformat(),
    }
    if secret:
        shown["secret"] = subscription.secret
    return shown


def subscriptions(platform: Platform) -> APIRouter:
    api = APIRouter(tags=["subscriptions"])
    registry = platform.store.subscriptions

    async def find(group: str, id: str) -> Subscription:
        return await stored_or_404(registry, group, id, f"subscription {id} not found")

    @api.post("/v2/subscriptions", status_code=201, summary="Deliver this group's events to a URL (webhooks out)",
              responses={201: {"description": "created; the signing secret is shown only here"},
                         **answers(400, 404, meanings={400: "A bad field, or a URL whose host is not a public "
                                                            "address (WebhookTargetNotAllowed) or does not resolve"})})
    async def create(request: SubscriptionRequest, scope: InGroup) -> JSONResponse:
        settings = platform.settings
        try:
            await check_target(request.url, settings.webhook_allowed_networks, settings.webhook_delivery_timeout_s)
        except (ForbiddenTarget, UnresolvableTarget) as refused:
            raise ApiError(400, refused.reason, f"body.url: {refused.message}") from None
        subscription = Subscription(
            id=f"sub-{secrets.token_hex(8)}", group=scope.group, url=request.url,
            event_types=request.event_types, secret=new_secret(), description=request.description,
        )
        await registry.put(scope.group, subscription.id, subscription)
        return JSONResponse(view(subscription, secret=True), status_code=201)

    @api.get("/v2/subscriptions", summary="The group's subscriptions (without secrets)", responses=answers(404))
    async def list_(scope: InGroup) -> dict[str, Any]:
        found = sorted(await registry.list(scope.group), key=lambda s: s.created_at)
        return {"count": len(found), "resources": [view(s) for s in found]}

    @api.get("/v2/subscriptions/{id}", summary="One subscription (without its secret)", responses=answers(404))
    async def get(id: str, scope: InGroup) -> dict[str, Any]:
        return view(await find(scope.group, id))

    @api.delete("/v2/subscriptions/{id}", summary="Stop delivering to this subscription", responses=answers(404))
    async def delete(id: str, scope: InGroup) -> dict[str, Any]:
        await find(scope.group, id)
        await registry.delete(scope.group, id)
        return {"id": id, "message": "Subscription deleted"}

    return api
