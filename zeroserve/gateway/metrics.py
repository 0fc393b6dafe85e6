"""``GET /metrics``: Prometheus exposition of ``zeroserve.core.metrics`` (a bearer token is needed, as on
every route: give Prometheus one with its ``oauth2`` client-credentials settings)."""

from __future__ import annotations

from fastapi import Response
from fastapi.responses import PlainTextResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from zeroserve.gateway.routing import Router

router = Router(tags=["Metrics"])


@router.get("/metrics", summary="Prometheus metrics: requests, latency, cold starts, replicas, events",
            response_class=PlainTextResponse)  # Prometheus' text format is text/plain (with a version)
async def metrics() -> Response:
    return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)
