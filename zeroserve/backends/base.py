"""The Backend protocol: where a deployment runs. The functions speak only this: ``apply`` an
InferenceService (create, or update in place), ``stop`` or ``delete`` a deployment, and ``watch``
what happens to deployments afterwards (replicas coming and going, a model that fails to load),
which becomes status events. The local backend runs replicas as processes on this machine, and its
``activator`` is where the gateway gets a replica for a request; the kserve backend writes the same
object to a Kubernetes cluster, where Knative's activator does that (its ``activator`` is None). Log
lines go to the ``DeploymentLogs`` the backend was given.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from zeroserve.errors import ZeroserveError
from zeroserve.events import Status

if TYPE_CHECKING:  # the local backend's machinery is not loaded where only its type is named
    from zeroserve.serving.activator import Activator


@dataclass(frozen=True)
class Change:
    """Something a backend noticed about a deployment: a new replica count, a failure, or (from a
    backend whose objects become ready on their own, like kserve) the status it sees now."""

    group: str
    id: str
    running_replicas: int | None = None
    failure: ZeroserveError | None = None
    # The status the backend sees, with its reason; None: only the fields above changed.
    status: Status | None = None
    reason: str | None = None
    message: str | None = None
    # Where the backend serves it (a KServe InferenceService's status.url).
    backend_url: str | None = None


class Backend(Protocol):
    @property
    def activator(self) -> Activator | None:
        """Where inference requests get a replica here, starting one from zero; None where the
        backend's own platform does that (Knative's activator on a cluster)."""
        ...

    async def apply(self, isvc: dict[str, Any]) -> bool:
        """Create or update in place. True if it serves at once (the local backend always does).

        False is for a backend whose objects become ready later (the kserve backend): ``watch``
        then reports the status (RUNNING once ready) in ``Change.status``.
        """
        ...

    async def stop(self, group: str, id: str) -> None:
        """Release every replica and resource of the deployment; return when they are gone."""
        ...

    async def delete(self, group: str, id: str) -> None: ...

    def watch(self) -> AsyncIterator[Change]: ...

    async def close(self) -> None: ...
