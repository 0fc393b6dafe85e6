"""What the API answers with, one pydantic model per answer: the gateway declares them as its routes'
``response_model`` (so ``/openapi.json`` describes every answer) and the Python client reads its results
with them. Fields are snake_case in Python and SAP's camelCase on the wire; fields a newer server adds
stay readable as extras. Times are RFC 3339 in UTC (``utc_text``), fields without a value are absent."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any, Generic, TypeVar

from pydantic import BaseModel, ConfigDict
from pydantic.alias_generators import to_camel

from zeroserve.events import Label

T = TypeVar("T")


class ApiModel(BaseModel):
    """An answer: snake_case here, camelCase on the wire; fields the server adds are kept as extras."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="allow",
                              serialize_by_alias=True)


class Listing(ApiModel, Generic[T]):
    """SAP's list answer: ``count`` (of every match, or of this page where the route says so) and a page."""

    count: int
    resources: list[T]


class Created(ApiModel):
    """The answer to a create, stop or delete: the id and the server's message."""

    id: str
    message: str = ""
    url: str | None = None
    deployment_url: str | None = None
    status: str | None = None
    ttl: str | None = None


class Message(ApiModel):
    """An answer that only says what was done (SAP's BckndobjectStoreSecretCreationResponse)."""

    message: str


class Health(ApiModel):
    status: str
    nats: bool


class MetricLabel(ApiModel):
    name: str
    value: str


class Metric(ApiModel):
    name: str
    value: float
    timestamp: datetime | None = None
    step: int | None = None
    labels: list[MetricLabel] = []


class Scenario(ApiModel):
    id: str
    name: str
    description: str | None = None
    labels: list[Label] = []
    created_at: datetime | None = None
    modified_at: datetime | None = None


class ScenarioVersion(ApiModel):
    id: str
    scenario_id: str
    created_at: datetime | None = None
    modified_at: datetime | None = None


class ArtifactOrigin(ApiModel):
    """How an artifact was registered (zeroserve's own field): ``via`` the API, an event or a webhook, the
    CloudEvent's ``source``, ``eventId`` and ``subject``, the ``webhook`` source's name, and the ``run`` and
    ``parameters`` that produced the model where its registration named them."""

    via: str
    source: str
    event_id: str | None = None
    subject: str | None = None
    webhook: str | None = None
    run: str | None = None
    parameters: dict[str, str | int | float | bool] = {}


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
    # With $expand=scenario.
    scenario: Scenario | None = None
    origin: ArtifactOrigin | None = None


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
    # With $expand=scenario.
    scenario: Scenario | None = None


class StatusDetails(ApiModel):
    """Why a deployment is as it is: a reason code (``ModelLoadFailed``, ``NoGPU``, ...) and a message."""

    reason: str | None = None
    message: str | None = None


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
    status_details: StatusDetails | None = None
    created_at: datetime | None = None
    modified_at: datetime | None = None
    submission_time: datetime | None = None
    start_time: datetime | None = None
    completion_time: datetime | None = None

    @property
    def reason(self) -> str | None:
        """Why it is as it is (``ModelLoadFailed``, ``NoGPU``, ...), from ``statusDetails.reason``."""
        return self.status_details.reason if self.status_details and self.status_details.reason else None

    @property
    def running_replicas(self) -> int | None:
        value = _predictor(self.details, "scaling").get("runningReplicas")
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


class BulkError(ApiModel):
    code: str
    message: str


class BulkResult(ApiModel):
    """One deployment of a bulk modification: scheduled (``message``) or refused (``error``)."""

    id: str
    message: str | None = None
    error: BulkError | None = None


class BulkResults(ApiModel):
    deployments: list[BulkResult]


class LogRecord(ApiModel):
    """One line of a deployment's log, as ``GET /lm/deployments/{id}/logs`` gives it."""

    timestamp: datetime | None = None
    msg: str = ""
    # zeroserve's addition: "control-plane" or the replica that wrote it.
    source: str | None = None


class LogResult(ApiModel):
    result: list[LogRecord]


class Logs(ApiModel):
    """SAP's RTALogCommonResponse: ``data.result`` holds the lines."""

    data: LogResult


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
    created_at: datetime | None = None
    modified_at: datetime | None = None


class Meta(ApiModel):
    """SAP's meta answer: which parts of the AI API this runtime offers, and its limits."""

    runtime_identifier: str
    runtime_api_version: str
    description: str | None = None
    ai_api: dict[str, Any]
    extensions: dict[str, Any] = {}


class ResourceGroup(ApiModel):
    resource_group_id: str
    tenant_id: str | None = None
    status: str | None = None
    status_message: str | None = None
    labels: list[Label] = []
    created_at: datetime | None = None


class ObjectStoreSecret(ApiModel):
    """What the API shows of a secret: its metadata (never its data)."""

    name: str | None = None
    metadata: dict[str, str] = {}


class ApiClient(ApiModel):
    client_id: str
    groups: list[str] = []
    name: str | None = None
    created_at: datetime | None = None


class ClientCredentials(ApiClient):
    """A new API client's id and secret: the secret is shown this once."""

    client_secret: str


class Delivery(ApiModel):
    """One event's delivery to a subscription, after its last attempt: delivered (a 2xx) or given up; the
    receiver's last HTTP status, or the error when none came (a timeout, a refused address)."""

    at: datetime
    event_id: str
    event_type: str
    delivered: bool
    status: int | None = None
    error: str | None = None
    attempts: int
    duration_ms: int


class Subscription(ApiModel):
    """Events of these types in this group go to ``url``, signed with ``secret`` (Standard Webhooks)."""

    id: str
    url: str
    event_types: list[str] = []
    description: str | None = None
    # Only in the answer to its creation.
    secret: str | None = None
    created_at: datetime | None = None
    # Newest first, up to 20.
    last_deliveries: list[Delivery] = []


class ArtifactMetrics(ApiModel):
    """The quality metrics an artifact (model) was registered with, as SAP's metrics.find shows them:
    ``executionId`` is the artifact id (zeroserve runs no executions), ``tags`` its labels."""

    execution_id: str
    metrics: list[Metric] = []
    tags: list[MetricLabel] = []
    custom_info: list[dict[str, Any]] | None = None
    created_at: datetime | None = None
    modified_at: datetime | None = None

    @property
    def artifact_id(self) -> str:
        return self.execution_id


class ColdStart(ApiModel):
    """One replica's cold start (zeroserve's own): when the request that waited for it arrived, the time until
    its answer began, and where that went by phase (queued, replica-start, model-load, ready, forward), in ms."""

    replica: str
    started_at: datetime
    total_ms: float
    phases: dict[str, float] = {}


class TrafficPoint(ApiModel):
    """One step of a deployment's traffic: when it began, requests answered, errors among them (status 400 or
    more), and the median and 95th percentile latency in ms (null: no request)."""

    time: datetime
    requests: int
    errors: int
    p50_ms: float | None = None
    p95_ms: float | None = None


class Traffic(ApiModel):
    """The requests this gateway answered for a deployment, step by step, oldest first."""

    step_seconds: int
    points: list[TrafficPoint]


class Published(ApiModel):
    """An event the gateway accepted; ``duplicate``: one with its id came before and it has no effect."""

    id: str
    type: str
    duplicate: bool = False


class Accepted(ApiModel):
    """The answer to ``POST /v2/events``: the group the events went to, and each event."""

    group: str
    events: list[Published]


class WebhookReceipt(ApiModel):
    """The answer to a signed webhook: the events it became (none when its webhook-id was acted on before)."""

    source: str
    group: str
    webhook_id: str
    events: list[Published]
    duplicate: bool | None = None
    note: str | None = None


# The list answers, named as SAP's spec names its own (AiArtifactList, ...).
class ArtifactList(Listing[Artifact]):
    pass


class ConfigurationList(Listing[Configuration]):
    pass


class DeploymentList(Listing[Deployment]):
    pass


class ScenarioList(Listing[Scenario]):
    pass


class ScenarioVersionList(Listing[ScenarioVersion]):
    pass


class ExecutableList(Listing[Executable]):
    pass


class ArtifactMetricsList(Listing[ArtifactMetrics]):
    pass


class ColdStartList(Listing[ColdStart]):
    pass


class ResourceGroupList(Listing[ResourceGroup]):
    pass


class ObjectStoreSecretList(Listing[ObjectStoreSecret]):
    pass


class ApiClientList(Listing[ApiClient]):
    pass


class SubscriptionList(Listing[Subscription]):
    pass
