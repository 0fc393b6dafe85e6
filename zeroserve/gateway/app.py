"""The gateway: zeroserve's HTTP face. For now, inference routing and a health check; the AI API
and webhooks join it later."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

import httpx
from fastapi import FastAPI

from zeroserve.gateway.inference import inference_router
from zeroserve.platform import Platform


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

    app.include_router(inference_router(platform, client))
    return app
