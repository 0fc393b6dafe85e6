"""SAP AI API's scenarios and executables (``/v2/lm/scenarios``): the serving templates, as a catalog.

One executable per serving template, grouped by the template's scenario, all deployable: in each
resource group, the operator's templates and the group's added ones (synced from git or applied,
``templates/executables.py``), read at each request. ``Catalog`` is that view of the templates; artifacts and
configurations use it too, to check a scenario or an executable a caller names and to expand a
scenario (``$expand=scenario``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Annotated, Any

from fastapi import Depends, Path, Query

from zeroserve.api import records
from zeroserve.events import utc_text
from zeroserve.gateway.errors import answers, bad_request, not_found
from zeroserve.gateway.listing import (
    SELECTOR_DESCRIPTION,
    SELECTOR_PATTERN,
    label_selector,
    labels_match,
    listing,
)
from zeroserve.gateway.routing import Router
from zeroserve.gateway.security import InGroup, PlatformDep
from zeroserve.templates.serving import ServingTemplate

router = Router(prefix="/v2/lm")

ScenarioIdPath = Annotated[str, Path(alias="scenarioId")]


@dataclass(frozen=True)
class Catalog:
    """The serving templates as SAP's scenarios and executables; ``loaded_at`` is when the operator's were
    read, which is when the catalog they describe came to be (every createdAt and modifiedAt of it but
    those of added templates, whose ``times`` are their own: created, modified)."""

    templates: dict[str, ServingTemplate]
    loaded_at: datetime
    times: Mapping[str, tuple[datetime, datetime]] = field(default_factory=dict)

    def templates_of(self, scenario_id: str) -> list[ServingTemplate]:
        return sorted((t for t in self.templates.values() if t.scenario_id == scenario_id), key=lambda t: t.name)

    def scenario_ids(self) -> list[str]:
        return sorted({template.scenario_id for template in self.templates.values()})

    def scenario_view(self, scenario_id: str) -> dict[str, Any] | None:
        templates = self.templates_of(scenario_id)
        if not templates:
            return None
        first = templates[0]
        body: dict[str, Any] = {"id": scenario_id, "name": first.scenario_name,
                                "createdAt": utc_text(self.loaded_at), "modifiedAt": utc_text(self.loaded_at)}
        if first.scenario_description:
            body["description"] = first.scenario_description
        return body

    def executable_view(self, template: ServingTemplate) -> dict[str, Any]:
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
        created, modified = self.times.get(template.name, (self.loaded_at, self.loaded_at))
        body: dict[str, Any] = {
            "id": template.name, "name": template.executable_name, "scenarioId": template.scenario_id,
            "versionId": template.version, "parameters": parameters, "inputArtifacts": artifacts,
            "deployable": True, "createdAt": utc_text(created), "modifiedAt": utc_text(modified),
        }
        if template.description:
            body["description"] = template.description
        return body

    def known_scenario(self, scenario_id: str) -> None:
        """Nothing when the scenario exists; a 400 naming the known ones when it does not."""
        scenarios = self.scenario_ids()
        if scenario_id not in scenarios:
            raise bad_request("body.scenarioId", f"no scenario {scenario_id!r} (known: "
                              f"{', '.join(scenarios) or 'none'})", "ScenarioNotFound")

    def expanded(self, scenario_id: str | None) -> dict[str, Any]:
        """What ``$expand=scenario`` adds to an artifact or a configuration."""
        return {"scenario": self.scenario_view(scenario_id) if scenario_id else None}


async def catalog_of(scope: InGroup, platform: PlatformDep) -> Catalog:
    """The catalog as the request's group sees it now: a template synced a moment ago is in it."""
    executables = await platform.executables.of(scope.group)
    return Catalog({name: executable.template for name, executable in executables.items()},
                   loaded_at=platform.executables.started_at,
                   times={name: (e.created_at, e.modified_at) for name, e in executables.items()})


CatalogDep = Annotated[Catalog, Depends(catalog_of)]


@router.get("/scenarios", response_model=records.ScenarioList,
            summary="Scenarios: those of the serving templates", responses=answers(404))
async def list_scenarios(scope: InGroup, catalog: CatalogDep) -> dict[str, Any]:
    return listing([view for view in map(catalog.scenario_view, catalog.scenario_ids()) if view is not None])


@router.get("/scenarios/{scenarioId}", response_model=records.Scenario, summary="One scenario", responses=answers(404))
async def get_scenario(scope: InGroup, scenario_id: ScenarioIdPath, catalog: CatalogDep) -> dict[str, Any]:
    view = catalog.scenario_view(scenario_id)
    if view is None:
        raise not_found(f"scenario {scenario_id} not found")
    return view


@router.get("/scenarios/{scenarioId}/versions", response_model=records.ScenarioVersionList,
            summary="Versions of a scenario: those of its serving templates (an unknown scenario has none)",
            responses=answers(404))
async def list_versions(
    scope: InGroup, scenario_id: ScenarioIdPath, catalog: CatalogDep,
    label_selector_text: Annotated[str | None, Query(alias="labelSelector", max_length=5000,
                                                     pattern=SELECTOR_PATTERN, description=SELECTOR_DESCRIPTION)]
    = None,
) -> dict[str, Any]:
    selector = label_selector(label_selector_text, "labelSelector")
    versions = sorted({template.version for template in catalog.templates_of(scenario_id)})
    # Versions carry no labels here: a selector that asks for one matches none.
    return listing([
        {"id": version, "scenarioId": scenario_id, "createdAt": utc_text(catalog.loaded_at),
         "modifiedAt": utc_text(catalog.loaded_at)}
        for version in versions if labels_match([], selector)
    ])


@router.get("/scenarios/{scenarioId}/executables", response_model=records.ExecutableList,
            summary="Executables of a scenario: its serving templates, all deployable", responses=answers(404))
async def list_executables(
    scope: InGroup, scenario_id: ScenarioIdPath, catalog: CatalogDep,
    version_id: Annotated[str | None, Query(alias="versionId")] = None,
) -> dict[str, Any]:
    return listing([catalog.executable_view(t) for t in catalog.templates_of(scenario_id)
                    if version_id is None or t.version == version_id])


@router.get("/scenarios/{scenarioId}/executables/{executableId}", response_model=records.Executable,
            summary="One executable (serving template)",
            responses=answers(404))
async def get_executable(
    scope: InGroup, scenario_id: ScenarioIdPath, executable_id: Annotated[str, Path(alias="executableId")],
    catalog: CatalogDep,
) -> dict[str, Any]:
    template = catalog.templates.get(executable_id)
    if template is None or template.scenario_id != scenario_id:
        raise not_found(f"executable {executable_id} not found in scenario {scenario_id}")
    return catalog.executable_view(template)
