"""The gateway: zeroserve's HTTP face.

The AI API (``/v2/lm``, ``/v2/admin``), event and webhook ingress, live streams, inference
routing and ``/metrics``. Every route needs a bearer token except the few in ``PUBLIC``: the
health check, the token endpoint itself, inbound webhooks (verified by signature instead) and the
API's own description. Protected routers are included with the ``authenticate`` dependency, so a
route added to them cannot forget it (``tests/test_auth.py`` walks the route table to make sure).
Each resource's routes are a module-level router in the module of its name (``scenarios``,
``deployments``, ``sse``, ...); what they share per app (the platform, the webhook ids
already seen) is on ``app.state``, and reaches a route as a dependency.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator, MutableMapping
from typing import Any

from fastapi import Depends, FastAPI, Request, Response
from fastapi.responses import JSONResponse
from starlette.requests import ClientDisconnect

from zeroserve.api.records import Health
from zeroserve.core import tracing
from zeroserve.gateway import (
    activity,
    applications,
    artifacts,
    clients,
    configurations,
    console,
    deployments,
    inference,
    ingress,
    instance_types,
    logs,
    meta,
    metrics,
    model_metrics,
    oauth,
    object_store_secrets,
    renderings,
    repositories,
    resource_groups,
    scenarios,
    sse,
    subscriptions,
    templates,
    uploads,
    webhooks,
)
from zeroserve.gateway.errors import ErrorAnswer, answers, error_response, install
from zeroserve.gateway.inference import PREFIX, InferenceRoute
from zeroserve.gateway.proxy import Connections
from zeroserve.gateway.routing import operation_id, refuse_other_methods
from zeroserve.gateway.security import authenticate, bearer
from zeroserve.platform import Platform
from zeroserve.webhooks.replays import SeenIds

log = logging.getLogger(__name__)

# Routes anyone may call; each says why.
PUBLIC = {
    "/healthz",  # liveness for load balancers; says nothing about any group
    "/oauth/token",  # where a token comes from
    "/v2/webhooks/{name}",  # verified by its Standard Webhooks signature
    "/openapi.json", "/docs", "/docs/oauth2-redirect", "/redoc",  # the API's description
    "/console", "/console/{path:path}",  # the web console's files: they hold no data
    "/console/session",  # the console's sign-in; it checks its own cookie (console.py)
}


class Gateway(FastAPI):
    """FastAPI, with the inference path answered before FastAPI and its middleware see a request:
    that path checks its token itself (inference.py) and is the one whose every microsecond counts."""

    inference: InferenceRoute

    async def __call__(self, scope: MutableMapping[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "http" and scope["path"].startswith(PREFIX):
            if tracing.tracer is None:  # tracing off: this comparison is all it costs
                await self.inference(scope, receive, send)
            else:
                await _traced(self.inference, scope, receive, send, INFERENCE_ROUTE,
                              deployment=scope["path"][len(PREFIX):].partition("/")[0])
        elif tracing.tracer is not None and scope["type"] == "http" and scope["path"].startswith(TRACED):
            await _traced(super().__call__, scope, receive, send)
        else:
            await super().__call__(scope, receive, send)


# The API requests that get a server span when tracing is on (not /healthz, /metrics, /docs).
TRACED = ("/v2/", "/oauth/")
INFERENCE_ROUTE = PREFIX + "{deploymentId}/{path}"


async def _traced(app: Any, scope: MutableMapping[str, Any], receive: Any, send: Any, route: str | None = None,
                  deployment: str | None = None) -> None:
    """``app`` answering ``scope`` inside the request's server span (core/tracing.py), which records the
    status, the resource group, the deployment and, for an inference request, whether it was cold."""
    group = next((value.decode("latin-1") for name, value in scope["headers"] if name == b"ai-resource-group"), None)
    attributes = {"zeroserve.resource_group": group, "zeroserve.deployment": deployment}
    with tracing.serving(scope, route, **attributes) as span:

        async def sending(message: MutableMapping[str, Any]) -> None:
            if message["type"] == "http.response.start":
                cold = next((value == b"true" for name, value in message.get("headers", ()) if name == b"x-cold-start"),
                            None)
                tracing.answered(span, message["status"], **{} if cold is None else {"zeroserve.cold_start": cold})
            await send(message)

        await app(scope, receive, sending)


async def _warm_up(app: FastAPI) -> None:
    """One request for a path no route takes, before the first caller's: FastAPI builds each route's
    state the first time a request is matched against it (about 5 ms a route), so the first request
    to reach a route late in the table would hold the event loop for 50 ms and more. Matching this
    one tries, and so builds, every route. It is answered 401 (no token), and goes nowhere."""
    scope = {"type": "http", "http_version": "1.1", "method": "GET", "scheme": "http", "path": "/.warm-up",
             "raw_path": b"/.warm-up", "root_path": "", "query_string": b"", "headers": [],
             "client": ("127.0.0.1", 0), "server": ("127.0.0.1", 0)}

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: MutableMapping[str, Any]) -> None:
        pass

    await FastAPI.__call__(app, scope, receive, send)


def create_app(platform: Platform) -> Gateway:
    connections = Connections()  # the keep-alive connections to model servers, for every forward

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await _warm_up(app)
        yield
        await connections.close()

    app = Gateway(title="zeroserve", version="0.1.0", lifespan=lifespan, generate_unique_id_function=operation_id,
                  description="SAP AI API v2-compatible model serving, driven by CloudEvents.")
    app.state.platform = platform
    app.state.seen_webhook_ids = SeenIds(platform)

    async def token_first(request: Request) -> JSONResponse | None:
        # A caller without a valid token hears that, not what is wrong with its body or its URL (a URL
        # no route takes is protected too: only PUBLIC's routes are not).
        if getattr(request.scope.get("route"), "path", None) in PUBLIC:
            return None
        try:
            await authenticate(request, await bearer(request))
        except ErrorAnswer as refused:
            return error_response(refused.status, refused.code, refused.message, refused.headers)
        return None

    install(app, first=token_first)
    generate = app.openapi

    def described() -> dict[str, Any]:
        # The schemas of the events POST /v2/events takes are no route's models: FastAPI would leave them out.
        schema = generate()
        schema.setdefault("components", {}).setdefault("schemas", {}).update(ingress.event_schemas())
        return schema

    app.openapi = described  # type: ignore[method-assign]

    @app.get("/healthz", summary="Is the gateway up and connected to NATS", response_model=Health)
    async def healthz() -> Health:
        return Health(status="ok", nats=platform.bus.nc.is_connected)

    @app.exception_handler(ClientDisconnect)
    async def gone(request: Request, error: ClientDisconnect) -> Response:
        # The caller left while its body was read (a timeout, a cancelled call): nobody reads an answer,
        # and it is no fault of the gateway's. 499, as nginx logs it.
        log.info("%s %s: the client left before its body was read", request.method, request.url.path)
        return Response(status_code=499)

    @app.exception_handler(Exception)
    async def unexpected(request: Request, error: Exception) -> JSONResponse:
        # A bug or a lost NATS connection: the caller gets SAP's error body, the log gets the trace.
        log.exception("%s %s failed", request.method, request.url.path)
        return error_response(500, "InternalError", f"the gateway could not answer: {type(error).__name__}")

    app.inference = InferenceRoute(platform, connections)
    app.include_router(oauth.router)
    app.include_router(webhooks.router)
    protected = [Depends(authenticate)]
    # The inference routes describe what InferenceRoute answers: the model server's answers, or the
    # gateway's when it cannot forward (inference.py says which).
    gateway_answers = answers(
        400, 401, 404, 413, 429, 502, 503, 504, meanings={
            400: "The request body broke off, or was shorter than its Content-Length",
            413: "The request body is over the deployment's limit",
            404: "No such deployment in the resource group",
            429: "Too many requests already wait for this deployment: retry after Retry-After seconds",
            502: "The model server broke off",
            503: "The deployment is not running, or its model cannot be served",
            504: "No replica was ready, or the model server did not answer, in time"})
    # A 4xx may also be the model server's own answer, in its own shape (KServe's {"detail": ...}, OpenAI's
    # {"error": {...}}): passed on as it gave it, so any JSON body.
    for status in (400, 404):
        gateway_answers[status] = {
            "description": f"{gateway_answers[status]['description']} (SAP's error body); or the model "
                           "server's own answer, as it gave it", "content": {"application/json": {"schema": {}}}}
    app.include_router(inference.router, dependencies=protected, responses=gateway_answers)
    # In this order in the API's description (and tried in this order).
    for router in (
        scenarios.router, artifacts.router, configurations.router, model_metrics.router, meta.router,
        deployments.router, logs.router, sse.router, activity.router,
        resource_groups.router, object_store_secrets.router, clients.router,
        repositories.router, applications.router, templates.router,
        ingress.router,
        subscriptions.router,
        metrics.router,
        instance_types.router, renderings.router, uploads.router,
    ):
        app.include_router(router, dependencies=protected, responses=answers(401))
    app.router.routes.extend(console.routes())  # the web console: not in the API's description
    refuse_other_methods(app)  # last: it lists the methods of every route included above
    return app
