"""Inbound webhook sources: what a sender's body becomes, as events for the platform.

By the source's ``kind`` (``settings.webhooks``): ``s3`` (S3 event notifications from AWS, MinIO,
...: each new object an artifact), ``mlflow`` (model-registry webhooks: a new model version an
artifact, a new alias a deployment) or ``generic`` (the body is the data of one event type). Ids
derive from what the sender names (an object key, a model and its version) and event ids from the
``webhook-id``, so a sender that sends again after a lost answer causes nothing new. The HTTP side
(signatures, replays, the route) is ``zeroserve/gateway/webhooks.py``'s.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote_plus

from cloudevents.http import CloudEvent
from pydantic import ValidationError

from zeroserve.errors import MalformedEvent
from zeroserve.events import IN_TYPES, ArtifactCreated, DeploymentRequested, EventData, Label, content_id, parse_data
from zeroserve.settings import WebhookSource


class Unusable(Exception):
    """The webhook is genuine but its body cannot become events (400)."""


class Misconfigured(Exception):
    """The source's settings cannot work: the operator's to fix, not the sender's (500)."""


@dataclass
class Mapped:
    """What one webhook becomes: events, and a note on what was left out."""

    events: list[EventData] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def derived_id(text: str, suffix: str = "", *, unique: str | None = None) -> str:
    """An id that matches ID_PATTERN, readable from ``text``; hashed with ``unique`` when that is needed
    to keep two different things apart (the slug lost characters, or was cut)."""
    slug = re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")
    room = 63 - len(suffix)
    if slug != text or len(slug) > room or unique is not None:
        digest = content_id(unique or text, length=8)
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
        description, run = data.get("description"), data.get("run_id")  # the MLflow run that logged it
        return Mapped(events=[ArtifactCreated(
            id=mlflow_artifact_id(model, version), name=model, url=text("source"),
            description=description if isinstance(description, str) else None,
            labels=[Label(key="mlflow.model", value=model), Label(key="mlflow.version", value=version)],
            run=run if isinstance(run, str) and 0 < len(run) <= 256 else None,
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


def event_id(source_name: str, webhook_id: str, index: int, count: int) -> str:
    """The id of event ``index`` of ``count`` one webhook became: the same for the same webhook-id."""
    base = "wh-" + content_id(source_name, webhook_id, length=24)
    return base if count == 1 else f"{base}-{index}"
