"""SAP AI API's ``GET /v2/lm/meta``: what this implementation of the AI API supports, and its limits.

SAP's clients read it to learn which parts of the API a runtime offers: zeroserve is the serving
half (no executions, no schedules), with deployment logs, ttl and resource groups.
"""

from __future__ import annotations

from typing import Any

from zeroserve.api import records
from zeroserve.gateway.routing import Router

router = Router(prefix="/v2/lm")

AI_API_VERSION = "2.42.0"
ZEROSERVE_VERSION = "0.1.0"


@router.get("/meta", response_model=records.Meta,
            summary="What this implementation of the AI API supports, and its limits")
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
                # PATCH /v2/lm/deployments stops or deletes up to 100 deployments in one call.
                "bulkUpdates": {"executions": False, "deployments": True},
            },
            "limits": {
                "executions": {"maxRunningCount": 0},
                "deployments": {"maxRunningCount": -1},
                # Any ttl of minutes, hours or days is taken (SAP's default minimum would be 10m).
                "timeToLiveDeployments": {"minimum": "0m", "maximum": "-1"},
            },
        },
        "extensions": {
            "resourceGroups": {"version": "1.0.0"},
            "metrics": {"version": "1.0.0", "capabilities": {"extendedResults": False}},
        },
    }
