"""SAP AI API's error body, ``{"error": {"code", "message"}}``, for every error the gateway answers.

Route code raises ``ErrorAnswer``; the handlers installed by ``install`` turn it, FastAPI's request
validation errors (400 with the field named, as the spec answers bad input, not 422) and
Starlette's own 404/405 into that body. Routes name the error statuses they answer with
``answers(...)``, and ``install`` makes the OpenAPI description say what the handlers do: the
body's schema (``ErrorBody``), and 400 where FastAPI would document a 422 that is never sent.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from nats import errors as nats_errors
from nats.js import errors as jetstream_errors
from starlette.exceptions import HTTPException

log = logging.getLogger(__name__)

ERROR_BODY = "ErrorBody"
_ERROR_BODY_SCHEMA = {
    "type": "object", "required": ["error"], "description": "SAP AI API's error body",
    "properties": {"error": {
        "type": "object", "required": ["code", "message"],
        "properties": {"code": {"type": "string", "description": "What went wrong, e.g. NotFound, BadRequest"},
                       "message": {"type": "string", "description": "What went wrong, for a person"}},
    }},
}
# What each status means when the gateway answers it; a route may say more.
MEANINGS = {
    400: "The request is not valid: the message names the field",
    401: "No bearer token, or not a valid one",
    403: "The token is not for every resource group (an admin token)",
    404: "Not found in the resource group, or a resource group the token does not cover",
    409: "It exists already",
    412: "Not allowed in its current status: the message says which status it is in and what is allowed",
    413: "The body is too large",
    503: "NATS did not answer in time (a server of the cluster may be restarting): try again after Retry-After",
}
# NATS not answering, for a moment: no server reachable, or a stream or KV bucket whose leader is being
# elected (a node of a cluster went). The request may be tried again; it is no fault of the gateway.
NATS_UNAVAILABLE = (nats_errors.TimeoutError, nats_errors.NoRespondersError, nats_errors.ConnectionClosedError,
                    nats_errors.ConnectionReconnectingError, nats_errors.StaleConnectionError,
                    jetstream_errors.ServiceUnavailableError, jetstream_errors.NoStreamResponseError)


def answers(*statuses: int, meanings: dict[int, str] | None = None) -> dict[int | str, dict[str, Any]]:
    """``responses=`` for a route that answers these error statuses, each with SAP's error body;
    ``meanings`` says what a status means on this route when MEANINGS does not say it well."""
    content = {"application/json": {"schema": {"$ref": f"#/components/schemas/{ERROR_BODY}"}}}
    said = {**MEANINGS, **(meanings or {})}
    return {status: {"description": said[status], "content": content} for status in statuses}


def error_response(status: int, code: str, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": {"code": code, "message": message}}, status_code=status, headers=headers)


class ErrorAnswer(Exception):
    """An answer other than success: the status, SAP's error code and a message for the user."""

    def __init__(self, status: int, code: str, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.headers = headers


def not_found(what: str) -> ErrorAnswer:
    return ErrorAnswer(404, "NotFound", what)


def bad_request(field: str, message: str, code: str = "BadRequest") -> ErrorAnswer:
    """A 400 that names the field at fault first: ``body.scenarioId: no scenario ...``."""
    return ErrorAnswer(400, code, f"{field}: {message}")


def describe(error: RequestValidationError) -> str:
    """'body.configurationId: Field required; query.$top: ...' : where, then what."""
    parts = []
    for item in error.errors():
        where = ".".join(str(part) for part in item.get("loc", ()))
        parts.append(f"{where}: {item.get('msg', 'invalid')}")
    return "; ".join(parts) or "invalid request"


def described(generate: Callable[[], dict[str, Any]]) -> Callable[[], dict[str, Any]]:
    """FastAPI's OpenAPI generator, with the errors as ``install``'s handlers answer them."""

    def openapi() -> dict[str, Any]:
        schema = generate()  # FastAPI's own cache: the same dict until the routes change, so this is idempotent
        schemas = schema.setdefault("components", {}).setdefault("schemas", {})
        schemas[ERROR_BODY] = _ERROR_BODY_SCHEMA
        for path in schema.get("paths", {}).values():
            for operation in path.values():
                responses = operation.get("responses", {})
                if responses.pop("422", None) is not None:
                    responses.setdefault("400", answers(400)[400])
        for unused in ("HTTPValidationError", "ValidationError"):
            schemas.pop(unused, None)
        return schema

    return openapi


def install(app: FastAPI, first: Callable[[Request], Awaitable[JSONResponse | None]] | None = None) -> None:
    """The error handlers, and the description that says what they answer.

    ``first`` may answer instead of the refusals FastAPI and Starlette make themselves (a body they
    cannot parse, a URL no route takes, a method a route does not): they come before any dependency
    of the route has run, so before the checks those make (app.py's: the token).
    """

    async def refused(request: Request, status: int, code: str, message: str,
                      headers: dict[str, str] | None = None) -> JSONResponse:
        earlier = await first(request) if first is not None else None
        return earlier or error_response(status, code, message, headers)

    @app.exception_handler(ErrorAnswer)
    async def api_error(request: Request, error: ErrorAnswer) -> JSONResponse:
        return error_response(error.status, error.code, error.message, error.headers)

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, error: RequestValidationError) -> JSONResponse:
        return await refused(request, 400, "BadRequest", describe(error))

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, error: HTTPException) -> JSONResponse:
        code = {404: "NotFound", 405: "MethodNotAllowed"}.get(error.status_code, "HTTPError")
        return await refused(request, error.status_code, code, str(error.detail), dict(error.headers or {}) or None)

    async def nats_unavailable(request: Request, error: Exception) -> JSONResponse:
        log.warning("%s %s: NATS did not answer: %s", request.method, request.url.path, type(error).__name__)
        return error_response(503, "NatsUnavailable", f"NATS did not answer in time, try again: "
                              f"{type(error).__name__}", {"Retry-After": "1"})

    for unavailable in NATS_UNAVAILABLE:
        app.add_exception_handler(unavailable, nats_unavailable)

    app.openapi = described(app.openapi)  # type: ignore[method-assign]
