"""The gateway: zeroserve's HTTP face. For now, inference routing and a health check; the AI API
and webhooks join it later."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator

import httpx
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from zeroserve.gateway.errors import error_response
from zeroserve.gateway.inference import inference_router
from zeroserve.platform import Platform

log = logging.getLogger(__name__)


def create_app(platform: Platform) -> FastAPI:
    # One pooled client for every forward: keep-alive connections to the replicas.
    client = httpx.AsyncClient(trust_env=False, limits=httpx.Limits(max_connections=None, max_keepalive_connections=64))

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        yield
        await client.aclose()

    app = FastAPI(title="zeroserve", version="0.1.0", lifespan=lifespan)

    @app.get("/healthz", summary="Is the gateway up and connected to NATS")
    async def healthz() -> dict[str, object]:
        return {"status": "ok", "nats": platform.bus.nc.is_connected}

    @app.exception_handler(Exception)
    async def unexpected(request: Request, error: Exception) -> JSONResponse:
        # A bug or a lost NATS connection: the caller gets SAP's error body, the log gets the trace.
        log.exception("%s %s failed", request.method, request.url.path)
        return error_response(500, "InternalError", f"the gateway could not answer: {type(error).__name__}")

    app.include_router(inference_router(platform, client))
    return app
