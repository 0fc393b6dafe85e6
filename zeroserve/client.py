"""The Python client of zeroserve's HTTP API (SAP AI API v2 and zeroserve's extensions).

``Client`` (blocking) and ``AsyncClient`` (asyncio) offer the same operations: artifacts,
configurations, deployments (with their logs and live events), scenarios and executables,
resource groups, object store secrets, API clients, webhook subscriptions, metrics, publishing
events and calling a deployed model. Each operation is written once, in ``_Operations``, as a
``Call``: the request to send and how to read the answer. The two classes only send calls (one
with ``httpx.Client``, one with ``httpx.AsyncClient``). Tokens come from an explicit bearer token
or from a client id and secret, traded at ``/oauth/token`` and renewed shortly before they
expire. Every failure, the server's or the network's, is an ``ApiError`` with the HTTP status, SAP's
error code and its message. Results are pydantic models with snake_case fields (camelCase on the
wire); fields the server adds beyond these stay readable as extras.
"""

from __future__ import annotations

import asyncio
import copy
import json
import threading
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from time import monotonic
from typing import TYPE_CHECKING, Any, Concatenate, Generic, Literal, ParamSpec, Self, TypeVar, overload
from urllib.parse import urlencode

import httpx
from cloudevents.http import CloudEvent
from pydantic import BaseModel, ConfigDict, TypeAdapter, ValidationError
from pydantic.alias_generators import to_camel

from zeroserve.core.binding import to_http
from zeroserve.errors import ZeroserveError
from zeroserve.events import EventData, Label, new_event

if TYPE_CHECKING:
    from zeroserve.settings import Settings

T = TypeVar("T")
P = ParamSpec("P")

DEFAULT_GROUP = "default"
SOURCE = "/zeroserve/client"
# The scenario of zeroserve's serving templates (manifests/base/templates).
SERVING_SCENARIO = "model-serving"
# A token is renewed this long before it expires, so a request never carries one that lapses in flight.
REFRESH_MARGIN_S = 60.0


# --- errors -------------------------------------------------------------------------------------------


class ApiError(ZeroserveError):
    """The API said no, or could not be reached: the HTTP status (0 when there was no answer), SAP's
    error code (``NotFound``, ``DeploymentNotRunning``, ``invalid_client``, ...) and the message."""

    def __init__(self, status: int, code: str, message: str, *, request_id: str | None = None) -> None:
        super().__init__(message, reason=code)
        self.status = status
        self.code = code
        self.request_id = request_id

    def __str__(self) -> str:
        where = f"HTTP {self.status} " if self.status else ""
        return f"{where}{self.code}: {self.message}"


class NotConfigured(ZeroserveError):
    """Nothing says which gateway to call or with which credentials."""

    reason = "NotConfigured"


def _error_of(response: httpx.Response) -> ApiError:
    request_id = response.headers.get("x-request-id")
    try:
        body = response.json()
    except ValueError:
        body = None
    if isinstance(body, dict):
        error = body.get("error")
        if isinstance(error, dict) and "code" in error:  # SAP's {"error": {"code", "message"}}
            return ApiError(response.status_code, str(error["code"]), str(error.get("message", "")),
                            request_id=error.get("requestId") or request_id)
        if isinstance(error, str):  # OAuth's {"error", "error_description"} (RFC 6749 section 5.2)
            return ApiError(response.status_code, error, str(body.get("error_description", error)),
                            request_id=request_id)
    text = response.text.strip()[:300] or response.reason_phrase
    return ApiError(response.status_code, f"HTTP{response.status_code}", text, request_id=request_id)


def _unreachable(url: str, error: httpx.TransportError) -> ApiError:
    if isinstance(error, httpx.TimeoutException):
        return ApiError(0, "Timeout", f"{url} did not answer in time ({type(error).__name__})")
    detail = str(error) or type(error).__name__
    return ApiError(0, "Unreachable", f"cannot reach {url}: {detail}")


# --- results ----------------------------------------------------------------------------------------


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


# --- calls ------------------------------------------------------------------------------------------


@dataclass
class Call(Generic[T]):
    """One request of the API and how to read its answer: what both clients send."""

    method: str
    # Relative to the gateway URL, or a full URL (a deployment's inference URL).
    path: str
    parse: Callable[[httpx.Response], T]
    params: Mapping[str, Any] | None = None
    json: Any = None
    content: bytes | None = None
    headers: dict[str, str] = field(default_factory=dict)
    # The resource group the call acts in, or None for routes that belong to no group (admin, token).
    group: str | None = None
    authenticated: bool = True


@dataclass
class StreamCall(Generic[T]):
    """A server-sent event stream and how to read each event of it (None: skip the event)."""

    call: Call[None]
    parse: Callable[[Event], T | None]
    # How long to wait for the next event (None: for ever); a wait that long ends with ApiError Timeout.
    timeout: float | None = None


def _ignore(response: httpx.Response) -> None:
    return None


def _model(model: type[T]) -> Callable[[httpx.Response], T]:
    adapter = TypeAdapter(model)
    return lambda response: _validated(adapter, response.json(), response)


def _resources(model: type[T]) -> Callable[[httpx.Response], list[T]]:
    adapter = TypeAdapter(list[model])  # type: ignore[valid-type]

    def parse(response: httpx.Response) -> list[T]:
        body = response.json()
        items = body.get("resources", []) if isinstance(body, dict) else body
        return _validated(adapter, items, response)

    return parse


def _validated(adapter: TypeAdapter[T], value: Any, response: httpx.Response) -> T:
    try:
        return adapter.validate_python(value)
    except ValidationError as error:
        raise ApiError(response.status_code, "UnexpectedResponse",
                       f"{response.request.method} {response.request.url.path} answered something else than "
                       f"expected: {error.error_count()} problems, first: {error.errors()[0]['msg']}") from None


def _count(response: httpx.Response) -> int:
    try:
        return int(response.text.strip())
    except ValueError:
        raise ApiError(response.status_code, "UnexpectedResponse", f"not a count: {response.text[:80]!r}") from None


def _json(response: httpx.Response) -> Any:
    return response.json() if response.content else None


def _logs(response: httpx.Response) -> list[LogRecord]:
    body = response.json()
    result = ((body or {}).get("data") or {}).get("result") or []
    return _validated(TypeAdapter(list[LogRecord]), result, response)


def _params(**values: Any) -> dict[str, Any]:
    """Query parameters without the unset ones; lists as SAP wants them (comma-separated)."""
    params = {}
    for name, value in values.items():
        if value is None:
            continue
        params[name] = ",".join(value) if isinstance(value, list | tuple) else value
    return params


def _labels(labels: Mapping[str, str] | Iterable[Label] | None) -> list[dict[str, str]]:
    if labels is None:
        return []
    if isinstance(labels, Mapping):
        return [{"key": key, "value": value} for key, value in labels.items()]
    return [label.model_dump() for label in labels]


def _event_data(event: Event) -> Event:
    return event


def _cloud_event(event: EventData | CloudEvent) -> CloudEvent:
    return new_event(event, source=SOURCE) if isinstance(event, EventData) else event


def _published(response: httpx.Response) -> list[Published]:
    body = response.json()
    return _validated(TypeAdapter(list[Published]), (body or {}).get("events", []), response)


# --- the operations, written once ---------------------------------------------------------------------


class operation(Generic[P, T]):  # noqa: N801 - used as a decorator, like property
    """Turns a method that builds a ``Call[T]`` into the operation: on a ``Client`` it returns ``T``,
    on an ``AsyncClient`` an awaitable of ``T``, with the builder's own signature."""

    def __init__(self, build: Callable[Concatenate[Any, P], Call[T]]) -> None:
        self.build = build
        self.__doc__ = build.__doc__
        self.__name__ = build.__name__

    @overload
    def __get__(self, client: AsyncClient, owner: Any) -> Callable[P, Awaitable[T]]: ...
    @overload
    def __get__(self, client: Client, owner: Any) -> Callable[P, T]: ...
    @overload
    def __get__(self, client: None, owner: Any) -> operation[P, T]: ...
    def __get__(self, client: Any, owner: Any) -> Any:
        if client is None:
            return self
        build = self.build

        def send(*args: P.args, **kwargs: P.kwargs) -> Any:
            return client._send(build(client, *args, **kwargs))

        send.__doc__ = build.__doc__
        send.__name__ = build.__name__
        return send


class stream(Generic[P, T]):  # noqa: N801 - used as a decorator, like property
    """Like ``operation``, for a server-sent event stream: an ``EventStream`` on a ``Client`` (iterate it),
    an ``AsyncEventStream`` on an ``AsyncClient`` (``async for``); both are context managers."""

    def __init__(self, build: Callable[Concatenate[Any, P], StreamCall[T]]) -> None:
        self.build = build
        self.__doc__ = build.__doc__
        self.__name__ = build.__name__

    @overload
    def __get__(self, client: AsyncClient, owner: Any) -> Callable[P, AsyncEventStream[T]]: ...
    @overload
    def __get__(self, client: Client, owner: Any) -> Callable[P, EventStream[T]]: ...
    @overload
    def __get__(self, client: None, owner: Any) -> stream[P, T]: ...
    def __get__(self, client: Any, owner: Any) -> Any:
        if client is None:
            return self
        build = self.build

        def open_stream(*args: P.args, **kwargs: P.kwargs) -> Any:
            return client._stream(build(client, *args, **kwargs))

        open_stream.__doc__ = build.__doc__
        open_stream.__name__ = build.__name__
        return open_stream


class _Token:
    """The bearer token: given as is, or got with a client id and secret and renewed before it expires."""

    def __init__(self, token: str | None, client_id: str | None, client_secret: str | None) -> None:
        if token is None and not (client_id and client_secret):
            raise NotConfigured("a token, or a client id and secret, is needed")
        self.value = token
        self.client_id = client_id
        self.client_secret = client_secret
        self.expires_at = float("inf") if token is not None else 0.0

    @property
    def renewable(self) -> bool:
        return self.client_id is not None and self.client_secret is not None

    def stale(self) -> bool:
        return self.value is None or (self.renewable and monotonic() >= self.expires_at)

    def request(self) -> Call[None]:
        assert self.client_id is not None and self.client_secret is not None

        def accept(response: httpx.Response) -> None:
            body = response.json()
            lifetime = float(body.get("expires_in", 3600))
            self.value = str(body["access_token"])
            # Renew at the margin, or halfway for tokens that live less than two margins.
            self.expires_at = monotonic() + max(lifetime - REFRESH_MARGIN_S, lifetime / 2)

        form = urlencode({"grant_type": "client_credentials", "client_id": self.client_id,
                          "client_secret": self.client_secret})
        return Call("POST", "/oauth/token", accept, content=form.encode(), authenticated=False,
                    headers={"Content-Type": "application/x-www-form-urlencoded"})

    def expire(self) -> None:
        if self.renewable:
            self.value = None


class _Operations:
    """Every operation of the API, as the request it sends and how its answer is read."""

    url: str
    group: str

    # artifacts

    @operation
    def create_artifact(
        self, name: str, url: str, *, kind: Literal["model", "dataset", "resultset", "other"] = "model",
        scenario_id: str = SERVING_SCENARIO, description: str | None = None,
        labels: Mapping[str, str] | Iterable[Label] | None = None,
    ) -> Call[Created]:
        """Register an artifact (a model, usually) that lies at ``url``."""
        body = {"name": name, "url": url, "kind": kind, "scenarioId": scenario_id, "labels": _labels(labels)}
        if description is not None:
            body["description"] = description
        return self._call("POST", "/v2/lm/artifacts", _model(Created), json=body)

    @operation
    def artifacts(
        self, *, scenario_id: str | None = None, name: str | None = None, kind: str | None = None,
        search: str | None = None, top: int | None = None, skip: int | None = None,
    ) -> Call[list[Artifact]]:
        params = _params(scenarioId=scenario_id, name=name, kind=kind,
                         **{"$search": search, "$top": top, "$skip": skip})
        return self._call("GET", "/v2/lm/artifacts", _resources(Artifact), params=params)

    @operation
    def artifact(self, artifact_id: str) -> Call[Artifact]:
        return self._call("GET", f"/v2/lm/artifacts/{artifact_id}", _model(Artifact))

    @operation
    def count_artifacts(
        self, *, scenario_id: str | None = None, name: str | None = None, kind: str | None = None,
    ) -> Call[int]:
        return self._call("GET", "/v2/lm/artifacts/$count", _count,
                          params=_params(scenarioId=scenario_id, name=name, kind=kind))

    # configurations

    @operation
    def create_configuration(
        self, name: str, *, executable_id: str, scenario_id: str = SERVING_SCENARIO,
        parameters: Mapping[str, str] | None = None, artifacts: Mapping[str, str] | None = None,
    ) -> Call[Created]:
        """A configuration: an executable (serving template) with parameter values and input artifacts
        (input name -> artifact id)."""
        body = {
            "name": name, "executableId": executable_id, "scenarioId": scenario_id,
            "parameterBindings": [{"key": k, "value": str(v)} for k, v in (parameters or {}).items()],
            "inputArtifactBindings": [{"key": k, "artifactId": v} for k, v in (artifacts or {}).items()],
        }
        return self._call("POST", "/v2/lm/configurations", _model(Created), json=body)

    @operation
    def configurations(
        self, *, scenario_id: str | None = None, executable_ids: list[str] | None = None,
        top: int | None = None, skip: int | None = None,
    ) -> Call[list[Configuration]]:
        params = _params(scenarioId=scenario_id, executableIds=executable_ids, **{"$top": top, "$skip": skip})
        return self._call("GET", "/v2/lm/configurations", _resources(Configuration), params=params)

    @operation
    def configuration(self, configuration_id: str) -> Call[Configuration]:
        return self._call("GET", f"/v2/lm/configurations/{configuration_id}", _model(Configuration))

    # deployments

    @operation
    def create_deployment(self, configuration_id: str, *, ttl: str | None = None) -> Call[Created]:
        """Deploy a configuration; the deployment starts UNKNOWN/PENDING and the answer comes at once."""
        body: dict[str, Any] = {"configurationId": configuration_id}
        if ttl is not None:
            body["ttl"] = ttl
        return self._call("POST", "/v2/lm/deployments", _model(Created), json=body)

    @operation
    def deployments(
        self, *, status: str | None = None, configuration_id: str | None = None, scenario_id: str | None = None,
        executable_ids: list[str] | None = None, top: int | None = None, skip: int | None = None,
    ) -> Call[list[Deployment]]:
        params = _params(status=status, configurationId=configuration_id, scenarioId=scenario_id,
                         executableIds=executable_ids, **{"$top": top, "$skip": skip})
        return self._call("GET", "/v2/lm/deployments", _resources(Deployment), params=params)

    @operation
    def count_deployments(self, *, status: str | None = None) -> Call[int]:
        return self._call("GET", "/v2/lm/deployments/$count", _count, params=_params(status=status))

    @operation
    def deployment(self, deployment_id: str) -> Call[Deployment]:
        return self._call("GET", f"/v2/lm/deployments/{deployment_id}", _model(Deployment))

    @operation
    def modify_deployment(
        self, deployment_id: str, *, target_status: Literal["STOPPED"] | None = None,
        configuration_id: str | None = None,
    ) -> Call[Created]:
        """Stop a deployment (``target_status="STOPPED"``) or update it in place to another configuration
        (same id, same URL; it keeps serving until the new version is ready)."""
        body = {key: value for key, value in (("targetStatus", target_status),
                                               ("configurationId", configuration_id)) if value is not None}
        return self._call("PATCH", f"/v2/lm/deployments/{deployment_id}", _model(Created), json=body)

    @operation
    def stop_deployment(self, deployment_id: str) -> Call[Created]:
        return self._call("PATCH", f"/v2/lm/deployments/{deployment_id}", _model(Created),
                          json={"targetStatus": "STOPPED"})

    @operation
    def update_deployment(self, deployment_id: str, configuration_id: str) -> Call[Created]:
        return self._call("PATCH", f"/v2/lm/deployments/{deployment_id}", _model(Created),
                          json={"configurationId": configuration_id})

    @operation
    def delete_deployment(self, deployment_id: str) -> Call[Created]:
        """Delete a stopped or dead deployment."""
        return self._call("DELETE", f"/v2/lm/deployments/{deployment_id}", _model(Created))

    @operation
    def modify_deployments(self, changes: Mapping[str, Literal["STOPPED", "DELETED"]]) -> Call[list[dict[str, Any]]]:
        """Stop or delete many deployments at once (deployment id -> target status); one answer per
        deployment: ``{"id", "message"}`` or ``{"id", "error": {"code", "message"}}``."""
        body = {"deployments": [{"id": id, "targetStatus": status} for id, status in changes.items()]}
        return self._call("PATCH", "/v2/lm/deployments", lambda r: list(r.json().get("deployments", [])),
                          json=body, headers={"Content-Type": "application/merge-patch+json"})

    @operation
    def deployment_logs(
        self, deployment_id: str, *, top: int | None = None, start: datetime | str | None = None,
        end: datetime | str | None = None, order: Literal["asc", "desc"] | None = None,
    ) -> Call[list[LogRecord]]:
        """The deployment's log: control plane and model server lines, kept after replicas are gone."""
        params = _params(**{"$top": top, "$order": order},
                         start=start.isoformat() if isinstance(start, datetime) else start,
                         end=end.isoformat() if isinstance(end, datetime) else end)
        return self._call("GET", f"/v2/lm/deployments/{deployment_id}/logs", _logs, params=params)

    @stream
    def deployment_events(
        self, deployment_id: str, *, last_event_id: str | None = None, timeout: float | None = None,
    ) -> StreamCall[Event]:
        """The deployment's live status and log events (server-sent events), as they happen."""
        headers = {"Accept": "text/event-stream"}
        if last_event_id is not None:
            headers["Last-Event-ID"] = last_event_id
        call = self._call("GET", f"/v2/lm/deployments/{deployment_id}/events", _ignore, headers=headers)
        return StreamCall(call, _event_data, timeout)

    # scenarios and executables

    @operation
    def scenarios(self) -> Call[list[Scenario]]:
        return self._call("GET", "/v2/lm/scenarios", _resources(Scenario))

    @operation
    def scenario(self, scenario_id: str) -> Call[Scenario]:
        return self._call("GET", f"/v2/lm/scenarios/{scenario_id}", _model(Scenario))

    @operation
    def executables(self, scenario_id: str = SERVING_SCENARIO) -> Call[list[Executable]]:
        """The serving templates of a scenario, with their parameters and input artifacts."""
        return self._call("GET", f"/v2/lm/scenarios/{scenario_id}/executables", _resources(Executable))

    @operation
    def executable(self, executable_id: str, scenario_id: str = SERVING_SCENARIO) -> Call[Executable]:
        return self._call("GET", f"/v2/lm/scenarios/{scenario_id}/executables/{executable_id}", _model(Executable))

    # metadata and metrics

    @operation
    def meta(self) -> Call[dict[str, Any]]:
        """What this AI API implementation offers (SAP's ``/lm/meta``)."""
        return self._call("GET", "/v2/lm/meta", _json)

    @operation
    def metrics(self, artifact_ids: list[str]) -> Call[list[ArtifactMetrics]]:
        """The quality metrics recorded for these artifacts (``artifact.created``'s ``metrics``)."""
        return self._call("GET", "/v2/lm/metrics", _resources(ArtifactMetrics),
                          params=_params(executionIds=list(artifact_ids)))

    # administration: resource groups, object store secrets, API clients

    @operation
    def create_resource_group(
        self, resource_group_id: str, *, labels: Mapping[str, str] | Iterable[Label] | None = None,
    ) -> Call[dict[str, Any]]:
        body = {"resourceGroupId": resource_group_id, "labels": _labels(labels)}
        return self._call("POST", "/v2/admin/resourceGroups", _json, json=body, group=None)

    @operation
    def resource_groups(self) -> Call[list[ResourceGroup]]:
        return self._call("GET", "/v2/admin/resourceGroups", _resources(ResourceGroup), group=None)

    @operation
    def resource_group(self, resource_group_id: str) -> Call[ResourceGroup]:
        return self._call("GET", f"/v2/admin/resourceGroups/{resource_group_id}", _model(ResourceGroup), group=None)

    @operation
    def delete_resource_group(self, resource_group_id: str) -> Call[dict[str, Any]]:
        return self._call("DELETE", f"/v2/admin/resourceGroups/{resource_group_id}", _json, group=None)

    @operation
    def create_object_store_secret(
        self, name: str, *, type: str, data: Mapping[str, str] | None = None, bucket: str | None = None,
        endpoint: str | None = None, region: str | None = None, path_prefix: str | None = None,
        verifyssl: str | None = None, usehttps: str | None = None,
    ) -> Call[dict[str, Any]]:
        """Where ``ai://<name>/<path>`` artifact URLs point: an object store and its credentials."""
        body: dict[str, Any] = {"name": name, "type": type, "data": dict(data or {})}
        for key, value in (("bucket", bucket), ("endpoint", endpoint), ("region", region),
                           ("pathPrefix", path_prefix), ("verifyssl", verifyssl), ("usehttps", usehttps)):
            if value is not None:
                body[key] = value
        return self._call("POST", "/v2/admin/objectStoreSecrets", _json, json=body)

    @operation
    def object_store_secrets(self) -> Call[list[ObjectStoreSecret]]:
        return self._call("GET", "/v2/admin/objectStoreSecrets", _resources(ObjectStoreSecret))

    @operation
    def object_store_secret(self, name: str) -> Call[ObjectStoreSecret]:
        return self._call("GET", f"/v2/admin/objectStoreSecrets/{name}", _model(ObjectStoreSecret))

    @operation
    def delete_object_store_secret(self, name: str) -> Call[dict[str, Any]]:
        return self._call("DELETE", f"/v2/admin/objectStoreSecrets/{name}", _json)

    @operation
    def create_client(self, groups: list[str], *, name: str | None = None) -> Call[ClientCredentials]:
        """A new API client for these resource groups (``*``: all of them, and the admin routes)."""
        body: dict[str, Any] = {"groups": list(groups)}
        if name is not None:
            body["name"] = name
        return self._call("POST", "/v2/admin/clients", _model(ClientCredentials), json=body, group=None)

    @operation
    def clients(self) -> Call[list[ApiClient]]:
        return self._call("GET", "/v2/admin/clients", _resources(ApiClient), group=None)

    @operation
    def delete_client(self, client_id: str) -> Call[None]:
        """Delete an API client: it gets no new tokens (those it has stay valid until they expire)."""
        return self._call("DELETE", f"/v2/admin/clients/{client_id}", _ignore, group=None)

    # events in, webhooks out

    @operation
    def publish(self, *events: EventData | CloudEvent) -> Call[list[Published]]:
        """Publish events (zeroserve event data, or CloudEvents) to the group, in order, all or none.

        One event goes in structured mode, several as one batch (``application/cloudevents-batch+json``).
        """
        if not events:
            raise ValueError("publish needs at least one event")
        content_type, body = to_http([_cloud_event(event) for event in events])
        return self._call("POST", "/v2/events", _published, content=body, headers={"Content-Type": content_type})

    @operation
    def create_subscription(
        self, url: str, event_types: list[str], *, description: str | None = None,
    ) -> Call[Subscription]:
        """Deliver this group's events of these types to ``url``; the answer carries the signing secret."""
        body: dict[str, Any] = {"url": url, "eventTypes": list(event_types)}
        if description is not None:
            body["description"] = description
        return self._call("POST", "/v2/subscriptions", _model(Subscription), json=body)

    @operation
    def subscriptions(self) -> Call[list[Subscription]]:
        return self._call("GET", "/v2/subscriptions", _resources(Subscription))

    @operation
    def subscription(self, subscription_id: str) -> Call[Subscription]:
        return self._call("GET", f"/v2/subscriptions/{subscription_id}", _model(Subscription))

    @operation
    def delete_subscription(self, subscription_id: str) -> Call[Created]:
        return self._call("DELETE", f"/v2/subscriptions/{subscription_id}", _model(Created))

    # inference

    @operation
    def predict(
        self, deployment_id: str, data: Any, *, protocol: Literal["v1", "v2"] = "v1", model: str | None = None,
        deployment_url: str | None = None,
    ) -> Call[Any]:
        """Call the deployed model: KServe V1 ``:predict`` (``{"instances": [...]}``) or V2 ``/infer``.
        A deployment at zero starts a replica for it (the gateway holds the call meanwhile)."""
        base = (deployment_url or self.inference_url(deployment_id)).rstrip("/")
        name = model or deployment_id
        path = f"{base}/v1/models/{name}:predict" if protocol == "v1" else f"{base}/v2/models/{name}/infer"
        return self._call("POST", path, _json, json=data)

    def inference_url(self, deployment_id: str) -> str:
        """The URL a deployment serves at (SAP's shape; it never changes for the deployment's life)."""
        return f"{self.url}/v2/inference/deployments/{deployment_id}"

    def _call(
        self, method: str, path: str, parse: Callable[[httpx.Response], T], *, params: Mapping[str, Any] | None = None,
        json: Any = None, content: bytes | None = None, headers: dict[str, str] | None = None,
        group: str | None | Literal[False] = False,
    ) -> Call[T]:
        return Call(method, path, parse, params=params, json=json, content=content, headers=headers or {},
                    group=self.group if group is False else group)


# --- server-sent events -----------------------------------------------------------------------------


class _SseDecoder:
    """Server-sent events from lines, as the HTML standard's event-stream parsing says."""

    def __init__(self) -> None:
        self._type = ""
        self._data: list[str] = []
        self.last_id: str | None = None

    def feed(self, line: str) -> Event | None:
        if line == "":
            return self._dispatch()
        if line.startswith(":"):  # a comment: keep-alive
            return None
        name, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if name == "event":
            self._type = value
        elif name == "data":
            self._data.append(value)
        elif name == "id" and "\0" not in value:
            self.last_id = value
        return None

    def _dispatch(self) -> Event | None:
        if not self._data:
            self._type = ""
            return None
        text = "\n".join(self._data)
        try:
            data: Any = json.loads(text)
        except ValueError:
            data = text
        event = Event(type=self._type or "message", id=self.last_id, data=data)
        self._type, self._data = "", []
        return event


class EventStream(Generic[T]):
    """A blocking server-sent event stream: iterate it; ``with`` it to open it first and close it after."""

    def __init__(self, client: Client, call: StreamCall[T]) -> None:
        self._client = client
        self._call = call
        self._response: httpx.Response | None = None

    def open(self) -> EventStream[T]:
        if self._response is None:
            self._response = self._client._open(self._call.call, self._call.timeout)
        return self

    def __enter__(self) -> EventStream[T]:
        return self.open()

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        if self._response is not None:
            self._response.close()

    def __iter__(self) -> Iterator[T]:
        response = self.open()._response
        assert response is not None
        decoder = _SseDecoder()
        try:
            for line in response.iter_lines():
                event = decoder.feed(line)
                if event is not None:
                    parsed = self._call.parse(event)
                    if parsed is not None:
                        yield parsed
        except httpx.TransportError as error:
            raise _unreachable(self._client.url, error) from None


class AsyncEventStream(Generic[T]):
    """A server-sent event stream for ``async for``; ``async with`` it to open it first and close it after."""

    def __init__(self, client: AsyncClient, call: StreamCall[T]) -> None:
        self._client = client
        self._call = call
        self._response: httpx.Response | None = None

    async def open(self) -> AsyncEventStream[T]:
        if self._response is None:
            self._response = await self._client._open(self._call.call, self._call.timeout)
        return self

    async def __aenter__(self) -> AsyncEventStream[T]:
        return await self.open()

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        if self._response is not None:
            await self._response.aclose()

    async def __aiter__(self) -> AsyncIterator[T]:
        response = (await self.open())._response
        assert response is not None
        decoder = _SseDecoder()
        try:
            async for line in response.aiter_lines():
                event = decoder.feed(line)
                if event is not None:
                    parsed = self._call.parse(event)
                    if parsed is not None:
                        yield parsed
        except httpx.TransportError as error:
            raise _unreachable(self._client.url, error) from None


# --- the two transports ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Connection:
    """Which gateway to call and as whom."""

    url: str
    token: str | None = None
    client_id: str | None = None
    client_secret: str | None = None


def connection(settings: Settings) -> Connection:
    """The gateway and credentials: from settings (``ZEROSERVE_API_URL``, ``ZEROSERVE_TOKEN`` or
    ``ZEROSERVE_CLIENT_ID`` + ``ZEROSERVE_CLIENT_SECRET``), else what a local ``zeroserve up`` wrote
    into the data directory (``gateway.url``, ``credentials.json``)."""
    url = settings.api_url
    url_file = settings.data_dir / "gateway.url"
    if url is None:
        if not url_file.exists():
            raise NotConfigured(f"zeroserve is not running here (no {url_file}): start it with `zeroserve up`, "
                                "or set ZEROSERVE_API_URL")
        url = url_file.read_text().strip()
    if settings.token is not None:
        return Connection(url, token=settings.token.get_secret_value())
    if settings.client_id and settings.client_secret is not None:
        return Connection(url, client_id=settings.client_id, client_secret=settings.client_secret.get_secret_value())
    credentials = settings.data_dir / "credentials.json"
    try:
        known = json.loads(credentials.read_text())
        return Connection(url, client_id=str(known["client_id"]), client_secret=str(known["client_secret"]))
    except FileNotFoundError:
        raise NotConfigured(f"no credentials for {url}: set ZEROSERVE_TOKEN, or ZEROSERVE_CLIENT_ID and "
                            f"ZEROSERVE_CLIENT_SECRET (no {credentials} of a local `zeroserve up` either)") from None
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise NotConfigured(f"cannot read {credentials}: {error}") from None


def _connection_of(settings: Settings | None) -> Connection:
    if settings is None:
        from zeroserve.settings import Settings

        settings = Settings()
    return connection(settings)


class _Transport(_Operations):
    def __init__(
        self, url: str, *, token: str | None = None, client_id: str | None = None, client_secret: str | None = None,
        group: str = DEFAULT_GROUP, timeout: float = 30.0,
    ) -> None:
        self.url = url.rstrip("/")
        self.group = group
        self.timeout = timeout
        self._token = _Token(token, client_id, client_secret)

    @classmethod
    def local(
        cls, settings: Settings | None = None, *, group: str = DEFAULT_GROUP, connection: Connection | None = None,
        timeout: float = 30.0,
    ) -> Self:
        """A client configured from settings / the environment, else the local ``zeroserve up``."""
        found = connection or _connection_of(settings)
        return cls(found.url, token=found.token, client_id=found.client_id, client_secret=found.client_secret,
                   group=group, timeout=timeout)

    def in_group(self, group: str) -> Self:
        """The same client (connection and token) acting in another resource group."""
        other = copy.copy(self)
        other.group = group
        return other

    def _request(self, http: httpx.Client | httpx.AsyncClient, call: Call[Any], timeout: Any = None) -> httpx.Request:
        headers = dict(call.headers)
        if call.authenticated:
            assert self._token.value is not None
            headers["Authorization"] = f"Bearer {self._token.value}"
        if call.group is not None:
            headers["AI-Resource-Group"] = call.group
        url = call.path if call.path.startswith(("http://", "https://")) else f"{self.url}{call.path}"
        extensions = {"timeout": httpx.Timeout(timeout).as_dict()} if timeout is not None else {}
        return http.build_request(call.method, url, params=call.params, json=call.json, content=call.content,
                                  headers=headers, extensions=extensions)


class Client(_Transport):
    """The blocking client: ``Client.local()`` for the zeroserve this machine runs, or a URL and credentials.

    >>> with Client.local() as zs:
    ...     for deployment in zs.deployments():
    ...         print(deployment.id, deployment.status)
    """

    def __init__(
        self, url: str, *, token: str | None = None, client_id: str | None = None, client_secret: str | None = None,
        group: str = DEFAULT_GROUP, timeout: float = 30.0, http: httpx.Client | None = None,
    ) -> None:
        super().__init__(url, token=token, client_id=client_id, client_secret=client_secret, group=group,
                         timeout=timeout)
        self._http = http or httpx.Client(timeout=timeout, trust_env=False)
        self._lock = threading.Lock()

    def token(self) -> str:
        """A valid bearer token (got or renewed if needed), e.g. for curl."""
        with self._lock:
            if self._token.stale():
                self._execute(self._token.request())
            assert self._token.value is not None
            return self._token.value

    def _execute(self, call: Call[T], timeout: float | None = None) -> T:
        try:
            response = self._http.send(self._request(self._http, call, timeout))
        except httpx.TransportError as error:
            raise _unreachable(self.url, error) from None
        if not response.is_success:
            raise _error_of(response)
        return call.parse(response)

    def _send(self, call: Call[T]) -> T:
        if call.authenticated:
            self.token()
        try:
            return self._execute(call)
        except ApiError as error:
            if error.status == 401 and self._token.renewable:
                self._token.expire()
                self.token()
                return self._execute(call)
            raise

    def _open(self, call: Call[Any], timeout: float | None) -> httpx.Response:
        self.token()
        request = self._request(self._http, call, httpx.Timeout(self.timeout, read=timeout))
        try:
            response = self._http.send(request, stream=True)
        except httpx.TransportError as error:
            raise _unreachable(self.url, error) from None
        if not response.is_success:
            response.read()
            response.close()
            raise _error_of(response)
        return response

    def _stream(self, call: StreamCall[T]) -> EventStream[T]:
        return EventStream(self, call)

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class AsyncClient(_Transport):
    """The asyncio client: the same operations as ``Client``, awaited.

    >>> async with AsyncClient.local() as zs:
    ...     deployment = await zs.deployment("iris")
    """

    def __init__(
        self, url: str, *, token: str | None = None, client_id: str | None = None, client_secret: str | None = None,
        group: str = DEFAULT_GROUP, timeout: float = 30.0, http: httpx.AsyncClient | None = None,
    ) -> None:
        super().__init__(url, token=token, client_id=client_id, client_secret=client_secret, group=group,
                         timeout=timeout)
        self._http = http or httpx.AsyncClient(timeout=timeout, trust_env=False)
        self._lock: asyncio.Lock | None = None

    async def token(self) -> str:
        """A valid bearer token (got or renewed if needed)."""
        # Created here, not in __init__: a lock belongs to the loop that first uses it.
        if self._lock is None:
            self._lock = asyncio.Lock()
        async with self._lock:
            if self._token.stale():
                await self._execute(self._token.request())
            assert self._token.value is not None
            return self._token.value

    async def _execute(self, call: Call[T], timeout: float | None = None) -> T:
        try:
            response = await self._http.send(self._request(self._http, call, timeout))
        except httpx.TransportError as error:
            raise _unreachable(self.url, error) from None
        if not response.is_success:
            raise _error_of(response)
        return call.parse(response)

    async def _send(self, call: Call[T]) -> T:
        if call.authenticated:
            await self.token()
        try:
            return await self._execute(call)
        except ApiError as error:
            if error.status == 401 and self._token.renewable:
                self._token.expire()
                await self.token()
                return await self._execute(call)
            raise

    async def _open(self, call: Call[Any], timeout: float | None) -> httpx.Response:
        await self.token()
        request = self._request(self._http, call, httpx.Timeout(self.timeout, read=timeout))
        try:
            response = await self._http.send(request, stream=True)
        except httpx.TransportError as error:
            raise _unreachable(self.url, error) from None
        if not response.is_success:
            await response.aread()
            await response.aclose()
            raise _error_of(response)
        return response

    def _stream(self, call: StreamCall[T]) -> AsyncEventStream[T]:
        return AsyncEventStream(self, call)

    async def aclose(self) -> None:
        await self._http.aclose()

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()
