"""How the gateway's routes are declared and told apart. ``Router`` is an APIRouter whose answers hold
what the route put in them and leave out fields without a value, as SAP's spec types them;
``operation_id`` gives SAP's own operation ids where its spec has the operation and readable
``<resource>.<verb>`` ids elsewhere; ``refuse_other_methods`` answers 405 with an ``Allow`` that lists
every method a path has, even where a literal path such as ``.../$count`` also matches a path template
such as ``.../{deploymentId}``."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from fastapi import APIRouter, FastAPI, HTTPException, Request
from fastapi.routing import APIRoute
from starlette.routing import BaseRoute, Match, Route, compile_path, get_route_path
from starlette.types import Scope

# SAP's operation ids (aicore-openapi-2.42.0.yaml), by method and path (under /v2, as zeroserve serves them).
SAP_OPERATIONS = {
    ("GET", "/v2/lm/scenarios"): "scenario.query",
    ("GET", "/v2/lm/scenarios/{scenarioId}"): "scenario.get",
    ("GET", "/v2/lm/scenarios/{scenarioId}/versions"): "scenario.query_versions",
    ("GET", "/v2/lm/scenarios/{scenarioId}/executables"): "executable.query",
    ("GET", "/v2/lm/scenarios/{scenarioId}/executables/{executableId}"): "executable.get",
    ("POST", "/v2/lm/artifacts"): "artifact.create",
    ("GET", "/v2/lm/artifacts"): "artifact.query",
    ("GET", "/v2/lm/artifacts/$count"): "artifact.count",
    ("GET", "/v2/lm/artifacts/{artifactId}"): "artifact.get",
    ("POST", "/v2/lm/configurations"): "configuration.create",
    ("GET", "/v2/lm/configurations"): "configuration.query",
    ("GET", "/v2/lm/configurations/$count"): "configuration.count",
    ("GET", "/v2/lm/configurations/{configurationId}"): "configuration.get",
    ("GET", "/v2/lm/metrics"): "metrics.find",
    ("PATCH", "/v2/lm/metrics"): "metrics.patch",
    ("GET", "/v2/lm/meta"): "meta.get",
    ("POST", "/v2/lm/deployments"): "deployment.create",
    ("GET", "/v2/lm/deployments"): "deployment.query",
    ("PATCH", "/v2/lm/deployments"): "deployment.batch_modify",
    ("GET", "/v2/lm/deployments/$count"): "deployment.count",
    ("GET", "/v2/lm/deployments/{deploymentId}"): "deployment.get",
    ("PATCH", "/v2/lm/deployments/{deploymentId}"): "deployment.modify",
    ("DELETE", "/v2/lm/deployments/{deploymentId}"): "deployment.delete",
    ("GET", "/v2/lm/deployments/{deploymentId}/logs"): "kubesubmit.v4.deployments.get_logs",
    ("POST", "/v2/admin/resourceGroups"): "kubesubmit.v4.resourcegroups.create",
    ("GET", "/v2/admin/resourceGroups"): "kubesubmit.v4.resourcegroups.get_all",
    ("GET", "/v2/admin/resourceGroups/{resourceGroupId}"): "kubesubmit.v4.resourcegroups.get",
    ("DELETE", "/v2/admin/resourceGroups/{resourceGroupId}"): "kubesubmit.v4.resourcegroups.delete",
    ("POST", "/v2/admin/objectStoreSecrets"): "kubesubmit.v4.object_store_secrets.create",
    ("GET", "/v2/admin/objectStoreSecrets"): "kubesubmit.v4.object_store_secrets.query",
    ("GET", "/v2/admin/objectStoreSecrets/{objectStoreName}"): "kubesubmit.v4.object_store_secrets.get",
    ("PATCH", "/v2/admin/objectStoreSecrets/{objectStoreName}"): "kubesubmit.v4.object_store_secrets.patch",
    ("DELETE", "/v2/admin/objectStoreSecrets/{objectStoreName}"): "kubesubmit.v4.object_store_secrets.delete",
    ("GET", "/v2/admin/resources/instanceTypes"): "kubesubmit.v4.instance_types.get",
    ("POST", "/v2/admin/repositories"): "kubesubmit.v4.repositories.create",
    ("GET", "/v2/admin/repositories"): "kubesubmit.v4.repositories.get_all",
    ("GET", "/v2/admin/repositories/{repositoryName}"): "kubesubmit.v4.repositories.get",
    ("PATCH", "/v2/admin/repositories/{repositoryName}"): "kubesubmit.v4.repositories.update",
    ("DELETE", "/v2/admin/repositories/{repositoryName}"): "kubesubmit.v4.repositories.delete",
    ("POST", "/v2/admin/applications"): "kubesubmit.v4.applications.create",
    ("GET", "/v2/admin/applications"): "kubesubmit.v4.applications.get_all",
    ("GET", "/v2/admin/applications/{applicationName}"): "kubesubmit.v4.applications.get",
    ("PATCH", "/v2/admin/applications/{applicationName}"): "kubesubmit.v4.applications.update",
    ("DELETE", "/v2/admin/applications/{applicationName}"): "kubesubmit.v4.applications.delete",
    ("GET", "/v2/admin/applications/{applicationName}/status"): "kubesubmit.v4.applications.get_status",
    ("POST", "/v2/admin/applications/{applicationName}/refresh"): "kubesubmit.v4.applications.refresh",
}
# zeroserve's own operations whose id the path does not say well.
OWN_OPERATIONS = {
    ("GET", "/v2/lm/deployments/{deploymentId}/events"): "deployment.events",
    ("GET", "/v2/lm/deployments/{deploymentId}/coldStarts"): "deployment.coldStarts",
    ("GET", "/v2/lm/deployments/{deploymentId}/traffic"): "deployment.traffic",
    ("POST", "/v2/events"): "events.publish",
    ("GET", "/v2/events/stream"): "events.stream",
    ("POST", "/v2/webhooks/{name}"): "webhooks.receive",
    ("POST", "/oauth/token"): "oauth.token",
    ("GET", "/healthz"): "healthz.get",
    ("GET", "/metrics"): "metrics.prometheus",
    ("POST", "/v2/renderings"): "deployment.render",
    ("POST", "/v2/uploads"): "uploads.create",
}
_VERBS = {"POST": "create", "PUT": "replace", "PATCH": "modify", "DELETE": "delete"}
_HTTP_METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "TRACE", "CONNECT")


def operation_id(route: APIRoute) -> str:
    """SAP's id, or ``<resource>.<verb>``: the last literal segment of the path names the resource, and the
    verb is ``query`` for a collection's GET, ``get`` for an item's, else the method's (``create``, ...)."""
    method = sorted(route.methods or {"GET"})[0]
    for table in (SAP_OPERATIONS, OWN_OPERATIONS):
        if (found := table.get((method, route.path_format))) is not None:
            return found
    segments = [part for part in route.path_format.split("/") if part]
    literal = [part for part in segments if not part.startswith("{")]
    resource = re.sub(r"[^0-9A-Za-z]+", "_", literal[-1] if literal else route.name).strip("_")
    item = bool(segments) and segments[-1].startswith("{")
    verb = ("get" if item else "query") if method == "GET" else _VERBS.get(method, method.lower())
    return f"{resource}.{verb}"


class Router(APIRouter):
    """An APIRouter whose answers hold what the route put in them, no defaults added, and leave out fields
    without a value: SAP's spec types them as plain strings and objects (absent, never null), and the
    response models name every field an answer may have."""

    def add_api_route(self, path: str, endpoint: Callable[..., Any], **kwargs: Any) -> None:
        kwargs["response_model_exclude_none"] = True
        kwargs["response_model_exclude_unset"] = True
        super().add_api_route(path, endpoint, **kwargs)


def refuse_other_methods(app: FastAPI) -> None:
    """Answer 405, with an ``Allow`` that lists the methods a path has, for a method the path lacks.

    Starlette takes the first route whose template matches, so ``PATCH .../deployments/$count`` would reach
    ``PATCH .../deployments/{deploymentId}`` as an id, and its 405s name only the methods of the first route
    that matched the path. ``MethodRefusal`` comes before every route and looks at the most specific
    template that matches the path (a literal one before one with parameters). Call it once."""
    app.router.routes.insert(0, MethodRefusal(app))


class MethodRefusal(Route):
    """The route that takes a request whose method its path does not have (see ``refuse_other_methods``)."""

    def __init__(self, app: FastAPI) -> None:
        super().__init__("/{refused:path}", self._refuse, methods=list(_HTTP_METHODS), include_in_schema=False)
        self._app = app
        self._table: list[tuple[re.Pattern[str], str, frozenset[str]]] | None = None

    def matches(self, scope: Scope) -> tuple[Match, Scope]:
        if scope["type"] != "http":
            return Match.NONE, {}
        path = get_route_path(scope)
        for pattern, template, methods in self.table():
            if pattern.match(path):
                if scope["method"] in methods:
                    return Match.NONE, {}
                # The template's route stands in for this one: the token check looks at its path (app.py).
                return Match.FULL, {"endpoint": self.endpoint, "route": _Refused(template, methods)}
        return Match.NONE, {}

    def table(self) -> list[tuple[re.Pattern[str], str, frozenset[str]]]:
        """(pattern, template, methods) of every path, the most specific first; made at the first request,
        once every router is included."""
        if self._table is None:
            methods: dict[str, set[str]] = {}
            for template, route_methods in _paths(self._app.router.routes, ""):
                methods.setdefault(template, set()).update(route_methods)
            specific_first = sorted(methods, key=lambda t: (t.count("{"), -len(t)))
            self._table = [(compile_path(t)[0], t, frozenset(methods[t])) for t in specific_first]
        return self._table

    @staticmethod
    async def _refuse(request: Request) -> None:
        refused: _Refused = request.scope["route"]
        allow = ", ".join(sorted(refused.methods))
        # Through the HTTPException handler, so that a caller without a token hears 401 first (app.py).
        raise HTTPException(405, f"{request.method} is not a method of {refused.path}; it has {allow}",
                            headers={"Allow": allow})


@dataclass(frozen=True)
class _Refused:
    path: str
    methods: frozenset[str]


def _paths(routes: list[BaseRoute], prefix: str) -> list[tuple[str, set[str]]]:
    found: list[tuple[str, set[str]]] = []
    for route in routes:
        if isinstance(route, MethodRefusal):
            continue
        if hasattr(route, "original_router"):  # FastAPI keeps an included router as a branch, with its prefix
            included: Any = route
            found += _paths(included.original_router.routes, prefix + included.include_context.prefix)
        elif isinstance(route, Route) and route.methods:
            found.append((prefix + route.path, set(route.methods)))
    return found
