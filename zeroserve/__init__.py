"""zeroserve: event-driven, scale-to-zero model serving. This package is the function author's API:
``on`` and ``Context`` to write a function, the event models it reacts to and emits, the typed
errors that carry a reason to the user, and ``Client`` / ``AsyncClient`` for the HTTP API; the
domain a function works on (``zeroserve.deployments.lifecycle``'s guards, ``zeroserve.templates``)
is imported from its room. Each name is imported on first use, so that ``import zeroserve.events``
in a function stays light.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from zeroserve.client import ApiError, AsyncClient, Client
    from zeroserve.core.runner import Context, on
    from zeroserve.errors import (
        ArtifactNotFound,
        ArtifactPending,
        DeploymentNotFound,
        InvalidArtifactUri,
        InvalidConfiguration,
        InvalidTransition,
        MalformedEvent,
        ModelLoadFailed,
        NoGPU,
        Rejected,
        ZeroserveError,
    )
    from zeroserve.events import (
        ArtifactBinding,
        ArtifactCreated,
        ArtifactStatus,
        ConfigurationCreated,
        DeploymentDeleted,
        DeploymentLog,
        DeploymentRequested,
        DeploymentStatus,
        DeploymentStopped,
        EventData,
        Label,
        Metric,
        ParameterBinding,
        Status,
    )

# Where each name of the API lives.
_MODULES = {
    "zeroserve.core.runner": ("on", "Context"),
    "zeroserve.events": (
        "EventData", "ArtifactCreated", "ArtifactStatus", "ConfigurationCreated", "DeploymentRequested",
        "DeploymentStopped", "DeploymentDeleted", "DeploymentStatus", "DeploymentLog", "Status",
        "Metric", "Label", "ParameterBinding", "ArtifactBinding",
    ),
    "zeroserve.errors": (
        "ZeroserveError", "Rejected", "MalformedEvent", "InvalidConfiguration", "InvalidTransition",
        "ArtifactNotFound", "ArtifactPending", "InvalidArtifactUri", "NoGPU", "ModelLoadFailed", "DeploymentNotFound",
    ),
    "zeroserve.client": ("Client", "AsyncClient", "ApiError"),
}
_HOMES = {name: module for module, names in _MODULES.items() for name in names}

__all__ = [
    "ApiError",
    "ArtifactBinding",
    "ArtifactCreated",
    "ArtifactNotFound",
    "ArtifactPending",
    "ArtifactStatus",
    "AsyncClient",
    "Client",
    "ConfigurationCreated",
    "Context",
    "DeploymentDeleted",
    "DeploymentLog",
    "DeploymentNotFound",
    "DeploymentRequested",
    "DeploymentStatus",
    "DeploymentStopped",
    "EventData",
    "InvalidArtifactUri",
    "InvalidConfiguration",
    "InvalidTransition",
    "Label",
    "MalformedEvent",
    "Metric",
    "ModelLoadFailed",
    "NoGPU",
    "ParameterBinding",
    "Rejected",
    "Status",
    "ZeroserveError",
    "on",
]


def __getattr__(name: str) -> Any:
    module = _HOMES.get(name)
    if module is None:
        raise AttributeError(f"module 'zeroserve' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
