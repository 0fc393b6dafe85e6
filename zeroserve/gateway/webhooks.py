"""``POST /v2/webhooks/<name>``: inbound webhooks, from the senders configured in ``settings.webhooks``.

There is no token: a call is believed when its Standard Webhooks signature matches the source's
secret, its timestamp is inside ``webhook_tolerance_s`` of now, and its ``webhook-id`` has not been
seen before (``zeroserve.webhooks.replays``). What the body becomes is
``zeroserve.webhooks.sources``'s; the events are published to the source's resource group.
"""

from __future__ import annotations

import json
import logging
from typing import Annotated, Any

from fastapi import Depends, Request
from fastapi.responses import JSONResponse

from zeroserve.api import records
from zeroserve.artifacts.registration import WEBHOOK_SOURCE
from zeroserve.events import is_id, new_event
from zeroserve.gateway import applications
from zeroserve.gateway.errors import ErrorAnswer, answers, not_found
from zeroserve.gateway.ingress import read_body
from zeroserve.gateway.routing import Router
from zeroserve.gateway.security import PlatformDep
from zeroserve.settings import WebhookSource
from zeroserve.webhooks.replays import SeenIds
from zeroserve.webhooks.signatures import InvalidSignature, verify
from zeroserve.webhooks.sources import MAPPINGS, Mapped, Misconfigured, Unusable, event_id

log = logging.getLogger(__name__)


router = Router(tags=["webhooks"])

# MLflow signs like Standard Webhooks (v1,<base64> over id.timestamp.body; mlflow/webhooks/delivery.py)
# but under its own header names, and with the UTF-8 bytes of its secret as the key.
_MLFLOW_HEADERS = ("x-mlflow-delivery-id", "x-mlflow-timestamp", "x-mlflow-signature")
_STANDARD_HEADERS = ("webhook-id", "webhook-timestamp", "webhook-signature")


async def seen_ids_of(request: Request) -> SeenIds:
    seen: SeenIds = request.app.state.seen_webhook_ids  # one per gateway: it keeps the bucket's handle
    return seen


SeenIdsDep = Annotated[SeenIds, Depends(seen_ids_of)]


def signature_headers(source: WebhookSource, request: Request) -> tuple[str | bytes, list[str | None]]:
    """The key and (id, timestamp, signature) headers to check: Standard Webhooks', or MLflow's own."""
    secret = source.secret.get_secret_value()
    if source.kind == "mlflow" and "webhook-signature" not in request.headers and any(
            h in request.headers for h in _MLFLOW_HEADERS):
        return secret.encode(), [request.headers.get(h) for h in _MLFLOW_HEADERS]
    return secret, [request.headers.get(h) for h in _STANDARD_HEADERS]


def verified(name: str, source: WebhookSource, request: Request, body: bytes, tolerance_s: float) -> tuple[str, str]:
    """(webhook-id, timestamp) of a call whose signature holds; 401 when it does not, 500 when the
    source's secret cannot be used."""
    key, (webhook_id, timestamp, signature) = signature_headers(source, request)
    try:
        verify(key, webhook_id, timestamp, signature, body, tolerance_s)
    except InvalidSignature as error:
        raise ErrorAnswer(401, "Unauthorized", f"webhook {name}: {error.message}") from None
    except Exception as error:  # binascii.Error etc. from a secret that is not whsec_ base64
        log.error("webhook source %s: its secret cannot be used: %s", name, type(error).__name__)
        raise ErrorAnswer(500, "WebhookMisconfigured", f"webhook source {name} is misconfigured") from None
    assert webhook_id is not None and timestamp is not None
    return webhook_id, timestamp


def mapped(name: str, source: WebhookSource, body: bytes) -> Mapped:
    """What the body becomes by the source's kind; 400 when it cannot become events, 500 when the
    source's settings cannot work."""
    if not is_id(source.group):
        log.error("webhook source %s: group %r is not a valid resource group", name, source.group)
        raise ErrorAnswer(500, "WebhookMisconfigured", f"webhook source {name} is misconfigured")
    try:
        document = json.loads(body)
    except (ValueError, RecursionError) as error:
        raise ErrorAnswer(400, "InvalidWebhook", f"webhook {name}: the body is not JSON: {error}") from None
    try:
        return MAPPINGS[source.kind](name, source, document)
    except Unusable as error:
        raise ErrorAnswer(400, "InvalidWebhook", f"webhook {name} ({source.kind}): {error}") from None
    except Misconfigured as error:
        log.error("webhook source %s: %s", name, error)
        raise ErrorAnswer(500, "WebhookMisconfigured", f"webhook source {name} is misconfigured: {error}") from None


@router.post(
    "/v2/webhooks/{name}", summary="Receive a signed webhook from a configured sender",
    response_model=records.WebhookReceipt,
    responses={202: {"description": "events published", "model": records.WebhookReceipt},
               200: {"description": "nothing to do (see note)", "model": records.WebhookReceipt},
               **answers(400, 401, 404, 413, 500, meanings={
                   400: "Signed, but the body cannot become events",
                   401: "Signature missing or wrong, timestamp stale, or a replay",
                   404: "No such webhook source",
                   500: "The source's settings cannot work (secret, group or aliases): the operator's to fix"})},
)
async def receive(name: str, request: Request, platform: PlatformDep, seen: SeenIdsDep) -> JSONResponse:
    settings = platform.settings
    source = settings.webhooks.get(name)
    if source is None:
        raise not_found(f"webhook source {name} not found")
    body = await read_body(request)
    webhook_id, timestamp = verified(name, source, request, body, settings.webhook_tolerance_s)
    answer: dict[str, Any] = {"source": name, "group": source.group, "webhookId": webhook_id}

    first = await seen.timestamp(name, webhook_id)
    if first == timestamp:
        raise ErrorAnswer(401, "Unauthorized", f"webhook {name}: webhook-id {webhook_id[:80]!r} was already "
                       "received with this timestamp: a replay is not acted on")
    if first is not None:
        # Signed anew with a fresh timestamp, so by the secret's holder: a retry of a delivery whose answer
        # was lost. Acting again would do the work twice; refusing would have the sender retry for days.
        return JSONResponse({**answer, "events": [], "duplicate": True,
                             "note": "this webhook-id was acted on before; nothing done again"})

    if source.kind == "git":  # a push to a template repository: its applications sync (gateway/applications.py)
        refreshed = await applications.refresh_pushed(platform, source, body)
        await seen.remember(name, webhook_id, timestamp)
        return JSONResponse({**answer, **refreshed}, status_code=202 if refreshed["applications"] else 200)
    events = mapped(name, source, body)
    accepted = []
    for index, data in enumerate(events.events):
        event = new_event(data, source=f"{WEBHOOK_SOURCE}{name}", subject=getattr(data, "id", None),
                          id=event_id(name, webhook_id, index, len(events.events)))
        published = await platform.bus.publish(event, source.group)
        accepted.append({"id": event["id"], "type": event["type"], "duplicate": published.duplicate})
    # Only once acted on: a call that failed before this may be sent again and must then work.
    await seen.remember(name, webhook_id, timestamp)
    if events.notes:
        answer["note"] = "; ".join(events.notes)
    return JSONResponse({**answer, "events": accepted}, status_code=202 if accepted else 200)
