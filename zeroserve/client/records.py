"""What the API answers with: pydantic records with snake_case fields (camelCase on the wire) for artifacts,
configurations, deployments and their log lines, scenarios and executables, resource groups, secrets, API
clients, subscriptions, metrics and published events, and ``Event``, one server-sent event of a
deployment's stream; fields the server adds beyond these stay readable as extras."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict
from pydantic.alias_generators import to_camel

from zeroserve.events import Label


class ApiModel(BaseModel):
    """A result: snake_case here, camelCase on the wire; fields the server adds are kept as extras."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="allow")


class Created(ApiModel):
    """The answer to a create, stop or delete: the id and the server's message."""

    id: str
    message: str = ""
    url: str | None = None
    deployment_url: str | None = None
    status: str | None = None
    ttl: str | None = None


class MetricLabel(ApiModel):
    name: str
    value: str


class Metric(ApiModel):
    name: str
    value: float
    timestamp: datetime | None = None
    step: int | None = None
    labels: list[MetricLabel] = []


class Artifact(ApiModel):
    id: str
    name: str
    kind: str
    url: str
    scenario_id: str | None = None
    description: str | None = None
    labels: list[Label] = []
    configuration_id: str | None = None
    execution_id: str | None = None
    created_at: datetime | None = None
    modified_at: datetime | None = None


class ParameterBinding(ApiModel):
    key: str
    value: str


class ArtifactBinding(ApiModel):
    key: str
    artifact_id: str


class Configuration(ApiModel):
    id: str
    name: str
    executable_id: str
    scenario_id: str
    parameter_bindings: list[ParameterBinding] = []
    input_artifact_bindings: list[ArtifactBinding] = []
    created_at: datetime | None = None


class Deployment(ApiModel):
    id: str
    status: str
    deployment_url: str | None = None
    configuration_id: str | None = None
    configuration_name: str | None = None
    executable_id: str | None = None
    scenario_id: str | None = None
    status_message: str | None = None
    target_status: str | None = None
    last_operation: str | None = None
    latest_running_configuration_id: str | None = None
    ttl: str | None = None
    details: dict[str, Any] | None = None
    status_details: dict[str, Any] | None = None
    created_at: datetime | None = None
    modified_at: datetime | None = None
    submission_time: datetime | None = None
    start_time: datetime | None = None
    completion_time: datetime | None = None

    @property
    def reason(self) -> str | None:
        """Why it is as it is (``ModelLoadFailed``, ``NoGPU``, ...), from ``statusDetails.reason``."""
        reason = (self.status_details or {}).get("reason")
        return str(reason) if reason else None

    @property
    def running_replicas(self) -> int | None:
        predictor = _predictor(self.details, "scaling")
        value = predictor.get("runningReplicas")
        return int(value) if isinstance(value, int) else None

    @property
    def resource_plan(self) -> str | None:
        plan = _predictor(self.details, "resources").get("resourcePlan")
        return str(plan) if plan else None


def _predictor(details: Mapping[str, Any] | None, section: str) -> Mapping[str, Any]:
    # SAP nests these as details.<section>.backendDetails.predictor.
    node: Any = details or {}
    for key in (section, "backendDetails", "predictor"):
        node = node.get(key) if isinstance(node, Mapping) else None
    return node if isinstance(node, Mapping) else {}


class LogRecord(ApiModel):
    """One line of a deployment's log, as ``GET /lm/deployments/{id}/logs`` gives it."""

    timestamp: datetime | None = None
    msg: str = ""
    # zeroserve's addition: "control-plane" or the replica that wrote it.
    source: str | None = None


class Scenario(ApiModel):
    id: str
    name: str
    description: str | None = None
    labels: list[Label] = []
    created_at: datetime | None = None
    modified_at: datetime | None = None


class ExecutableParameter(ApiModel):
    name: str
    description: str | None = None
    default: str | None = None
    type: str | None = None


class ExecutableArtifact(ApiModel):
    name: str
    kind: str | None = None
    description: str | None = None


class Executable(ApiModel):
    id: str
    name: str
    scenario_id: str | None = None
    version_id: str | None = None
    description: str | None = None
    deployable: bool = True
    parameters: list[ExecutableParameter] = []
    input_artifacts: list[ExecutableArtifact] = []
    labels: list[Label] = []


class ResourceGroup(ApiModel):
    resource_group_id: str
    status: str | None = None
    status_message: str | None = None
    labels: list[Label] = []
    created_at: datetime | None = None


class ObjectStoreSecret(ApiModel):
    """What the API shows of a secret: its metadata (never its data)."""

    name: str | None = None
    metadata: dict[str, Any] = {}


class ClientCredentials(ApiModel):
    """A new API client's id and secret: the secret is shown this once."""

    client_id: str
    client_secret: str


class ApiClient(ApiModel):
    client_id: str
    groups: list[str] = []
    name: str | None = None
    created_at: datetime | None = None


class Subscription(ApiModel):
    """Events of these types in this group go to ``url``, signed with ``secret`` (Standard Webhooks)."""

    id: str
    url: str
    event_types: list[str] = []
    description: str | None = None
    secret: str | None = None
    created_at: datetime | None = None


class ArtifactMetrics(ApiModel):
    """The quality metrics an artifact (model) was registered with, as SAP's metrics.find shows them:
    ``executionId`` is the artifact id (zeroserve runs no executions), ``tags`` its labels."""

    execution_id: str
    metrics: list[Metric] = []
    tags: list[MetricLabel] = []

    @property
    def artifact_id(self) -> str:
        return self.execution_id


class Published(ApiModel):
    """An event the gateway accepted; ``duplicate``: one with its id came before and it has no effect."""

    id: str
    type: str
    duplicate: bool = False


@dataclass(frozen=True)
class Event:
    """One server-sent event of a deployment's stream: the CloudEvent type, its id and its data."""

    type: str
    id: str | None
    data: Any
