"""SAP AI API's configurations (``/v2/lm/configurations``): an executable with its parameters and input
artifacts bound, what a deployment is made from.

A configuration that could never deploy is refused when it is created, naming what is wrong (an
unknown executable, a parameter it does not have or one without a default left unbound, an input
artifact not registered in the group); a valid one is stored and ``configuration.created`` published.
"""

from __future__ import annotations

import uuid
from typing import Annotated, Any

from fastapi import Path
from fastapi.responses import JSONResponse, PlainTextResponse
from pydantic import Field

from zeroserve.api import records
from zeroserve.core.store import Configuration, Store
from zeroserve.errors import ZeroserveError
from zeroserve.events import ArtifactBinding, ConfigurationCreated, ParameterBinding, new_event, utc_text
from zeroserve.gateway.errors import answers, bad_request
from zeroserve.gateway.listing import (
    CaseInsensitive,
    Expand,
    Search,
    Skip,
    Top,
    comma_list,
    listing,
    page,
    search_matches,
)
from zeroserve.gateway.params import NAME, SAP_ID, ApiBody, ExecutableIds, ScenarioFilter, stored, stored_or_404
from zeroserve.gateway.routing import Router
from zeroserve.gateway.scenarios import Catalog, CatalogDep
from zeroserve.gateway.security import InGroup, PlatformDep
from zeroserve.settings import Settings
from zeroserve.templates.render import check_values
from zeroserve.templates.serving import ServingTemplate

router = Router(prefix="/v2/lm")

SOURCE = "/v2/lm/configurations"


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


def configuration_view(configuration: Configuration, catalog: Catalog, expand: str | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {
        "id": configuration.id, "name": configuration.name, "executableId": configuration.executable_id,
        "scenarioId": configuration.scenario_id,
        "parameterBindings": [b.model_dump() for b in configuration.parameter_bindings],
        "inputArtifactBindings": [b.model_dump(by_alias=True) for b in configuration.input_artifact_bindings],
        "createdAt": utc_text(configuration.created_at),
    }
    if expand == "scenario":
        body.update(catalog.expanded(configuration.scenario_id))
    return body


async def check_bindings(store: Store, catalog: Catalog, group: str, body: ConfigurationBaseData,
                         settings: Settings) -> None:
    """A configuration that could never deploy is refused now, naming what is wrong."""
    catalog.known_scenario(body.scenario_id)
    template = catalog.templates.get(body.executable_id)
    if template is None or template.scenario_id != body.scenario_id:
        known = ", ".join(t.name for t in catalog.templates_of(body.scenario_id))
        raise bad_request("body.executableId", f"no executable {body.executable_id!r} in scenario "
                          f"{body.scenario_id} (known: {known})", "ExecutableNotFound")
    check_parameters(template, body)
    try:  # the values too, as far as they set how it runs (limits, idle window, deployment mode)
        check_values(template, {b.key: b.value for b in body.parameter_bindings}, settings=settings)
    except ZeroserveError as refused:
        raise bad_request("body.parameterBindings", refused.message, refused.reason) from None
    await check_inputs(store, group, template, body)


def check_parameters(template: ServingTemplate, body: ConfigurationBaseData) -> None:
    """Each parameter bound once, each one the executable has, and every one without a default bound."""
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


async def check_inputs(store: Store, group: str, template: ServingTemplate, body: ConfigurationBaseData) -> None:
    """Every input artifact of the executable bound once, to an artifact registered in the group."""
    inputs = [artifact.name for artifact in template.artifacts]
    bound: set[str] = set()
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
    store: Store, group: str, scenario_id: str | None, executable_ids: str | None, search: str | None,
    case_insensitive: bool,
) -> list[Configuration]:
    executables = comma_list(executable_ids)
    found = [
        configuration for configuration in await store.configurations.list(group)
        if (scenario_id is None or configuration.scenario_id == scenario_id)
        and (executables is None or configuration.executable_id in executables)
        and search_matches(search, case_insensitive, configuration.name)
    ]
    return sorted(found, key=lambda c: (c.created_at, c.id))


@router.post("/configurations", status_code=201, response_model=records.Created,
             summary="Create a configuration: its bindings are checked against the executable's inputs",
             responses=answers(404))
async def create_configuration(
    scope: InGroup, body: ConfigurationBaseData, platform: PlatformDep, catalog: CatalogDep,
) -> JSONResponse:
    await check_bindings(platform.store, catalog, scope.group, body, platform.settings)
    parameters = [ParameterBinding(key=b.key, value=b.value) for b in body.parameter_bindings]
    artifacts = [ArtifactBinding(key=b.key, artifact_id=b.artifact_id) for b in body.input_artifact_bindings]
    configuration = Configuration(
        id=str(uuid.uuid4()), group=scope.group, name=body.name, executable_id=body.executable_id,
        scenario_id=body.scenario_id, parameter_bindings=parameters, input_artifact_bindings=artifacts,
    )
    await platform.store.configurations.put(scope.group, configuration.id, configuration)
    created = ConfigurationCreated(
        id=configuration.id, name=configuration.name, executable_id=configuration.executable_id,
        scenario_id=configuration.scenario_id, parameter_bindings=parameters, input_artifact_bindings=artifacts,
    )
    await platform.bus.publish(new_event(created, source=SOURCE, subject=configuration.id), scope.group)
    location = f"{platform.settings.gateway_url}/v2/lm/configurations/{configuration.id}"
    return JSONResponse({"id": configuration.id, "message": "Configuration created"}, status_code=201,
                        headers={"Location": location})


@router.get("/configurations", response_model=records.ConfigurationList,
            summary="Configurations of the resource group, filtered, searched and paged",
            responses=answers(404))
async def list_configurations(
    scope: InGroup, platform: PlatformDep, catalog: CatalogDep, scenario_id: ScenarioFilter = None,
    top: Top = 10000, skip: Skip = 0, executable_ids: ExecutableIds = None, search: Search = None,
    case_insensitive: CaseInsensitive = False, expand: Expand = None,
) -> dict[str, Any]:
    found = await configurations_matching(platform.store, scope.group, scenario_id, executable_ids, search,
                                          case_insensitive)
    return listing([configuration_view(c, catalog, expand) for c in page(found, top, skip)], count=len(found))


@router.get("/configurations/$count", summary="Number of configurations that match the filters",
            response_class=PlainTextResponse, responses=answers(404))
async def count_configurations(
    scope: InGroup, platform: PlatformDep, scenario_id: ScenarioFilter = None, search: Search = None,
    case_insensitive: CaseInsensitive = False, executable_ids: ExecutableIds = None,
) -> PlainTextResponse:
    found = await configurations_matching(platform.store, scope.group, scenario_id, executable_ids, search,
                                          case_insensitive)
    return PlainTextResponse(str(len(found)))


@router.get("/configurations/{configurationId}", response_model=records.Configuration,
            summary="One configuration", responses=answers(404))
async def get_configuration(
    scope: InGroup, configuration_id: Annotated[str, Path(alias="configurationId")], platform: PlatformDep,
    catalog: CatalogDep, expand: Expand = None,
) -> dict[str, Any]:
    configuration = await stored_or_404(platform.store.configurations, scope.group, configuration_id,
                                        f"configuration {configuration_id} not found")
    return configuration_view(configuration, catalog, expand)
