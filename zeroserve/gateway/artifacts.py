"""SAP AI API's artifacts (``/v2/lm/artifacts``): the models and data a configuration binds, per resource group.

Registering checks at once what it can (the URL must be one the model cache can read, through an
object store secret of the group where it says ``ai://``), stores the record, so that the next read
or deployment finds it, and then publishes ``artifact.created``, whose function stages the files.
"""

from __future__ import annotations

import uuid
from typing import Annotated, Any, Literal

from fastapi import Path, Query
from fastapi.responses import JSONResponse, PlainTextResponse
from pydantic import Field, field_validator

from zeroserve.api import records
from zeroserve.artifacts.registration import API_SOURCE, origin_of
from zeroserve.artifacts.uris import unreadable
from zeroserve.core.store import Artifact, Origin, Store
from zeroserve.errors import ZeroserveError
from zeroserve.events import ArtifactCreated, Label, new_event, utc_text
from zeroserve.gateway.errors import ErrorAnswer, answers
from zeroserve.gateway.listing import (
    SELECTOR_DESCRIPTION,
    SELECTOR_PATTERN,
    CaseInsensitive,
    Expand,
    Search,
    Skip,
    Top,
    label_selector,
    labels_match,
    listing,
    page,
    search_matches,
)
from zeroserve.gateway.params import NAME, SAP_ID, ApiBody, ScenarioFilter, stored_or_404
from zeroserve.gateway.routing import Router
from zeroserve.gateway.scenarios import Catalog, CatalogDep
from zeroserve.gateway.security import InGroup, PlatformDep

router = Router(prefix="/v2/lm")

# The spec's patterns, so that bad input gets a 400 that names the field before anything is looked up.
LABEL_KEY = r"^ext\.ai\.sap\.com\/[\w\.-]+$"
ARTIFACT_URL = r"^([a-z0-9-]+):\/\/.+"
# An artifact registered by an event may name no scenario; SAP's artifact always has one.
UNASSIGNED_SCENARIO = "unassigned"

Kind = Literal["model", "dataset", "resultset", "other"]
ExecutionFilter = Annotated[str | None, Query(
    alias="executionId", pattern=SAP_ID, description="Artifacts of an execution: zeroserve runs none, so none match")]
NameFilter = Annotated[str | None, Query(alias="name", max_length=256, pattern=NAME)]
KindFilter = Annotated[Kind | None, Query(alias="kind")]
# SAP allows 10 expressions of 5000 characters; 50000 percent-encoded is more than the HTTP server
# reads in a request line (64 KiB: uvicorn refuses more with a plain-text 400 the gateway never sees).
LabelSelector = Annotated[str | None, Query(
    alias="artifactLabelSelector", max_length=5000, pattern=SELECTOR_PATTERN, description=SELECTOR_DESCRIPTION)]


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


def origin_view(origin: Origin) -> dict[str, Any]:
    """How an artifact was registered, camelCase, without the parts nobody said."""
    return records.ArtifactOrigin.model_validate(origin.model_dump()).model_dump(exclude_none=True)


def artifact_view(artifact: Artifact, catalog: Catalog, expand: str | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {
        "id": artifact.id, "name": artifact.name, "kind": artifact.kind, "url": artifact.url,
        "scenarioId": artifact.scenario_id or UNASSIGNED_SCENARIO,
        "labels": [label.model_dump() for label in artifact.labels],
        "createdAt": utc_text(artifact.created_at), "modifiedAt": utc_text(artifact.modified_at),
    }
    if artifact.description is not None:
        body["description"] = artifact.description
    if artifact.origin is not None:  # zeroserve's own field: SAP's clients read past it
        body["origin"] = origin_view(artifact.origin)
    if expand == "scenario":
        body.update(catalog.expanded(artifact.scenario_id))
    return body


async def artifacts_matching(
    store: Store, group: str, scenario_id: str | None, execution_id: str | None, name: str | None,
    kind: str | None, selector_text: str | None, search: str | None, case_insensitive: bool,
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


@router.post("/artifacts", status_code=201, response_model=records.Created,
             summary="Register an artifact: its URL is checked now, its files "
             "staged by the artifact.created function", responses=answers(404))
async def create_artifact(
    scope: InGroup, body: ArtifactPostData, platform: PlatformDep, catalog: CatalogDep,
) -> JSONResponse:
    catalog.known_scenario(body.scenario_id)
    store = platform.store
    try:
        await platform.models.locate(body.url, scope.group, store.object_store_secrets)
    except ZeroserveError as refused:
        raise ErrorAnswer(400, refused.reason, f"body.url: {refused.message}") from None
    labels = [Label(key=label.key, value=label.value) for label in body.labels]
    artifact_id = str(uuid.uuid4())
    created = ArtifactCreated(id=artifact_id, name=body.name, kind=body.kind, url=body.url,
                              scenario_id=body.scenario_id, description=body.description, labels=labels)
    event = new_event(created, source=API_SOURCE, subject=artifact_id)
    artifact = Artifact(id=artifact_id, group=scope.group, name=body.name, kind=body.kind, url=body.url,
                        scenario_id=body.scenario_id, description=body.description, labels=labels,
                        origin=origin_of(event, created))
    await store.artifacts.put(scope.group, artifact.id, artifact)
    await platform.bus.publish(event, scope.group)
    location = f"{platform.settings.gateway_url}/v2/lm/artifacts/{artifact.id}"
    return JSONResponse({"id": artifact.id, "message": "Artifact acknowledged", "url": artifact.url},
                        status_code=201, headers={"Location": location})


@router.get("/artifacts", response_model=records.ArtifactList,
            summary="Artifacts of the resource group, filtered, searched and paged",
            responses=answers(404))
async def list_artifacts(
    scope: InGroup, platform: PlatformDep, catalog: CatalogDep, scenario_id: ScenarioFilter = None,
    execution_id: ExecutionFilter = None, name: NameFilter = None, kind: KindFilter = None,
    selector: LabelSelector = None, top: Top = 10000, skip: Skip = 0, search: Search = None,
    case_insensitive: CaseInsensitive = False, expand: Expand = None,
) -> dict[str, Any]:
    found = await artifacts_matching(platform.store, scope.group, scenario_id, execution_id, name, kind, selector,
                                     search, case_insensitive)
    return listing([artifact_view(a, catalog, expand) for a in page(found, top, skip)], count=len(found))


@router.get("/artifacts/$count", summary="Number of artifacts that match the filters",
            response_class=PlainTextResponse, responses=answers(404))
async def count_artifacts(
    scope: InGroup, platform: PlatformDep, scenario_id: ScenarioFilter = None, execution_id: ExecutionFilter = None,
    name: NameFilter = None, kind: KindFilter = None, search: Search = None,
    case_insensitive: CaseInsensitive = False, selector: LabelSelector = None,
) -> PlainTextResponse:
    found = await artifacts_matching(platform.store, scope.group, scenario_id, execution_id, name, kind, selector,
                                     search, case_insensitive)
    return PlainTextResponse(str(len(found)))


@router.get("/artifacts/{artifactId}", response_model=records.Artifact, summary="One artifact", responses=answers(404))
async def get_artifact(
    scope: InGroup, artifact_id: Annotated[str, Path(alias="artifactId")], platform: PlatformDep,
    catalog: CatalogDep, expand: Expand = None,
) -> dict[str, Any]:
    artifact = await stored_or_404(platform.store.artifacts, scope.group, artifact_id,
                                   f"artifact {artifact_id} not found")
    return artifact_view(artifact, catalog, expand)
