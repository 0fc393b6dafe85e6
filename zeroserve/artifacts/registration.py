"""What the control plane records of an artifact: its record registered from an ``artifact.created``
event (keeping what the record holds and the event does not say: when it was created, its metrics
and labels), then the outcome of staging its files (staged or rejected), each a compare-and-set on
the artifacts registry so that the API's writes in between are not lost.
"""

from __future__ import annotations

from zeroserve.core.store import Artifact, Registry, now
from zeroserve.events import ArtifactCreated

DESCRIBED = ("name", "kind", "url", "scenario_id", "description")
# The source of the artifact.created events the AI API publishes, each after it wrote the record.
API_SOURCE = "/v2/lm/artifacts"


async def register(artifacts: Registry[Artifact], group: str, artifact_id: str, created: ArtifactCreated,
                   by_api: bool = False) -> Artifact | None:
    """The artifact as ``created`` describes it, status registered (again, if it was staged before).
    None when the API published ``created`` (``by_api``) and its record is gone: it was deleted
    meanwhile (its resource group went), and stays deleted."""

    def change(current: Artifact | None) -> Artifact | None:
        if current is None:
            if by_api:
                return None
            return Artifact(id=artifact_id, group=group, **created.model_dump(exclude={"id"}))
        said = {name: getattr(created, name) for name in DESCRIBED}
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
