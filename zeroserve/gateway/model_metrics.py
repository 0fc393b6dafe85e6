"""SAP AI API's metrics (``GET /v2/lm/metrics``): the model quality figures an artifact was registered with.

SAP's ``metrics.find`` reads metrics by execution id; zeroserve runs no executions, so the ids
asked for are artifact ids, and each answer's ``executionId`` is the artifact's. Read-only: the
figures come with ``artifact.created``. (Not to be confused with ``gateway/metrics.py``, the
gateway's own Prometheus ``/metrics``.)
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Annotated, Any
from urllib.parse import unquote

from fastapi import Query

from zeroserve.api import records
from zeroserve.core.store import Artifact
from zeroserve.events import Label, utc_text
from zeroserve.gateway.errors import ErrorAnswer, answers
from zeroserve.gateway.listing import Skip, comma_list, listing, page
from zeroserve.gateway.params import SAP_ID, stored
from zeroserve.gateway.routing import Router
from zeroserve.gateway.security import InGroup, PlatformDep

router = Router(prefix="/v2/lm")

# SAP's reserved metric label that ties a metric to the artifact it describes.
ARTIFACT_NAME_LABEL = "metrics.ai.sap.com/Artifact.name"
MAX_METRIC_IDS = 10
# What the description states of the query, so that a query it admits is one this module can read.
_ID = r"[A-Za-z0-9_.-]{4,64}"
EXECUTION_IDS = rf"^{_ID}(,{_ID}){{0,{MAX_METRIC_IDS - 1}}}$"
_QUOTED = rf"'{_ID}'"
FILTER = (rf"^\s*executionId\s+(eq\s+{_QUOTED}|in\s*\(\s*{_QUOTED}(\s*,\s*{_QUOTED}){{0,{MAX_METRIC_IDS - 1}}}\s*\))"
          r"\s*$")
TAG_FILTERS = r"^[^,\n]*(,[^,\n]*){0,99}$"


def metric_ids(execution_ids: str | None, filter_text: str | None) -> list[str] | None:
    """The artifact ids a metrics query asks for, from executionIds or SAP's (deprecated) $filter; None
    when it names none: then it asks for every artifact's."""
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
            raise ErrorAnswer(400, "BadRequest", f"{field}: only executionId eq '<artifact id>' or "
                           "executionId in ('<artifact id>', ...) are understood")
    else:
        return None
    if not ids:
        raise ErrorAnswer(400, "BadRequest", f"{field}: no artifact id given")
    if len(ids) > MAX_METRIC_IDS:
        raise ErrorAnswer(400, "BadRequest", f"{field}: at most {MAX_METRIC_IDS} ids in one query")
    bad = [id for id in ids if not re.fullmatch(SAP_ID, id)]
    if bad:
        raise ErrorAnswer(400, "BadRequest", f"{field}: {bad[0][:80]!r} is not an id")
    return ids


def tag_filter(text: str | None) -> Callable[[list[Label]], bool]:
    """SAP's tagFilters (name=value, name!=value, name; percent-encoded) over an artifact's labels."""
    expressions = []
    for expression in (text or "").split(","):
        if not expression:
            continue
        parsed = re.fullmatch(r"([^=!]*)(!?=)?(.*)", expression)
        if parsed is None:  # a line break in the value, which percent-encoding would have kept out
            raise ErrorAnswer(400, "BadRequest", f"query.tagFilters: {expression[:100]!r} is not name, name=value or "
                           "name!=value, percent-encoded")
        name, operator, value = parsed.groups()
        expressions.append((unquote(name), operator, unquote(value)))
    if len(expressions) > 100:
        raise ErrorAnswer(400, "BadRequest", "query.tagFilters: at most 100 expressions")

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
    when = utc_text(artifact.created_at)
    body: dict[str, Any] = {"executionId": artifact.id, "createdAt": when,
                            "modifiedAt": utc_text(artifact.modified_at)}
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


@router.get(
    "/metrics", response_model=records.ArtifactMetricsList,
    summary="Model quality metrics of artifacts (SAP's metrics.find, with artifact ids where SAP has "
    "execution ids): executionIds=<artifact id>,... (up to 10) or $filter=executionId eq '<id>' / "
    "executionId in ('<id>', ...), or neither for every artifact; each resource's executionId is the artifact "
    "id, its metrics those the artifact was registered with (timestamp: when it was registered), its tags the "
    "artifact's labels",
    responses=answers(404),
)
async def find_metrics(
    scope: InGroup,
    platform: PlatformDep,
    execution_ids: Annotated[str | None, Query(alias="executionIds", pattern=EXECUTION_IDS, description=(
        f"Artifact ids, comma-separated, up to {MAX_METRIC_IDS}; without them and $filter, every artifact's"))]
    = None,
    filter_text: Annotated[str | None, Query(alias="$filter", max_length=5000, pattern=FILTER, description=(
        "executionId eq '<artifact id>' or executionId in ('<artifact id>', ...)"))] = None,
    select: Annotated[str | None, Query(alias="$select", pattern=r"^(\*|metrics|tags|customInfo)"
                                        r"(,(\*|metrics|tags|customInfo))*$")] = None,
    tag_filters: Annotated[str | None, Query(alias="tagFilters", max_length=5000, pattern=TAG_FILTERS, description=(
        "name, name=value or name!=value, percent-encoded, up to 100, comma-separated"))] = None,
    top: Annotated[int, Query(alias="$top", ge=0, le=10000)] = 1000,
    skip: Skip = 0,
) -> dict[str, Any]:
    ids = metric_ids(execution_ids, filter_text)
    selected = set((select or "*").split(","))
    wanted = {"metrics", "tags", "customInfo"} if "*" in selected else selected
    matches = tag_filter(tag_filters)
    if ids is None:
        found = sorted(await platform.store.artifacts.list(scope.group), key=lambda a: (a.created_at, a.id))
    else:  # an unknown id is as an execution without metrics: absent from the answer
        found = [a for a in [await stored(platform.store.artifacts, scope.group, i) for i in dict.fromkeys(ids)] if a]
    resources = [metric_resource(artifact, wanted) for artifact in found if matches(artifact.labels)]
    return listing(page(resources, top, skip), count=len(resources))
