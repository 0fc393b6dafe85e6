"""SAP AI API's ``GET /v2/lm/deployments/{id}/logs``: a deployment's log records of a time range.

They are read through ``zeroserve.deployments.logs``, from the logs stream, which keeps a
deployment's lines after its replicas and its record are gone: a deleted deployment's logs can
still be read, and only an id that never had either is unknown.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Literal

from fastapi import Query
from pydantic import BeforeValidator

from zeroserve.api import records
from zeroserve.deployments import logs as deployment_logs
from zeroserve.events import is_id, utc_text
from zeroserve.gateway.deployments import DeploymentIdPath
from zeroserve.gateway.errors import answers, not_found
from zeroserve.gateway.params import stored
from zeroserve.gateway.routing import Router
from zeroserve.gateway.security import InGroup, PlatformDep

router = Router(tags=["Deployment"])

_EARLIEST = datetime.min.replace(tzinfo=UTC)
_LATEST = datetime.max.replace(tzinfo=UTC)


def _aware(moment: datetime) -> datetime:
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _utc(moment: datetime) -> datetime:
    # A time near the year 1 or 9999 may lie beyond them in UTC: it stands for the nearest one that does not.
    try:
        return _aware(moment).astimezone(UTC)
    except OverflowError:
        return _EARLIEST if moment.year < 5000 else _LATEST


# RFC 3339 (the description's date-time): pydantic alone would also take a number as a Unix time.
_RFC3339 = re.compile(r"\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}(:\d{2}(\.\d+)?)?([Zz]|[+-]\d{2}:?\d{2})?")


def _rfc3339(value: object) -> object:
    if isinstance(value, str) and not _RFC3339.fullmatch(value):
        raise ValueError("must be an RFC 3339 date-time, e.g. 2026-12-05T10:00:00Z")
    return value


Rfc3339 = Annotated[datetime, BeforeValidator(_rfc3339)]


def time_range(start: datetime | None, end: datetime | None) -> tuple[datetime, datetime]:
    """(start, end) in UTC: ``end`` now and ``start`` an hour before it unless given. Any two times the
    description admits make a range; one whose start is after its end holds no lines."""
    end_at = _utc(end) if end else datetime.now(UTC)
    start_at = _utc(start) if start else max(end_at, _EARLIEST + timedelta(hours=1)) - timedelta(hours=1)
    return start_at, end_at


@router.get("/v2/lm/deployments/{deploymentId}/logs", response_model=records.Logs,
            summary="Get logs of specific deployment",
            responses=answers(404))
async def logs(
    deploymentId: DeploymentIdPath, scope: InGroup, platform: PlatformDep,
    top: Annotated[int, Query(alias="$top", ge=1, le=5000)] = 1000,
    start: Annotated[Rfc3339 | None, Query(description="RFC 3339; defaults to an hour ago")] = None,
    end: Annotated[Rfc3339 | None, Query(description="RFC 3339; defaults to now")] = None,
    order: Annotated[Literal["asc", "desc"], Query(alias="$order")] = "asc",
) -> dict[str, Any]:
    deployment_id = deploymentId
    group = scope.group
    start_at, end_at = time_range(start, end)
    records = (await deployment_logs.query(platform.bus, group, deployment_id, start_at, end_at, top, order)
               if is_id(deployment_id) and start_at <= end_at else [])
    # Logs outlive the deployment; an id that never had either is unknown.
    if not records and await stored(platform.store.deployments, group, deployment_id) is None:
        raise not_found(f"no deployment {deployment_id} in resource group {group}, and no logs of one "
                        f"between {utc_text(start_at)} and {utc_text(end_at)}")
    return {"data": {"result": [
        {"timestamp": utc_text(record.timestamp), "msg": record.message, "source": record.source}
        for record in records
    ]}}
