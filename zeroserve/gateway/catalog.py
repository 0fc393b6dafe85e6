"""SAP AI API's catalog routes (``/v2/lm``): scenarios, executables, artifacts, configurations, metrics, meta.

Scenarios and executables are the serving templates: one executable per template, grouped by the
template's scenario, the same for every resource group. Artifacts and configurations belong to the
caller's resource group. A write checks at once what it can (an artifact's URL, a configuration's
bindings against its executable), stores the record, so that the next read or deployment finds it,
and then publishes the event the functions act on (``artifact.created`` stages the files). Metrics
are the model quality figures an artifact was registered with, read through SAP's
``metrics.find`` with the artifact id where SAP has an execution id.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from typing import Annotated, Any, Literal, TypeVar
from urllib.parse import unquote

from fastapi import APIRouter, Path, Query
from fastapi.responses import JSONResponse, PlainTextResponse
from pydantic import Field, field_validator

from zeroserve.artifacts.uris import unreadable
from zeroserve.core.store import Artifact, Configuration, now
from zeroserve.errors import ZeroserveError
from zeroserve.events import ArtifactBinding, ArtifactCreated, ConfigurationCreated, Label, ParameterBinding, new_event
from zeroserve.gateway.errors import ApiError, answers, not_found
from zeroserve.gateway.params import SAP_ID, ApiBody, ExecutableIds, ScenarioFilter, stored, stored_or_404
from zeroserve.gateway.security import InGroup
from zeroserve.platform import Platform
from zeroserve.templates.serving import ServingTemplate

T = TypeVar("T")

# The spec's patterns, so that bad input gets a 400 that names the field before anything is looked up.
NAME = r"^[\w\s.!?,;:\[\](){}<>\"'=+*/\\^&%@~$#|-]*$"
LABEL_KEY = r"^ext\.ai\.sap\.com\/[\w\.-]+$"
ARTIFACT_URL = r"^([a-z0-9-]+):\/\/.+"
_SELECTOR = re.compile(r"^(ext\.ai\.sap\.com/[\w.-]+)(!?=)([^ =,]+)$")
# An artifact registered by an event may name no scenario; SAP's artifact always has one.
UNASSIGNED_SCENARIO = "unassigned"
AI_API_VERSION = "2.42.0"
ZEROSERVE_VERSION = "0.1.0"
SOURCE = "/v2/lm"
# SAP's reserved metric label that ties a metric to the artifact it describes.
ARTIFACT_NAME_LABEL = "metrics.ai.sap.com/Artifact.name"
MAX_METRIC_IDS = 10

Kind = Literal["model", "dataset", "resultset", "other"]
Top = Annotated[int, Query(alias="$top", ge=0, le=100000, description="Number of results to display")]
Skip = Annotated[int, Query(alias="$skip", ge=0, description="Number of results to skip")]
Search = Annotated[str | None, Query(alias="$search", pattern=r"^[^~]{1,80}$",
                                     description="Substring of the name (and, for artifacts, the description)")]
CaseInsensitive = Annotated[bool, Query(alias="searchCaseInsensitive")]
Expand = Annotated[Literal["scenario"] | None, Query(alias="$expand", description="Include the scenario")]
ExecutionFilter = Annotated[str | None, Query(
    alias="executionId", pattern=SAP_ID, description="Artifacts of an execution: zeroserve runs none, so none match")]
NameFilter = Annotated[str | None, Query(alias="name", max_length=256, pattern=NAME)]
KindFilter = Annotated[Kind | None, Query(alias="kind")]
# SAP allows 10 expressions of 5000 characters; 50000 percent-encoded is more than the HTTP server
# reads in a request line (64 KiB: uvicorn refuses more with a plain-text 400 the gateway never sees).
LabelSelector = Annotated[str | None, Query(
    alias="artifactLabelSelector", max_length=5000,
    description='"key=value" or "key!=value", comma-separated (a comma in a value: {comma})')]


class LabelData(ApiBody):
    key: Annotated[str, Field(max_length=256, pattern=LABEL_KEY)]
    value: Annotated[str, Field(max_length=5000)]


class ArtifactPostData(ApiBody):
    """SAP's AiArtifactPostData."""

    name: Annotated[str, Field(max_length=256, pattern=NAME)]
    kind: Kind
    url: Annotated[str, Field(max_length=1024, pattern=ARTIFACT_URL)]
    scenario_id: Annotated[str, Field(pattern=SAP_ID)]
    description: Annotated[str | None, Field(max_length=5000)] = None
    labels: list[LabelData] = []

    @field_validator("url")
    @classmethod
    def _parsable(cls, url: str) -> str:
        # The pattern admits what urllib cannot read ("s3://[x", "https://h:99999/m"): refused naming the field.
        if (problem := unreadable(url)) is not None:
            raise ValueError(f"not a URL: {problem}")
        return url


class ParameterBindingData(ApiBody):
    key: Annotated[str, Field(max_length=256)]
    value: Annotated[str, Field(max_length=5000)]


class ArtifactBindingData(ApiBody):
    key: Annotated[str, Field(max_length=256)]
    artifact_id: Annotated[str, Field(pattern=SAP_ID)]


class ConfigurationBaseData(ApiBody):
    """SAP's AiConfigurationBaseData."""

    name: Annotated[str, Field(max_length=256, pattern=NAME)]
    executable_id: Annotated[str, Field(pattern=SAP_ID)]
    scenario_id: Annotated[str, Field(pattern=SAP_ID)]
    parameter_bindings: Annotated[list[ParameterBindingData], Field(max_length=1000)] = []
    input_artifact_bindings: Annotated[list[ArtifactBindingData], Field(max_length=1000)] = []


def timestamp(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def page(items: list[T], top: int, skip: int) -> list[T]:
    return items[skip : skip + top]


def listing(resources: list[dict[str, Any]], count: int | None = None) -> dict[str, Any]:
    return {"count": len(resources) if count is None else count, "resources": resources}


def search_matches(term: str | None, case_insensitive: bool, *texts: str | None) -> bool:
    if term is None:
        return True
    if case_insensitive:
        return any(term.lower() in text.lower() for text in texts if text)
    return any(term in text for text in texts if text)


def label_selector(text: str | None, field: str) -> list[tuple[str, bool, str]]:
    """(key, wanted, value) for each of SAP's ``key=value`` / ``key!=value`` expressions."""
    if text is None:
        return []
    expressions = text.split(",")
    if len(expressions) > 10:
        raise ApiError(400, "BadRequest", f"query.{field}: at most 10 label expressions")
    selector = []
    for expression in expressions:
        match = _SELECTOR.match(expression)
        if match is None:
            raise ApiError(400, "BadRequest", f"query.{field}: {expression[:100]!r} is not "
                           "ext.ai.sap.com/<key>=<value> or ext.ai.sap.com/<key>!=<value>")
        selector.append((match[1], match[2] == "=", match[3].replace("{comma}", ",")))
    return selector


def labels_match(labels: Iterable[Label], selector: list[tuple[str, bool, str]]) -> bool:
    pairs = {(label.key, label.value) for label in labels}
    return all(((key, value) in pairs) == wanted for key, wanted, value in selector)


def comma_list(text: str | None) -> list[str] | None:
    return None if text is None else [item for item in text.split(",") if item]


def bad_request(field: str, message: str, code: str = "BadRequest") -> ApiError:
    return ApiError(400, code, f"{field}: {message}")


def router(platform: Platform) -> APIRouter:
    api = APIRouter(prefix="/v2/lm")
    store = platform.store
    # Templates are read once at start-up: that is when the catalog they describe came to be.
    loaded_at = now()

    # -- scenarios and executables -----------------------------------------------------------------

    def templates_of(scenario_id: str) -> list[ServingTemplate]:
        return sorted((t for t in platform.templates.values() if t.scenario_id == scenario_id), key=lambda t: t.name)

    def scenario_view(scenario_id: str) -> dict[str, Any] | None:
        templates = templates_of(scenario_id)
        if not templates:
            return None
        first = templates[0]
        body: dict[str, Any] = {"id": scenario_id, "name": first.scenario_name, "createdAt": timestamp(loaded_at),
                                "modifiedAt": timestamp(loaded_at)}
        if first.scenario_description:
            body["description"] = first.scenario_description
        return body

    def executable_view(template: ServingTemplate) -> dict[str, Any]:
        parameters = []
        for parameter in template.parameters:
            item: dict[str, Any] = {"name": parameter.name, "type": parameter.type}
            if parameter.default is not None:
                item["default"] = parameter.default
            if parameter.description:
                item["description"] = parameter.description
            parameters.append(item)
        artifacts = []
        for artifact in template.artifacts:
            entry: dict[str, Any] = {"name": artifact.name}
            if artifact.description:
                entry["description"] = artifact.description
            artifacts.append(entry)
        body: dict[str, Any] = {
            "id": template.name, "name": template.executable_name, "scenarioId": template.scenario_id,
            "versionId": template.version, "parameters": parameters, "inputArtifacts": artifacts,
            "deployable": True, "createdAt": timestamp(loaded_at), "modifiedAt": timestamp(loaded_at),
        }
        if template.description:
            body["description"] = template.description
        return body

    def known_scenario(scenario_id: str) -> None:
        scenarios = {template.scenario_id for template in platform.templates.values()}
        if scenario_id not in scenarios:
            raise bad_request("body.scenarioId", f"no scenario {scenario_id!r} (known: "
                              f"{', '.join(sorted(scenarios)) or 'none'})", "ScenarioNotFound")

    def expanded(scenario_id: str | None) -> dict[str, Any]:
        return {"scenario": scenario_view(scenario_id) if scenario_id else None}

    @api.get("/scenarios", summary="Scenarios: those of the serving templates", responses=answers(404))
    async def list_scenarios(scope: InGroup) -> dict[str, Any]:
        ids = sorted({template.scenario_id for template in platform.templates.values()})
        return listing([view for view in map(scenario_view, ids) if view is not None])

    @api.get("/scenarios/{scenarioId}", summary="One scenario", responses=answers(404))
    async def get_scenario(scope: InGroup, scenario_id: Annotated[str, Path(alias="scenarioId")]) -> dict[str, Any]:
        view = scenario_view(scenario_id)
        if view is None:
            raise not_found(f"scenario {scenario_id} not found")
        return view

    @api.get("/scenarios/{scenarioId}/versions",
             summary="Versions of a scenario: those of its serving templates (an unknown scenario has none)",
             responses=answers(404))
    async def list_versions(
        scope: InGroup, scenario_id: Annotated[str, Path(alias="scenarioId")],
        label_selector_text: Annotated[str | None, Query(alias="labelSelector")] = None,
    ) -> dict[str, Any]:
        selector = label_selector(label_selector_text, "labelSelector")
        versions = sorted({template.version for template in templates_of(scenario_id)})
        # Versions carry no labels here: a selector that asks for one matches none.
        return listing([
            {"id": version, "scenarioId": scenario_id, "createdAt": timestamp(loaded_at),
             "modifiedAt": timestamp(loaded_at)}
            for version in versions if labels_match([], selector)
        ])

    @api.get("/scenarios/{scenarioId}/executables",
             summary="Executables of a scenario: its serving templates, all deployable", responses=answers(404))
    async def list_executables(
        scope: InGroup, scenario_id: Annotated[str, Path(alias="scenarioId")],
        version_id: Annotated[str | None, Query(alias="versionId")] = None,
    ) -> dict[str, Any]:
        return listing([executable_view(t) for t in templates_of(scenario_id)
                        if version_id is None or t.version == version_id])

    @api.get("/scenarios/{scenarioId}/executables/{executableId}", summary="One executable (serving template)",
             responses=answers(404))
    async def get_executable(
        scope: InGroup, scenario_id: Annotated[str, Path(alias="scenarioId")],
        executable_id: Annotated[str, Path(alias="executableId")],
    ) -> dict[str, Any]:
        template = platform.templates.get(executable_id)
        if template is None or template.scenario_id != scenario_id:
            raise not_found(f"executable {executable_id} not found in scenario {scenario_id}")
        return executable_view(template)

    # -- artifacts -------------------------------------------------------------------------------

    def artifact_view(artifact: Artifact, expand: str | None = None) -> dict[str, Any]:
        body: dict[str, Any] = {
            "id": artifact.id, "name": artifact.name, "kind": artifact.kind, "url": artifact.url,
            "scenarioId": artifact.scenario_id or UNASSIGNED_SCENARIO,
            "labels": [label.model_dump() for label in artifact.labels],
            "createdAt": timestamp(artifact.created_at), "modifiedAt": timestamp(artifact.modified_at),
        }
        if artifact.description is not None:
            body["description"] = artifact.description
        if expand == "scenario":
            body.update(expanded(artifact.scenario_id))
        return body

    async def artifacts_matching(
        group: str, scenario_id: str | None, execution_id: str | None, name: str | None, kind: str | None,
        selector_text: str | None, search: str | None, case_insensitive: bool,
    ) -> list[Artifact]:
        selector = label_selector(selector_text, "artifactLabelSelector")
        if execution_id is not None:
            return []  # zeroserve runs no executions, so no artifact came out of one
        found = [
            artifact for artifact in await store.artifacts.list(group)
            if (scenario_id is None or artifact.scenario_id == scenario_id)
            and (name is None or artifact.name == name)
            and (kind is None or artifact.kind == kind)
            and labels_match(artifact.labels, selector)
            and search_matches(search, case_insensitive, artifact.name, artifact.description)
        ]
        return sorted(found, key=lambda a: (a.created_at, a.id))

    @api.post("/artifacts", status_code=201, summary="Register an artifact: its URL is checked now, its files "
              "staged by the artifact.created function", responses=answers(404))
    async def create_artifact(scope: InGroup, body: ArtifactPostData) -> JSONResponse:
        known_scenario(body.scenario_id)
        try:
            await platform.models.locate(body.url, scope.group, store.object_store_secrets)
        except ZeroserveError as refused:
            raise ApiError(400, refused.reason, f"body.url: {refused.message}") from None
        labels = [Label(key=label.key, value=label.value) for label in body.labels]
        artifact = Artifact(id=str(uuid.uuid4()), group=scope.group, name=body.name, kind=body.kind, url=body.url,
                            scenario_id=body.scenario_id, description=body.description, labels=labels)
        await store.artifacts.put(scope.group, artifact.id, artifact)
        created = ArtifactCreated(id=artifact.id, name=artifact.name, kind=body.kind, url=artifact.url,
                                  scenario_id=artifact.scenario_id, description=artifact.description, labels=labels)
        await platform.bus.publish(new_event(created, source=f"{SOURCE}/artifacts", subject=artifact.id), scope.group)
        location = f"{platform.settings.gateway_url}/v2/lm/artifacts/{artifact.id}"
        return JSONResponse({"id": artifact.id, "message": "Artifact acknowledged", "url": artifact.url},
                            status_code=201, headers={"Location": location})

    @api.get("/artifacts", summary="Artifacts of the resource group, filtered, searched and paged",
             responses=answers(404))
    async def list_artifacts(
        scope: InGroup, scenario_id: ScenarioFilter = None, execution_id: ExecutionFilter = None,
        name: NameFilter = None, kind: KindFilter = None, selector: LabelSelector = None, top: Top = 10000,
        skip: Skip = 0, search: Search = None, case_insensitive: CaseInsensitive = False, expand: Expand = None,
    ) -> dict[str, Any]:
        found = await artifacts_matching(scope.group, scenario_id, execution_id, name, kind, selector, search,
                                         case_insensitive)
        return listing([artifact_view(a, expand) for a in page(found, top, skip)], count=len(found))

    @api.get("/artifacts/$count", summary="Number of artifacts that match the filters",
             response_class=PlainTextResponse, responses=answers(404))
    async def count_artifacts(
        scope: InGroup, scenario_id: ScenarioFilter = None, execution_id: ExecutionFilter = None,
        name: NameFilter = None, kind: KindFilter = None, search: Search = None,
        case_insensitive: CaseInsensitive = False, selector: LabelSelector = None,
    ) -> PlainTextResponse:
        found = await artifacts_matching(scope.group, scenario_id, execution_id, name, kind, selector, search,
                                         case_insensitive)
        return PlainTextResponse(str(len(found)))

    @api.get("/artifacts/{artifactId}", summary="One artifact", responses=answers(404))
    async def get_artifact(
        scope: InGroup, artifact_id: Annotated[str, Path(alias="artifactId")], expand: Expand = None,
    ) -> dict[str, Any]:
        artifact = await stored_or_404(store.artifacts, scope.group, artifact_id, f"artifact {artifact_id} not found")
        return artifact_view(artifact, expand)

    # -- configurations --------------------------------------------------------------------------

    def configuration_view(configuration: Configuration, expand: str | None = None) -> dict[str, Any]:
        body: dict[str, Any] = {
            "id": configuration.id, "name": configuration.name, "executableId": configuration.executable_id,
            "scenarioId": configuration.scenario_id,
            "parameterBindings": [b.model_dump() for b in configuration.parameter_bindings],
            "inputArtifactBindings": [b.model_dump(by_alias=True) for b in configuration.input_artifact_bindings],
            "createdAt": timestamp(configuration.created_at),
        }
        if expand == "scenario":
            body.update(expanded(configuration.scenario_id))
        return body

    async def check_bindings(group: str, body: ConfigurationBaseData) -> None:
        """A configuration that could never deploy is refused now, naming what is wrong."""
        known_scenario(body.scenario_id)
        template = platform.templates.get(body.executable_id)
        if template is None or template.scenario_id != body.scenario_id:
            known = ", ".join(t.name for t in templates_of(body.scenario_id))
            raise bad_request("body.executableId", f"no executable {body.executable_id!r} in scenario "
                              f"{body.scenario_id} (known: {known})", "ExecutableNotFound")
        parameters = {p.name: p for p in template.parameters}
        bound: set[str] = set()
        for binding in body.parameter_bindings:
            if binding.key not in parameters:
                raise bad_request("body.parameterBindings", f"executable {template.name} has no parameter "
                                  f"{binding.key!r} (its parameters: {', '.join(parameters) or 'none'})")
            if binding.key in bound:
                raise bad_request("body.parameterBindings", f"parameter {binding.key!r} is bound twice")
            bound.add(binding.key)
        unset = [name for name, parameter in parameters.items() if parameter.default is None and name not in bound]
        if unset:
            raise bad_request("body.parameterBindings", f"executable {template.name} needs a value for parameter "
                              f"{', '.join(map(repr, unset))}, which has no default")
        inputs = [artifact.name for artifact in template.artifacts]
        bound = set()
        for artifact_binding in body.input_artifact_bindings:
            key = artifact_binding.key
            if key not in inputs:
                raise bad_request("body.inputArtifactBindings", f"executable {template.name} has no input artifact "
                                  f"{key!r} (its inputs: {', '.join(inputs) or 'none'})")
            if key in bound:
                raise bad_request("body.inputArtifactBindings", f"input artifact {key!r} is bound twice")
            bound.add(key)
            if await stored(store.artifacts, group, artifact_binding.artifact_id) is None:
                raise bad_request("body.inputArtifactBindings", f"artifact {artifact_binding.artifact_id} (input "
                                  f"{key!r}) is not registered in resource group {group}", "ArtifactNotFound")
        unbound = [name for name in inputs if name not in bound]
        if unbound:
            raise bad_request("body.inputArtifactBindings", f"executable {template.name} needs an artifact bound "
                              f"to input {', '.join(map(repr, unbound))}")

    async def configurations_matching(
        group: str, scenario_id: str | None, executable_ids: str | None, search: str | None, case_insensitive: bool,
    ) -> list[Configuration]:
        executables = comma_list(executable_ids)
        found = [
            configuration for configuration in await store.configurations.list(group)
            if (scenario_id is None or configuration.scenario_id == scenario_id)
            and (executables is None or configuration.executable_id in executables)
            and search_matches(search, case_insensitive, configuration.name)
        ]
        return sorted(found, key=lambda c: (c.created_at, c.id))

    @api.post("/configurations", status_code=201,
              summary="Create a configuration: its bindings are checked against the executable's inputs",
              responses=answers(404))
    async def create_configuration(scope: InGroup, body: ConfigurationBaseData) -> JSONResponse:
        await check_bindings(scope.group, body)
        parameters = [ParameterBinding(key=b.key, value=b.value) for b in body.parameter_bindings]
        artifacts = [ArtifactBinding(key=b.key, artifact_id=b.artifact_id) for b in body.input_artifact_bindings]
        configuration = Configuration(
            id=str(uuid.uuid4()), group=scope.group, name=body.name, executable_id=body.executable_id,
            scenario_id=body.scenario_id, parameter_bindings=parameters, input_artifact_bindings=artifacts,
        )
        await store.configurations.put(scope.group, configuration.id, configuration)
        created = ConfigurationCreated(
            id=configuration.id, name=configuration.name, executable_id=configuration.executable_id,
            scenario_id=configuration.scenario_id, parameter_bindings=parameters, input_artifact_bindings=artifacts,
        )
        await platform.bus.publish(new_event(created, source=f"{SOURCE}/configurations", subject=configuration.id),
                                   scope.group)
        location = f"{platform.settings.gateway_url}/v2/lm/configurations/{configuration.id}"
        return JSONResponse({"id": configuration.id, "message": "Configuration created"}, status_code=201,
                            headers={"Location": location})

    @api.get("/configurations", summary="Configurations of the resource group, filtered, searched and paged",
             responses=answers(404))
    async def list_configurations(
        scope: InGroup, scenario_id: ScenarioFilter = None, top: Top = 10000, skip: Skip = 0,
        executable_ids: ExecutableIds = None, search: Search = None, case_insensitive: CaseInsensitive = False,
        expand: Expand = None,
    ) -> dict[str, Any]:
        found = await configurations_matching(scope.group, scenario_id, executable_ids, search, case_insensitive)
        return listing([configuration_view(c, expand) for c in page(found, top, skip)], count=len(found))

    @api.get("/configurations/$count", summary="Number of configurations that match the filters",
             response_class=PlainTextResponse, responses=answers(404))
    async def count_configurations(
        scope: InGroup, scenario_id: ScenarioFilter = None, search: Search = None,
        case_insensitive: CaseInsensitive = False, executable_ids: ExecutableIds = None,
    ) -> PlainTextResponse:
        found = await configurations_matching(scope.group, scenario_id, executable_ids, search, case_insensitive)
        return PlainTextResponse(str(len(found)))

    @api.get("/configurations/{configurationId}", summary="One configuration", responses=answers(404))
    async def get_configuration(
        scope: InGroup, configuration_id: Annotated[str, Path(alias="configurationId")], expand: Expand = None,
    ) -> dict[str, Any]:
        configuration = await stored_or_404(store.configurations, scope.group, configuration_id,
                                            f"configuration {configuration_id} not found")
        return configuration_view(configuration, expand)

    # -- metrics ---------------------------------------------------------------------------------

    @api.get(
        "/metrics",
        summary="Model quality metrics of artifacts (SAP's metrics.find, with artifact ids where SAP has "
        "execution ids): executionIds=<artifact id>,... (up to 10) or $filter=executionId eq '<id>' / "
        "executionId in ('<id>', ...); each resource's executionId is the artifact id, its metrics those the "
        "artifact was registered with (timestamp: when it was registered), its tags the artifact's labels",
        responses=answers(404),
    )
    async def find_metrics(
        scope: InGroup,
        execution_ids: Annotated[str | None, Query(alias="executionIds", description="Artifact ids, comma-separated")]
        = None,
        filter_text: Annotated[str | None, Query(alias="$filter", max_length=5000)] = None,
        select: Annotated[str | None, Query(alias="$select", pattern=r"^(\*|metrics|tags|customInfo)"
                                            r"(,(\*|metrics|tags|customInfo))*$")] = None,
        tag_filters: Annotated[str | None, Query(alias="tagFilters", max_length=5000)] = None,
        top: Annotated[int, Query(alias="$top", ge=0, le=10000)] = 1000,
        skip: Skip = 0,
    ) -> dict[str, Any]:
        ids = metric_ids(execution_ids, filter_text)
        selected = set((select or "*").split(","))
        wanted = {"metrics", "tags", "customInfo"} if "*" in selected else selected
        matches = tag_filter(tag_filters)
        resources = []
        for artifact_id in dict.fromkeys(ids):
            artifact = await stored(store.artifacts, scope.group, artifact_id)
            if artifact is None or not matches(artifact.labels):
                continue  # as for an execution without metrics: absent from the answer
            resources.append(metric_resource(artifact, wanted))
        return listing(page(resources, top, skip), count=len(resources))

    # -- meta ------------------------------------------------------------------------------------

    @api.get("/meta", summary="What this implementation of the AI API supports, and its limits")
    async def meta() -> dict[str, Any]:
        return {
            "runtimeIdentifier": "zeroserve",
            "runtimeApiVersion": ZEROSERVE_VERSION,
            "description": "zeroserve: the serving half of the AI API (scenarios and executables from serving "
            "templates, artifacts, configurations, deployments with logs and ttl, resource groups, object store "
            "secrets of type S3 and local). No executions or execution schedules. Metrics are read-only model "
            "quality figures of artifacts (GET /v2/lm/metrics?executionIds=<artifact ids>).",
            "aiApi": {
                "version": AI_API_VERSION,
                "capabilities": {
                    "multitenant": True, "shareable": True, "staticDeployments": False, "userDeployments": True,
                    "userExecutions": False, "timeToLiveDeployments": True, "executionSchedules": False,
                    "logs": {"executions": False, "deployments": True},
                    "bulkUpdates": {"executions": False, "deployments": False},
                },
                "limits": {
                    "executions": {"maxRunningCount": 0},
                    "deployments": {"maxRunningCount": -1},
                },
            },
            "extensions": {
                "resourceGroups": {"version": "1.0.0"},
                "metrics": {"version": "1.0.0", "capabilities": {"extendedResults": False}},
            },
        }

    return api


def metric_ids(execution_ids: str | None, filter_text: str | None) -> list[str]:
    """The artifact ids a metrics query asks for, from executionIds or SAP's (deprecated) $filter."""
    if execution_ids is not None:
        ids = comma_list(execution_ids) or []
        field = "query.executionIds"
    elif filter_text is not None:
        field = "query.$filter"
        equal = re.fullmatch(r"\s*executionId\s+eq\s+'([^']*)'\s*", filter_text)
        within = re.fullmatch(r"\s*executionId\s+in\s*\(([^)]*)\)\s*", filter_text)
        if equal:
            ids = [equal[1]]
        elif within:
            ids = [item.strip().strip("'") for item in within[1].split(",") if item.strip()]
        else:
            raise ApiError(400, "BadRequest", f"{field}: only executionId eq '<artifact id>' or "
                           "executionId in ('<artifact id>', ...) are understood")
    else:
        raise ApiError(400, "BadRequest", "query.executionIds: give the artifact ids (executionIds=a,b) or $filter")
    if not ids:
        raise ApiError(400, "BadRequest", f"{field}: no artifact id given")
    if len(ids) > MAX_METRIC_IDS:
        raise ApiError(400, "BadRequest", f"{field}: at most {MAX_METRIC_IDS} ids in one query")
    bad = [id for id in ids if not re.fullmatch(SAP_ID, id)]
    if bad:
        raise ApiError(400, "BadRequest", f"{field}: {bad[0][:80]!r} is not an id")
    return ids


def tag_filter(text: str | None) -> Callable[[list[Label]], bool]:
    """SAP's tagFilters (name=value, name!=value, name; percent-encoded) over an artifact's labels."""
    expressions = []
    for expression in (text or "").split(","):
        if not expression:
            continue
        parsed = re.fullmatch(r"([^=!]*)(!?=)?(.*)", expression)
        if parsed is None:  # a line break in the value, which percent-encoding would have kept out
            raise ApiError(400, "BadRequest", f"query.tagFilters: {expression[:100]!r} is not name, name=value or "
                           "name!=value, percent-encoded")
        name, operator, value = parsed.groups()
        expressions.append((unquote(name), operator, unquote(value)))
    if len(expressions) > 100:
        raise ApiError(400, "BadRequest", "query.tagFilters: at most 100 expressions")

    def matches(labels: list[Label]) -> bool:
        pairs = {(label.key, label.value) for label in labels}
        keys = {label.key for label in labels}
        for name, operator, value in expressions:
            if operator is None and name not in keys:
                return False
            if operator == "=" and (name, value) not in pairs:
                return False
            if operator == "!=" and (name, value) in pairs:
                return False
        return True

    return matches


def _tracked(name: str, value: str) -> dict[str, str] | None:
    # SAP's metric labels and tags hold 1 to 256 characters: longer or empty ones cannot be shown.
    return {"name": name, "value": value} if 1 <= len(name) <= 256 and 1 <= len(value) <= 256 else None


def metric_resource(artifact: Artifact, wanted: set[str]) -> dict[str, Any]:
    when = timestamp(artifact.created_at)
    body: dict[str, Any] = {"executionId": artifact.id, "createdAt": when,
                            "modifiedAt": timestamp(artifact.modified_at)}
    if "metrics" in wanted:
        named = _tracked(ARTIFACT_NAME_LABEL, artifact.name)
        body["metrics"] = [
            {"name": metric.name, "value": metric.value, "timestamp": when,
             "labels": [label for label in [*(_tracked(x.key, x.value) for x in metric.labels), named] if label]}
            for metric in artifact.metrics
        ]
    if "tags" in wanted:
        body["tags"] = [tag for tag in (_tracked(x.key, x.value) for x in artifact.labels) if tag]
    if "customInfo" in wanted:
        body["customInfo"] = []
    return body
