"""SAP AI API's metrics (``/v2/lm/metrics``): the model quality figures of an artifact, its tags and custom info.

SAP's ``metrics.find`` reads metrics by execution id and ``metrics.patch`` writes them; zeroserve runs no
executions, so the ids are artifact ids, and each answer's ``executionId`` is the artifact's. The figures
come with ``artifact.created`` and with ``PATCH /v2/lm/metrics``, which merges what it is given into the
artifact's record: a metric of the same name, step and timestamp is replaced, any other added; a tag or a
custom info of the same name is replaced, any other added. (Not to be confused with ``gateway/metrics.py``,
the gateway's own Prometheus ``/metrics``.)
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Annotated, Any
from urllib.parse import unquote

from fastapi import Body, Query, Response
from pydantic import AwareDatetime, Field, field_validator

from zeroserve.api import records
from zeroserve.core.store import Artifact, Tracked, now
from zeroserve.events import Label, Metric, utc_text
from zeroserve.gateway.errors import ErrorAnswer, answers, not_found
from zeroserve.gateway.listing import Skip, comma_list, listing, page
from zeroserve.gateway.params import SAP_ID, ApiBody, stored
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
# How much one artifact's record may hold of what PATCH writes: it is one key-value entry, read whole.
MAX_METRICS = 2000
MAX_TRACKED = 100
MAX_RECORD_BYTES = 512 * 1024

Text256 = Annotated[str, Field(min_length=1, max_length=256)]


class MetricLabelData(ApiBody):
    name: Text256
    value: Text256


class MetricData(ApiBody):
    """SAP's TrckMetric."""

    name: Annotated[str, Field(max_length=256, pattern=r"[\w-]{1,64}")]
    value: float
    timestamp: AwareDatetime | None = None
    step: Annotated[int, Field(ge=0)] | None = None
    labels: Annotated[list[MetricLabelData], Field(max_length=MAX_TRACKED)] = []

    @field_validator("value")
    @classmethod
    def _finite(cls, value: float) -> float:
        if not math.isfinite(value):  # JSON has no NaN nor infinity; Python's reader takes them
            raise ValueError("a metric's value is a finite number")
        return value


class TagData(ApiBody):
    """SAP's TrckTag."""

    name: Text256
    value: Text256


class CustomInfoData(ApiBody):
    """SAP's TrckCustomInfoObject: any text (a rendering hint, a complex metric as JSON)."""

    name: Text256
    value: Annotated[str, Field(min_length=1, max_length=MAX_RECORD_BYTES)]


class MetricResourceData(ApiBody):
    """SAP's TrckMetricResource: what to merge into an artifact's metrics, tags and custom info."""

    execution_id: Annotated[str, Field(pattern=r"^[\w.-]{4,64}$", description="The artifact's id")]
    created_at: datetime | None = None  # SAP's resource has them; the server keeps its own
    modified_at: datetime | None = None
    metrics: Annotated[list[MetricData], Field(max_length=MAX_METRICS)] = []
    tags: Annotated[list[TagData], Field(max_length=MAX_TRACKED)] = []
    custom_info: Annotated[list[CustomInfoData], Field(max_length=MAX_TRACKED)] = []


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


def tags_of(artifact: Artifact) -> list[Label]:
    """An artifact's tags: its labels, and the tags written to it (which replace a label of their name)."""
    written = {tag.name for tag in artifact.tags}
    return [*(label for label in artifact.labels if label.key not in written),
            *(Label(key=tag.name, value=tag.value) for tag in artifact.tags)]


def metric_view(metric: Metric, registered: datetime, named: dict[str, str] | None) -> dict[str, Any]:
    labels = [label for label in (_tracked(x.key, x.value) for x in metric.labels) if label]
    if named and named["name"] not in {label["name"] for label in labels}:
        labels.append(named)
    view: dict[str, Any] = {"name": metric.name, "value": metric.value,
                            "timestamp": utc_text(metric.timestamp or registered), "labels": labels}
    if metric.step is not None:
        view["step"] = metric.step
    return view


def metric_resource(artifact: Artifact, wanted: set[str]) -> dict[str, Any]:
    body: dict[str, Any] = {"executionId": artifact.id, "createdAt": utc_text(artifact.created_at),
                            "modifiedAt": utc_text(artifact.modified_at)}
    if "metrics" in wanted:
        named = _tracked(ARTIFACT_NAME_LABEL, artifact.name)
        body["metrics"] = [metric_view(metric, artifact.created_at, named) for metric in artifact.metrics]
    if "tags" in wanted:
        body["tags"] = [tag for tag in (_tracked(x.key, x.value) for x in tags_of(artifact)) if tag]
    if "customInfo" in wanted:
        body["customInfo"] = [{"name": info.name, "value": info.value} for info in artifact.custom_info]
    return body


def _instant(moment: datetime | None) -> datetime | None:
    return moment.astimezone(UTC) if moment is not None else None


def merged(artifact: Artifact, body: MetricResourceData, written_at: datetime) -> Artifact:
    """The artifact with ``body`` merged in: a metric of the same name, step and timestamp replaced (one
    without a timestamp is taken at ``written_at``), a tag or custom info of the same name replaced."""
    metrics = {(m.name, m.step, _instant(m.timestamp or artifact.created_at)): m for m in artifact.metrics}
    for given in body.metrics:
        when = _instant(given.timestamp) or written_at
        metrics[given.name, given.step, when] = Metric(
            name=given.name, value=given.value, step=given.step, timestamp=when,
            labels=[Label(key=label.name, value=label.value) for label in given.labels])

    def by_name(current: list[Tracked], given: list[TagData] | list[CustomInfoData]) -> list[Tracked]:
        kept = {item.name: item for item in current}
        kept.update({item.name: Tracked(name=item.name, value=item.value) for item in given})
        return list(kept.values())

    changed = artifact.model_copy(update={
        "metrics": list(metrics.values()), "tags": by_name(artifact.tags, body.tags),
        "custom_info": by_name(artifact.custom_info, body.custom_info), "modified_at": written_at})
    if len(changed.metrics) > MAX_METRICS or len(changed.tags) > MAX_TRACKED or len(
            changed.custom_info) > MAX_TRACKED or len(changed.model_dump_json()) > MAX_RECORD_BYTES:
        raise ErrorAnswer(413, "PayloadTooLarge", f"artifact {artifact.id} would hold more than an artifact may: "
                          f"{MAX_METRICS} metrics, {MAX_TRACKED} tags, {MAX_TRACKED} custom infos, "
                          f"{MAX_RECORD_BYTES // 1024} KiB in all")
    return changed


@router.patch(
    "/metrics", status_code=204, response_class=Response,
    summary="Create or update an artifact's metrics, tags and custom info (SAP's metrics.patch, with the "
    "artifact id as executionId): a metric of the same name, step and timestamp is replaced, any other added "
    "(without a timestamp, it is taken now); a tag or custom info of the same name is replaced, any other added",
    responses={204: {"description": "Merged into the artifact's record"},
               **answers(400, 404, 413, meanings={404: "No artifact of that id in the resource group",
                                                  413: "The artifact would hold too much"})},
)
async def patch_metrics(scope: InGroup, platform: PlatformDep, body: Annotated[MetricResourceData, Body()]) -> Response:
    # SAP sends application/merge-patch+json (its SDK application/json); FastAPI reads any +json body as JSON.
    artifact_id = body.execution_id
    missing = f"no artifact {artifact_id} in resource group {scope.group} (executionId names an artifact)"
    if await stored(platform.store.artifacts, scope.group, artifact_id) is None:
        raise not_found(missing)
    written_at = now()

    def change(current: Artifact | None) -> Artifact:
        if current is None:  # deleted since, with its resource group
            raise not_found(missing)
        return merged(current, body, written_at)

    await platform.store.artifacts.update(scope.group, artifact_id, change)
    return Response(status_code=204)


@router.get(
    "/metrics", response_model=records.ArtifactMetricsList,
    summary="Model quality metrics of artifacts (SAP's metrics.find, with artifact ids where SAP has "
    "execution ids): executionIds=<artifact id>,... (up to 10) or $filter=executionId eq '<id>' / "
    "executionId in ('<id>', ...), or neither for every artifact; each resource's executionId is the artifact "
    "id, its metrics those the artifact was registered with (timestamp: when it was registered, unless given) and "
    "those written since, its tags the artifact's labels and the tags written since",
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
    resources = [metric_resource(artifact, wanted) for artifact in found if matches(tags_of(artifact))]
    return listing(page(resources, top, skip), count=len(resources))
