"""What the control plane records of an artifact: its record registered from an ``artifact.created``
event (keeping what the record holds and the event does not say: when it was created, its metrics
and labels), then the outcome of staging its files (staged or rejected), each a compare-and-set on
the artifacts registry so that the API's writes in between are not lost.
"""

from __future__ import annotations

from typing import Any, Literal

from cloudevents.http import CloudEvent

from zeroserve.core.store import Artifact, Origin, Registry, now
from zeroserve.events import ArtifactCreated

DESCRIBED = ("name", "kind", "url", "scenario_id", "description")
# The source of the artifact.created events the AI API publishes, each after it wrote the record.
API_SOURCE = "/v2/lm/artifacts"
# The source of the events an inbound webhook became: this, then the webhook source's name.
WEBHOOK_SOURCE = "/zeroserve/webhooks/"


def origin_of(event: CloudEvent, created: ArtifactCreated) -> Origin:
    """Where an artifact came from, as its ``artifact.created`` event says: the API, a webhook (by the
    event's source) or any other event, with the run and parameters the event names."""
    source = str(event["source"])
    via: Literal["api", "event", "webhook"]
    if source == API_SOURCE:
        via, webhook = "api", None
    elif source.startswith(WEBHOOK_SOURCE):
        via, webhook = "webhook", source[len(WEBHOOK_SOURCE):]
    else:
        via, webhook = "event", None
    subject = event.get("subject")
    return Origin(via=via, source=source, event_id=str(event["id"]), subject=subject and str(subject),
                  webhook=webhook, run=created.run, parameters=created.parameters or {})


async def register(artifacts: Registry[Artifact], group: str, artifact_id: str, created: ArtifactCreated,
                   origin: Origin) -> Artifact | None:
    """The artifact as ``created`` describes it, status registered (again, if it was staged before),
    with the ``origin`` of that registration (the API's own record keeps the one it was written with).
    None when the API published ``created`` and its record is gone: it was deleted meanwhile (its
    resource group went), and stays deleted."""
    by_api = origin.via == "api"

    def change(current: Artifact | None) -> Artifact | None:
        if current is None:
            if by_api:
                return None
            return Artifact(id=artifact_id, group=group, origin=origin,
                            **created.model_dump(exclude={"id", "run", "parameters"}))
        said: dict[str, Any] = {name: getattr(created, name) for name in DESCRIBED}
        if not by_api or current.origin is None:
            said["origin"] = origin
        # An event without metrics or labels says nothing about them, it does not erase them.
        said.update({name: getattr(created, name) for name in ("labels", "metrics") if getattr(created, name)})
        return current.model_copy(update={**said, "status": "registered", "reason": None, "message": None,
                                          "local_path": None, "modified_at": now()})

    return await artifacts.update(group, artifact_id, change)


async def record_staging(artifacts: Registry[Artifact], group: str, artifact_id: str, **outcome: str) -> None:
    """Record how staging ended (``status`` staged with its ``local_path``, or rejected with the reason)."""

    def change(current: Artifact | None) -> Artifact | None:
        # Deleted meanwhile (its resource group went): nothing to record.
        return current.model_copy(update={**outcome, "modified_at": now()}) if current else None

    await artifacts.update(group, artifact_id, change)
