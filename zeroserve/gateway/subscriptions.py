"""``/v2/subscriptions``: webhooks out, per resource group, where the platform's announcements are delivered.

A subscription names a URL, the event types to deliver there and, once, the secret the deliveries
are signed with; ``zeroserve.webhooks.dispatcher.Dispatcher`` delivers. A URL whose host is or
resolves to an address that is not public is refused (400) unless the operator allows its network
(``webhook_allowed_networks``; see ``zeroserve.webhooks.targets``).
"""

from __future__ import annotations

import secrets
from typing import Annotated, Any
from urllib.parse import urlsplit

from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, field_validator
from pydantic.alias_generators import to_camel

from zeroserve.api import records
from zeroserve.artifacts.uris import unreadable
from zeroserve.core.store import LAST_DELIVERIES, Deliveries, Delivery, Subscription
from zeroserve.events import EVENT_TYPES, OUT_TYPES, PREFIX, utc_text
from zeroserve.gateway.errors import ErrorAnswer, answers
from zeroserve.gateway.params import stored_or_404
from zeroserve.gateway.routing import Router
from zeroserve.gateway.security import InGroup, PlatformDep
from zeroserve.platform import Platform
from zeroserve.webhooks.signatures import new_secret
from zeroserve.webhooks.targets import ForbiddenTarget, UnresolvableTarget, check_target

router = Router(tags=["subscriptions"])

# The event types a subscription may name, in full or without io.zeroserve.
SUBSCRIBABLE = [*OUT_TYPES, *(name.removeprefix(PREFIX) for name in OUT_TYPES)]


def _full_type(name: str) -> str:
    return name if name.startswith(PREFIX) else PREFIX + name


class SubscriptionRequest(BaseModel):
    """Body of POST /v2/subscriptions."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid")

    url: str = Field(max_length=2048, pattern=r"^[hH][tT][tT][pP][sS]?://[^/?#@\s]+",
                     description="Where events are POSTed: an http or https URL whose host resolves to a public "
                                 "address (or one of webhook_allowed_networks)")
    event_types: list[Annotated[str, Field(json_schema_extra={"enum": SUBSCRIBABLE})]] = Field(
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


def view(subscription: Subscription, *, secret: bool = False, deliveries: Deliveries | None = None) -> dict[str, Any]:
    shown: dict[str, Any] = {
        "id": subscription.id, "url": subscription.url, "eventTypes": subscription.event_types,
        "description": subscription.description, "createdAt": utc_text(subscription.created_at),
        "lastDeliveries": [delivery_view(d) for d in deliveries.deliveries] if deliveries else [],
    }
    if secret:
        shown["secret"] = subscription.secret
    # Absent rather than null, as every answer of the API (routing.Router): the same at creation as after.
    return {name: value for name, value in shown.items() if value is not None}


def delivery_view(delivery: Delivery) -> dict[str, Any]:
    shown = {"at": utc_text(delivery.at), "eventId": delivery.event_id, "eventType": delivery.event_type,
             "delivered": delivery.delivered, "status": delivery.status, "error": delivery.error,
             "attempts": delivery.attempts, "durationMs": delivery.duration_ms}
    return {name: value for name, value in shown.items() if value is not None}


async def with_deliveries(platform: Platform, subscription: Subscription) -> dict[str, Any]:
    return view(subscription, deliveries=await platform.store.deliveries.get(subscription.group, subscription.id))


async def find(platform: Platform, group: str, id: str) -> Subscription:
    return await stored_or_404(platform.store.subscriptions, group, id, f"subscription {id} not found")


@router.post("/v2/subscriptions", status_code=201, response_model=records.Subscription,
             summary="Deliver this group's events to a URL (webhooks out)",
             responses={201: {"description": "created; the signing secret is shown only here"},
                        **answers(400, 404, meanings={400: "A bad field, or a URL whose host is not a public "
                                                           "address (WebhookTargetNotAllowed) or does not resolve"})})
async def create(request: SubscriptionRequest, scope: InGroup, platform: PlatformDep) -> JSONResponse:
    settings = platform.settings
    try:
        await check_target(request.url, settings.webhook_allowed_networks, settings.webhook_delivery_timeout_s)
    except (ForbiddenTarget, UnresolvableTarget) as refused:
        raise ErrorAnswer(400, refused.reason, f"body.url: {refused.message}") from None
    subscription = Subscription(
        id=f"sub-{secrets.token_hex(8)}", group=scope.group, url=request.url,
        event_types=request.event_types, secret=new_secret(), description=request.description,
    )
    await platform.store.subscriptions.put(scope.group, subscription.id, subscription)
    return JSONResponse(view(subscription, secret=True), status_code=201)


@router.get("/v2/subscriptions", response_model=records.SubscriptionList,
            summary="The group's subscriptions (without secrets), each with its last deliveries",
            responses=answers(404))
async def list_(scope: InGroup, platform: PlatformDep) -> dict[str, Any]:
    found = sorted(await platform.store.subscriptions.list(scope.group), key=lambda s: s.created_at)
    return {"count": len(found), "resources": [await with_deliveries(platform, s) for s in found]}


@router.get("/v2/subscriptions/{id}", response_model=records.Subscription,
            summary="One subscription (without its secret), with its last deliveries (newest first, up to "
            f"{LAST_DELIVERIES}: when, which event, delivered or not, the receiver's HTTP status or the error, "
            "attempts, duration)", responses=answers(404))
async def get(id: str, scope: InGroup, platform: PlatformDep) -> dict[str, Any]:
    return await with_deliveries(platform, await find(platform, scope.group, id))


@router.delete("/v2/subscriptions/{id}", response_model=records.Created,
               summary="Stop delivering to this subscription", responses=answers(404))
async def delete(id: str, scope: InGroup, platform: PlatformDep) -> dict[str, Any]:
    await find(platform, scope.group, id)
    await platform.store.subscriptions.delete(scope.group, id)
    await platform.store.deliveries.delete(scope.group, id)
    return {"id": id, "message": "Subscription deleted"}
