"""What the API answers with: the records of ``zeroserve.api.records``, the very models the gateway declares
in its ``/openapi.json`` (snake_case fields here, camelCase on the wire, extras kept), and ``Event``, one
server-sent event of a deployment's or a group's stream."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from zeroserve.api.records import (
    Accepted,
    ApiClient,
    ApiModel,
    Artifact,
    ArtifactBinding,
    ArtifactMetrics,
    ArtifactOrigin,
    BulkResult,
    ClientCredentials,
    ColdStart,
    Configuration,
    Created,
    Delivery,
    Deployment,
    Executable,
    ExecutableArtifact,
    ExecutableParameter,
    Listing,
    LogRecord,
    Message,
    Meta,
    Metric,
    MetricLabel,
    ObjectStoreSecret,
    ParameterBinding,
    Published,
    ResourceGroup,
    Scenario,
    StatusDetails,
    Subscription,
    Traffic,
    TrafficPoint,
)

__all__ = [
    "Accepted", "ApiClient", "ApiModel", "Artifact", "ArtifactBinding", "ArtifactMetrics", "ArtifactOrigin",
    "BulkResult", "ClientCredentials", "ColdStart", "Configuration", "Created", "Delivery", "Deployment", "Event",
    "Executable", "ExecutableArtifact", "ExecutableParameter", "Listing", "LogRecord", "Message", "Meta", "Metric",
    "MetricLabel", "ObjectStoreSecret", "ParameterBinding", "Published", "ResourceGroup", "Scenario",
    "StatusDetails", "Subscription", "Traffic", "TrafficPoint",
]


@dataclass(frozen=True)
class Event:
    """One server-sent event of a deployment's stream: the CloudEvent type, its id and its data."""

    type: str
    id: str | None
    data: Any
