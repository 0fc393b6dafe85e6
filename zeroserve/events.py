"""The event contract of zeroserve: what each event type carries and where it is published.

Everything that happens in zeroserve is a CloudEvent: users ask for work with ``in`` events
(``artifact.created``, ``deployment.requested``, ...) and functions answer with ``out`` events
(``artifact.status``, ``deployment.status``, ``deployment.log``). This module holds the data model of
each event type (pydantic, snake_case in Python, camelCase on the wire), the NATS subjects they are
published on, how an event is built and its data read back and how an event id is derived from
content, and the JSON Schemas in ``events/`` generated from the models (``python -m zeroserve.events
events/``); how an event is written on NATS or HTTP is ``zeroserve.core.binding``.
"""

from __future__ import annotations

import hashlib
import json
import re
import sys
import uuid
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal

from cloudevents.http import CloudEvent
from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationError,
)
from pydantic.alias_generators import to_camel

from zeroserve.errors import MalformedEvent

# Artifact and deployment ids (and resource groups) become Kubernetes object names and NATS
# subject tokens, so they are held to an RFC 1123 label from the start rather than failing later
# in the backend.
ID_PATTERN = r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$"
# The one compiled id pattern: every id check in zeroserve goes through ``is_id``.
VALID_ID = re.compile(ID_PATTERN)


def is_id(text: object) -> bool:
    """Whether ``text`` is an id zeroserve accepts (resource groups, deployments, artifacts, ...)."""
    return isinstance(text, str) and VALID_ID.fullmatch(text) is not None


def utc_text(moment: datetime) -> str:
    """The one time format of zeroserve's answers: RFC 3339 in UTC with ``Z``, as SAP's API writes times."""
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")

Id = Annotated[str, StringConstraints(pattern=ID_PATTERN)]
# Deployments are also addressed through SAP's AI API, whose ids have 4 to 64 characters: an id of
# 1 to 3 would name a deployment that no AI API call could reach (GET /v2/lm/deployments/{id}).
# Asked of requests only: what zeroserve announces about a deployment made before this rule keeps
# its id.
DEPLOYMENT_ID_PATTERN = r"^[a-z0-9][a-z0-9-]{2,61}[a-z0-9]$"
DeploymentId = Annotated[str, StringConstraints(pattern=DEPLOYMENT_ID_PATTERN)]


def lifetime(ttl: str) -> timedelta:
    """How long a deployment with this ttl lives: ``30m``, ``2h``, ``1d`` (SAP also writes ``2H``)."""
    amount, unit = int(ttl[:-1]), ttl[-1].lower()
    return {"m": timedelta(minutes=amount), "h": timedelta(hours=amount), "d": timedelta(days=amount)}[unit]


def ending(ttl: str) -> str:
    """``ttl`` if a deployment created now would end by the year 9999; the ttl check could not say when
    a longer one ends (and would fail on it, for every deployment it looks at after it)."""
    try:
        datetime.now(UTC) + lifetime(ttl)
    except (OverflowError, ValueError):  # ValueError: more digits than int() reads
        raise ValueError(f"{ttl[:20]!r} is too long: the deployment would end after the year 9999") from None
    return ttl


# At most six digits, as the API's ttl (999999d ends in the 48th century, before the year 9999 the ttl check can say).
Duration = Annotated[str, StringConstraints(pattern=r"^[0-9]{1,6}[mhd]$"), AfterValidator(ending)]

PREFIX = "io.zeroserve."
SPECVERSION = "1.0"
JSON = "application/json"


class EventData(BaseModel):
    """The data of one zeroserve event type."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid")

    event_type: ClassVar[str]


class Label(BaseModel):
    """A free-form key/value label, as in SAP AI Core's ``labels``."""

    model_config = ConfigDict(extra="forbid")

    key: str
    value: str


ShortText = Annotated[str, StringConstraints(min_length=1, max_length=256)]


def _whole(value: Any) -> Any:
    """2.0 as 2: JSON Schema's integer is any number without a fraction, as the strict check of the API's
    events must take it."""
    return int(value) if isinstance(value, float) and value.is_integer() else value


class Metric(BaseModel):
    """A quality figure of a model, e.g. accuracy 0.97 on a named test set."""

    model_config = ConfigDict(extra="forbid")

    name: str
    value: float
    labels: list[Label] = []
    step: Annotated[int, Field(ge=0), BeforeValidator(_whole)] | None = Field(
        default=None, description="The training step or epoch it was measured at.")
    timestamp: AwareDatetime | None = Field(default=None, description="When it was measured (RFC 3339).")


class ArtifactCreated(EventData):
    """A model (or other artifact) exists at a URL: register it and pre-stage it."""

    event_type: ClassVar[str] = "io.zeroserve.artifact.created"

    id: Id | None = Field(
        default=None, description="Artifact id; when absent, the id of the CloudEvent is used."
    )
    name: str
    kind: Literal["model", "dataset", "resultset", "other"] = "model"
    url: str = Field(description="Where the artifact is: file://, s3://, gs://, https://, ...")
    scenario_id: str | None = None
    description: str | None = None
    labels: list[Label] = []
    metrics: list[Metric] = Field(default=[], description="Model quality metrics, shown by `zeroserve models compare`.")
    run: ShortText | None = Field(
        default=None, description="The run (training job, pipeline run, MLflow run) that produced it, where known.")
    parameters: dict[ShortText, str | int | float | bool] | None = Field(
        default=None, max_length=100, description="The parameters (hyperparameters, settings) that produced it, "
        "where known: shown beside its metrics to compare models.")


class ArtifactStatus(EventData):
    """An artifact was registered, staged (in the local model cache) or rejected."""

    event_type: ClassVar[str] = "io.zeroserve.artifact.status"

    id: Id
    status: Literal["registered", "staged", "rejected"]
    url: str
    reason: str | None = Field(default=None, description="Machine-readable reason, e.g. InvalidArtifactUri.")
    message: str | None = None
    local_path: str | None = None


class ParameterBinding(BaseModel):
    model_config = ConfigDict(extra="forbid")

    key: str
    value: str


class ArtifactBinding(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid")

    key: str
    artifact_id: str


class ConfigurationCreated(EventData):
    """A configuration (a serving template with parameter and artifact bindings) was created through the API."""

    event_type: ClassVar[str] = "io.zeroserve.configuration.created"

    id: str
    name: str
    executable_id: str
    scenario_id: str
    parameter_bindings: list[ParameterBinding] = []
    input_artifact_bindings: list[ArtifactBinding] = []


class DeploymentRequested(EventData):
    """Deploy an artifact with a serving template, or update the deployment with this id in place."""

    event_type: ClassVar[str] = "io.zeroserve.deployment.requested"

    id: DeploymentId
    executable_id: str = Field(description="Name of the serving template.")
    configuration_id: str | None = None
    scenario_id: str | None = None
    parameters: dict[str, str] = {}
    input_artifacts: dict[str, str] = Field(
        default={}, description="Artifact input name of the template -> artifact id."
    )
    ttl: Duration | None = Field(
        default=None, description="Stop and delete after this long since the deployment was created: minutes, "
        "hours or days (30m, 2h, 1d). Checked every ZEROSERVE_TTL_CHECK_INTERVAL_S.",
    )


class DeploymentStopped(EventData):
    """Stop a deployment: release every replica and resource."""

    event_type: ClassVar[str] = "io.zeroserve.deployment.stopped"

    id: DeploymentId


class DeploymentDeleted(EventData):
    """Delete a stopped or dead deployment."""

    event_type: ClassVar[str] = "io.zeroserve.deployment.deleted"

    id: DeploymentId


# The commands that act on one deployment (the runner claims the deployment before a function runs).
DeploymentCommand = DeploymentRequested | DeploymentStopped | DeploymentDeleted


class Status(StrEnum):
    """Deployment statuses, as SAP AI Core names them."""

    UNKNOWN = "UNKNOWN"
    PENDING = "PENDING"
    RUNNING = "RUNNING"
    STOPPING = "STOPPING"
    STOPPED = "STOPPED"
    DEAD = "DEAD"


class DeploymentStatus(EventData):
    """A deployment changed status; a scaled-to-zero deployment is RUNNING with runningReplicas 0."""

    event_type: ClassVar[str] = "io.zeroserve.deployment.status"

    id: Id
    status: Status
    target_status: Literal["RUNNING", "STOPPED", "DELETED"] | None = None
    reason: str | None = Field(default=None, description="Machine-readable reason, e.g. ModelLoadFailed.")
    message: str | None = None
    deployment_url: str | None = None
    backend_url: str | None = Field(
        default=None, description="Where the backend serves it: the KServe InferenceService URL on a cluster."
    )
    running_replicas: int = 0
    min_replicas: int | None = None
    max_replicas: int | None = None
    resource_plan: str | None = None
    executable_id: str | None = None
    configuration_id: str | None = None


class DeploymentLog(EventData):
    """One log record of a deployment, from the control plane or a model server replica."""

    event_type: ClassVar[str] = "io.zeroserve.deployment.log"

    id: Id = Field(description="Deployment id.")
    timestamp: datetime
    source: str = Field(description='Who wrote it: "control-plane" or a replica, e.g. "replica-1".')
    stream: Literal["stdout", "stderr", "control"] = "control"
    message: str


# Users send these; functions handle them.
IN_TYPES: tuple[str, ...] = tuple(
    model.event_type for model in (ArtifactCreated, DeploymentRequested, DeploymentStopped, DeploymentDeleted)
)
# zeroserve announces these; users read them and subscribe webhooks to them.
OUT_TYPES: tuple[str, ...] = tuple(
    model.event_type for model in (ArtifactStatus, ConfigurationCreated, DeploymentStatus, DeploymentLog)
)
EVENT_TYPES: dict[str, type[EventData]] = {
    model.event_type: model
    for model in (
        ArtifactCreated,
        DeploymentRequested,
        DeploymentStopped,
        DeploymentDeleted,
        ArtifactStatus,
        ConfigurationCreated,
        DeploymentStatus,
        DeploymentLog,
    )
}
assert set(IN_TYPES) | set(OUT_TYPES) == set(EVENT_TYPES), "every event type is either sent in or announced"


# --- subjects -------------------------------------------------------------------------------------

# A function name is one subject token: no dots, spaces or wildcards.
_TOKEN = re.compile(r"^[A-Za-z0-9_-]+$")


# Subscriptions and stream definitions use the wildcard for "every resource group".
ANY = "*"


# Where events published under a subject with a malformed resource group are dead-lettered. Not a
# valid group name ("_"), so no tenant can own it and read other tenants' malformed events.
INVALID_GROUP = "_invalid"


def _check_group(group: str, *, wildcard: bool = False) -> str:
    if wildcard and group == ANY:
        return group
    if not is_id(group):
        raise MalformedEvent(f"invalid resource group {group!r}: must match {ID_PATTERN}")
    return group


def subject_for(event_type: str, group: str) -> str:
    """The subject an event of this type is published on for a resource group (or ``ANY``)."""
    _check_group(group, wildcard=True)
    rest = event_type.removeprefix(PREFIX)
    if rest == event_type or not all(_TOKEN.fullmatch(token) for token in rest.split(".")):
        raise MalformedEvent(f"not a zeroserve event type: {event_type!r}")
    return f"zeroserve.{group}.{rest}"


def group_of(subject: str) -> str:
    """The resource group a zeroserve subject belongs to."""
    tokens = subject.split(".")
    if len(tokens) < 3 or tokens[0] != "zeroserve":
        raise MalformedEvent(f"not a zeroserve subject: {subject!r}")
    return _check_group(tokens[1])


def deadletter_subject(group: str, function_name: str) -> str:
    """Where an event goes after a function has given up on it (``ANY`` group or function: all)."""
    if group != INVALID_GROUP:
        _check_group(group, wildcard=True)
    if function_name != ANY and not _TOKEN.fullmatch(function_name):
        raise MalformedEvent(f"invalid function name {function_name!r}: must be one subject token")
    return f"zeroserve.{group}.deadletter.{function_name}"


# --- building and reading events --------------------------------------------------------------------


def new_event(
    data: EventData,
    *,
    source: str,
    subject: str | None = None,
    causationid: str | None = None,
    id: str | None = None,
) -> CloudEvent:
    """A CloudEvent carrying ``data``; ``causationid`` is the id of the event that caused it."""
    attributes: dict[str, Any] = {
        "specversion": SPECVERSION,
        "id": id or str(uuid.uuid4()),
        "source": source,
        "type": data.event_type,
        "time": datetime.now(UTC).isoformat(),
        "datacontenttype": JSON,
    }
    if subject is not None:
        attributes["subject"] = subject
    if causationid is not None:
        attributes["causationid"] = causationid
    return CloudEvent(attributes, data.model_dump(mode="json", by_alias=True, exclude_none=True))


def content_id(*parts: str, length: int = 16) -> str:
    """An id derived from content: the first ``length`` hex digits of the SHA-256 of ``parts``, one a line.

    The same content gives the same id, so what is derived twice (a retried handler's announcement,
    a sender's repeated webhook, a redelivered delivery) is one event to JetStream's dedupe and to a
    receiver; anything that differs gets another.
    """
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()[:length]


def parse_data(event: CloudEvent) -> EventData:
    """The validated data model of an event, chosen by its type."""
    event_type = event.get("type")
    model = EVENT_TYPES.get(event_type) if isinstance(event_type, str) else None
    if model is None:
        raise MalformedEvent(f"unknown event type {event_type!r}")
    data = event.get_data()
    try:
        if isinstance(data, bytes | str):
            return model.model_validate_json(data)
        return model.model_validate(data)
    except ValidationError as e:
        raise MalformedEvent(f"{event_type}: {_describe(e)}") from e


def _describe(error: ValidationError) -> str:
    # The locations are wire (camelCase) names, so the sender can find the field in what they sent.
    return "; ".join(
        ".".join(["data", *(str(part) for part in item["loc"])]) + f": {item['msg']}"
        for item in error.errors()
    )


# --- schemas ------------------------------------------------------------------------------------------


def schemas() -> dict[str, dict[str, Any]]:
    """The JSON Schema of the data of every event type, by type."""
    result: dict[str, dict[str, Any]] = {}
    for event_type, model in EVENT_TYPES.items():
        schema = model.model_json_schema(by_alias=True)
        schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
        schema["$id"] = f"{event_type}.json"
        schema["title"] = event_type
        result[event_type] = schema
    return result


def write_schemas(directory: Path) -> list[Path]:
    """Write ``<type>.json`` for every event type into ``directory``; returns the files written."""
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for event_type, schema in schemas().items():
        path = directory / f"{event_type}.json"
        path.write_text(json.dumps(schema, indent=2, sort_keys=True, ensure_ascii=False) + "\n", "utf-8")
        written.append(path)
    return written


if __name__ == "__main__":
    for path in write_schemas(Path(sys.argv[1] if len(sys.argv) > 1 else "events")):
        print(path)
