"""Every operation of the API, written once in ``Operations`` as the ``Call`` it sends and how its answer is
read: artifacts, configurations, deployments (with their logs and live events), scenarios and executables,
metrics, resource groups, object store secrets, API clients, publishing events, webhook subscriptions and
calling a deployed model; the two clients inherit the table and only send its calls."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from datetime import datetime
from typing import IO, Any, Literal, TypeVar, cast

import httpx
from cloudevents.http import CloudEvent
from pydantic import TypeAdapter, ValidationError

from zeroserve.client.calls import Call, StreamCall, operation, stream
from zeroserve.client.errors import ApiError
from zeroserve.client.records import (
    ApiClient,
    Artifact,
    ArtifactMetrics,
    ClientCredentials,
    ColdStart,
    Configuration,
    Created,
    Deployment,
    Event,
    Executable,
    LogRecord,
    Metric,
    ObjectStoreSecret,
    Published,
    ResourceGroup,
    Scenario,
    Subscription,
    Traffic,
)
from zeroserve.core.binding import to_http
from zeroserve.events import EventData, Label, new_event

T = TypeVar("T")

SOURCE = "/zeroserve/client"
# The scenario of zeroserve's serving templates (zeroserve/templates/builtin).
SERVING_SCENARIO = "model-serving"


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



class Operations:
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

    @operation
    def deployment_cold_starts(self, deployment_id: str) -> Call[list[ColdStart]]:
        """The deployment's last cold starts on this machine (up to 50, newest first), where each went by phase."""
        return self._call("GET", f"/v2/lm/deployments/{deployment_id}/coldStarts", _resources(ColdStart))

    @operation
    def deployment_traffic(self, deployment_id: str, *, minutes: int = 15) -> Call[Traffic]:
        """The requests the gateway answered for the deployment in its last ``minutes`` (1 to 60), step by step."""
        return self._call("GET", f"/v2/lm/deployments/{deployment_id}/traffic", _model(Traffic),
                          params={"minutes": minutes})

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

    @operation
    def modify_metrics(
        self, artifact_id: str, *, metrics: Iterable[Metric | Mapping[str, Any]] = (),
        tags: Mapping[str, str] | None = None, custom_info: Mapping[str, str] | None = None,
    ) -> Call[None]:
        """Write an artifact's metrics, tags and custom info (SAP's ``metrics.patch``): a metric of the same
        name, step and timestamp is replaced, any other added; a tag or custom info of the same name replaced."""
        body: dict[str, Any] = {"executionId": artifact_id, "metrics": [
            Metric.model_validate(metric).model_dump(mode="json", exclude_none=True) for metric in metrics]}
        if tags:
            body["tags"] = [{"name": name, "value": value} for name, value in tags.items()]
        if custom_info:
            body["customInfo"] = [{"name": name, "value": value} for name, value in custom_info.items()]
        return self._call("PATCH", "/v2/lm/metrics", _ignore, json=body,
                          headers={"Content-Type": "application/merge-patch+json"})

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

    @stream
    def events(
        self, *, types: list[str] | None = None, last_event_id: str | None = None, timeout: float | None = None,
    ) -> StreamCall[Event]:
        """Every event of the group as it happens (server-sent events): each ``Event``'s data is the whole
        CloudEvent (id, type, source, subject, time, data); ``types`` keeps only those (deployment logs only
        when named)."""
        headers = {"Accept": "text/event-stream"}
        if last_event_id is not None:
            headers["Last-Event-ID"] = last_event_id
        call = self._call("GET", "/v2/events/stream", _ignore, headers=headers, params=_params(types=types))
        return StreamCall(call, _event_data, timeout)

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

    # zeroserve's extensions the CLI uses: plans as instance types, dry runs, model uploads

    @operation
    def instance_types(self) -> Call[dict[str, Any]]:
        """The resource plans, as SAP's ``GET /admin/resources/instanceTypes`` names them: name -> resources."""
        return self._call("GET", "/v2/admin/resources/instanceTypes",
                          lambda response: dict(response.json().get("instanceTypes", {})))

    @operation
    def render_deployment(
        self, executable_id: str, *, parameters: Mapping[str, str] | None = None,
        artifacts: Mapping[str, str] | None = None, artifact_urls: Mapping[str, str] | None = None,
        deployment_id: str | None = None,
    ) -> Call[dict[str, Any]]:
        """Dry run: ``{"deploymentId", "resourcePlan", "inferenceService"}`` a deployment would get, inputs
        named by artifact id (``artifacts``) or by the URL of one not registered yet (``artifact_urls``)."""
        body: dict[str, Any] = {
            "executableId": executable_id,
            "parameterBindings": [{"key": k, "value": str(v)} for k, v in (parameters or {}).items()],
            "inputArtifactBindings": [{"key": k, "artifactId": v} for k, v in (artifacts or {}).items()]
            + [{"key": k, "url": v} for k, v in (artifact_urls or {}).items()],
        }
        if deployment_id is not None:
            body["deploymentId"] = deployment_id
        return self._call("POST", "/v2/renderings", _json, json=body)

    @operation
    def upload(self, archive: bytes | IO[bytes]) -> Call[dict[str, Any]]:
        """Upload a model, a plain tar of its files, into the group's uploads: ``{"url", "digest", ...}``;
        register ``url`` as the artifact's. A file object streams (the blocking client only)."""
        # httpx sends a file object in pieces; Call names bytes, which both clients can send.
        return self._call("POST", "/v2/uploads", _json, content=cast(bytes, archive),
                          headers={"Content-Type": "application/x-tar"})

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
