"""Inference routing: ``/v2/inference/deployments/{id}/{path}`` to a replica of the deployment, where
``path`` is a KServe V1 or V2 protocol path (``v1/models/{id}:predict``, ``v2/models/{id}/infer``,
``v2/health/ready``, ...). Where the backend has an activator (the local backend), it assigns the
request a replica, starting one when there is none (a cold start, said in ``X-Cold-Start`` and
``Server-Timing``); elsewhere (kserve) the request goes to the InferenceService's URL. Request and
answer stream through (``proxy.py``). Failures answer with SAP's error body and a status a client
can act on: 413 for a body over the deployment's limit, 400 for a body that broke off, 429 with
``Retry-After`` when too many requests already wait, 503 when the model cannot be served, 504
when no replica was ready or the model server was silent too long, 502 when it broke off.

This is the one hot path, so ``InferenceRoute`` answers it as plain ASGI, before FastAPI and its
middleware see the request (``app.Gateway``): the same checks as every protected route (the token,
then the resource group), and no more. The FastAPI routes below describe it in the API's
description and the route table; the gateway answers these paths first, so they take no request
of their own.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import urlsplit

from fastapi import APIRouter, Request, Response

from zeroserve.core import metrics, tracing
from zeroserve.errors import NotReady, Overloaded, ZeroserveError
from zeroserve.events import Status, is_id
from zeroserve.gateway.errors import ErrorAnswer
from zeroserve.gateway.proxy import (
    BodyIncomplete,
    BodyTooLarge,
    ClientGone,
    Connections,
    Forwarded,
    Headers,
    Receive,
    Scope,
    Send,
    Upstream,
    UpstreamFailed,
    UpstreamTimeout,
    forward,
)
from zeroserve.gateway.security import DEFAULT_GROUP, claims_of, cookie_token, group_of
from zeroserve.platform import Platform
from zeroserve.serving.activator import Activator, Assignment
from zeroserve.templates.limits import MAX_REQUEST_BODY, RequestLimits
from zeroserve.templates.modes import scaled_by_keda

log = logging.getLogger(__name__)

PREFIX = "/v2/inference/deployments/"
METHODS = ("GET", "POST", "PUT", "DELETE", "PATCH")
_PREFIX = PREFIX.encode()
_ALLOW = ", ".join(METHODS)
# Prometheus' scrape and KEDA's poll (30 s by default) and a pod's start lie between the first request
# to a Standard deployment at zero and a replica that answers.
SCALED_TO_ZERO_RETRY_S = 15
CLIENT_LEFT = 499  # as nginx logs it: the caller left before its answer


class InferenceRoute:
    """The inference requests' ASGI app: ``Gateway`` hands it every request under ``PREFIX``."""

    def __init__(self, platform: Platform, connections: Connections) -> None:
        self.platform = platform
        self.connections = connections
        # prometheus-client's children per label set, found once: ``labels()`` costs more than this path should
        self._counters: dict[tuple[str, str, int], Any] = {}
        self._timers: dict[tuple[str, str], Any] = {}
        self._in_flight: dict[tuple[str, str], Any] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        started = time.perf_counter()
        answering = _Answering(send)
        try:
            group, deployment_id = self._checked(scope)
        except ErrorAnswer as refused:
            await _refuse(send, refused)
            return
        try:
            status = await self._answer(group, deployment_id, scope, receive, answering)
        except Exception:  # a bug: the caller gets SAP's error body if it can, the log gets the trace
            log.exception("%s %s failed", scope["method"], scope["path"])
            if not answering.started:
                await _refuse(send, ErrorAnswer(500, "InternalError", "the gateway could not answer"))
            return
        if status != 404:  # unknown ids would grow the labels
            self._count(group, deployment_id, status, started, time.perf_counter())

    def _count(self, group: str, deployment_id: str, status: int, started: float, ended: float) -> None:
        seconds = ended - started
        counter = self._counters.get((group, deployment_id, status))
        if counter is None:
            counter = self._counters[group, deployment_id, status] = metrics.inference_requests.labels(
                group, deployment_id, str(status))
        timer = self._timers.get((group, deployment_id))
        if timer is None:
            timer = self._timers[group, deployment_id] = metrics.inference_seconds.labels(group, deployment_id)
        counter.inc()
        timer.observe(seconds)
        metrics.traffic.record(group, deployment_id, status, seconds, ended)  # the console's chart

    def _checked(self, scope: Scope) -> tuple[str, str]:
        """The group and deployment a request is for, once its token, group and path are checked."""
        token = group = cookie = None
        authorized = console = False
        for name, value in scope["headers"]:
            if name == b"authorization":
                scheme, _, credentials = value.decode("latin-1").partition(" ")
                token = credentials.strip() if scheme.lower() == "bearer" else None
                authorized = True
            elif name == b"ai-resource-group":
                group = value.decode("latin-1")
            elif name == b"cookie":
                cookie = value.decode("latin-1")
            elif name == b"x-zeroserve-console":
                console = value == b"1"
        if console and not authorized:  # the web console's session cookie (security.py), never over the header
            token = cookie_token(cookie)
        claims = claims_of(self.platform, token)
        if scope["method"] not in METHODS:
            raise ErrorAnswer(405, "MethodNotAllowed", "Method Not Allowed", headers={"Allow": _ALLOW})
        group = group_of(claims, DEFAULT_GROUP if group is None else group)
        deployment_id, slash, _ = scope["path"][len(PREFIX):].partition("/")
        if not slash:
            raise ErrorAnswer(404, "NotFound", f"inference paths are {PREFIX}{{deploymentId}}/{{path}}")
        if not is_id(deployment_id):  # cannot exist: say so without asking the store
            raise ErrorAnswer(404, "DeploymentNotFound", f"no deployment {deployment_id[:80]!r}")
        return group, deployment_id

    async def _answer(self, group: str, deployment_id: str, scope: Scope, receive: Receive,
                      send: _Answering) -> int:
        """Forward, or refuse; the status the caller got (CLIENT_LEFT if it left first)."""
        activator = self.platform.backend.activator
        try:
            if activator is None:
                return await self._to_backend(group, deployment_id, scope, receive, send)
            return await self._to_replica(activator, group, deployment_id, scope, receive, send)
        except ErrorAnswer as refused:
            if send.started:  # can only happen for a 500 of our own making; say it in the log
                raise
            await _refuse(send, refused)
            return refused.status
        except ClientGone:
            log.info("%s %s: the caller left before its answer was done", scope["method"], scope["path"])
            return CLIENT_LEFT

    async def _to_replica(self, activator: Activator, group: str, deployment_id: str, scope: Scope,
                          receive: Receive, send: Send) -> int:
        """This machine: forward to the replica the activator assigns, starting one from zero if needed."""
        service = activator.service(group, deployment_id)
        if service is None or service.stopped:
            raise await self._not_serving(group, deployment_id)
        timeout_s, max_body = self._limits(service.spec.limits)
        declared = _declared_length(scope, max_body, deployment_id)
        try:
            async with activator.assign(group, deployment_id) as assignment:
                forwarded = await _forwarding()(
                    self.connections, Upstream("http", "127.0.0.1", assignment.replica.port, _target(scope)),
                    scope, receive, send, timeout_s, max_body, declared, deployment_id,
                    decorate=lambda answer: cold_start_headers(assignment, answer))
        except Overloaded as error:
            raise ErrorAnswer(429, error.reason, error.message, headers={"Retry-After": "1"}) from None
        except NotReady as error:
            raise ErrorAnswer(504, error.reason, error.message) from None
        except ZeroserveError as error:
            raise ErrorAnswer(503, error.reason, error.message) from None
        if assignment.cold:
            metrics.cold_starts.labels(group, deployment_id).inc()
            metrics.cold_start_seconds.labels(group, deployment_id).observe(assignment.waited_s)
            await activator.report_cold_start(assignment, forwarded.head_s)
        return self._finished(group, deployment_id, forwarded)

    async def _to_backend(self, group: str, deployment_id: str, scope: Scope, receive: Receive,
                          send: Send) -> int:
        """A cluster: forward to the InferenceService's URL; Knative's activator does scale-from-zero."""
        deployment = await self.platform.store.deployments.get(group, deployment_id)
        if deployment is None or deployment.status != Status.RUNNING or not deployment.backend_url:
            raise await self._not_serving(group, deployment_id)
        isvc = deployment.inference_service
        if deployment.running_replicas == 0 and scaled_by_keda(isvc):
            # KServe's Standard mode has no activator: nothing would take the request. This answer is
            # counted, and the count is what makes KEDA start a replica (templates/modes.py).
            raise ErrorAnswer(503, "ScaledToZero", f"deployment {deployment_id} is scaled to zero; a replica "
                              "starts once KEDA sees this request (KServe Standard mode): try again shortly",
                              headers={"Retry-After": str(SCALED_TO_ZERO_RETRY_S)})
        timeout_s, max_body = self._limits(RequestLimits.from_inference_service(isvc))
        declared = _declared_length(scope, max_body, deployment_id)
        url = urlsplit(deployment.backend_url)
        scheme = url.scheme or "http"
        upstream = Upstream(scheme, url.hostname or "", url.port or (443 if scheme == "https" else 80),
                            url.path.rstrip("/").encode() + _target(scope))
        in_flight = self._in_flight.get((group, deployment_id))
        if in_flight is None:
            in_flight = self._in_flight[group, deployment_id] = metrics.requests_in_flight.labels(group, deployment_id)
        in_flight.inc()
        try:
            forwarded = await _forwarding()(
                self.connections, upstream, scope, receive, send, timeout_s, max_body, declared, deployment_id,
                decorate=lambda answer: [(b"server-timing", b"forward;dur=%.1f" % (answer.head_s * 1000))])
        finally:
            in_flight.dec()
        return self._finished(group, deployment_id, forwarded)

    def _limits(self, limits: RequestLimits) -> tuple[float, int]:
        settings = self.platform.settings
        return limits.timeout_s or settings.request_timeout_s, limits.max_body or settings.max_request_body

    @staticmethod
    def _finished(group: str, deployment_id: str, forwarded: Forwarded) -> int:
        if forwarded.broken is not None:
            metrics.broken_answers.labels(group, deployment_id).inc()
            log.warning("the answer of %s's model server broke off: %s", deployment_id, forwarded.broken)
        return forwarded.status

    async def _not_serving(self, group: str, deployment_id: str) -> ErrorAnswer:
        deployment = await self.platform.store.deployments.get(group, deployment_id)
        if deployment is None:
            return ErrorAnswer(404, "DeploymentNotFound", f"no deployment {deployment_id} in resource group {group}")
        message = f"deployment {deployment_id} is {deployment.status.value}"
        if deployment.status == Status.DEAD and deployment.reason:
            message += f" ({deployment.reason}: {deployment.message})"
        return ErrorAnswer(503, "DeploymentNotRunning", message)


async def _forwarded(connections: Connections, upstream: Upstream, scope: Scope, receive: Receive,
                     send: Send, timeout_s: float, max_body: int, declared: int | None, deployment_id: str,
                     decorate: Callable[[Forwarded], Headers]) -> Forwarded:
    """``proxy.forward``, its failures before an answer started turned into the gateway's answers."""
    try:
        return await forward(connections, upstream, scope, receive, send, timeout_s=timeout_s, max_body=max_body,
                             declared=declared, decorate=decorate)
    except BodyTooLarge:
        raise _too_large(deployment_id, max_body) from None
    except BodyIncomplete as error:
        raise ErrorAnswer(400, "RequestBodyIncomplete", str(error), headers={"Connection": "close"}) from None
    except UpstreamTimeout:
        raise ErrorAnswer(504, "UpstreamTimeout", f"the model server of {deployment_id} did not answer within "
                          f"{timeout_s:g} s") from None
    except UpstreamFailed as error:
        raise ErrorAnswer(502, "ReplicaFailed", f"the model server of {deployment_id} broke off: {error}") from None


def _forwarding() -> Callable[..., Awaitable[Forwarded]]:
    """How a request goes to its model server: plainly, or in a client span when tracing is on."""
    return _forwarded if tracing.tracer is None else _traced_forward


async def _traced_forward(connections: Connections, upstream: Upstream, scope: Scope, receive: Receive,
                          send: Send, timeout_s: float, max_body: int, declared: int | None, deployment_id: str,
                          decorate: Callable[[Forwarded], Headers]) -> Forwarded:
    """``_forwarded`` with tracing on: inside a client span, whose context the model server gets as
    ``traceparent`` in place of the caller's."""
    with tracing.calling(upstream.host, upstream.port) as trace:
        scope = {**scope, "headers": tracing.forwarded_headers(scope["headers"], trace)}
        return await _forwarded(connections, upstream, scope, receive, send, timeout_s, max_body, declared,
                                deployment_id, decorate)


def _target(scope: Scope) -> bytes:
    """The path (and query) at the model server: what follows the deployment id, as the caller encoded it."""
    raw: bytes = scope.get("raw_path") or b""
    if not raw.startswith(_PREFIX):  # the prefix itself percent-encoded: take the decoded path
        raw = scope["path"].encode()
    path = raw[raw.index(b"/", len(_PREFIX)):]
    query: bytes = scope.get("query_string", b"")
    return path + b"?" + query if query else path


def _declared_length(scope: Scope, max_body: int, deployment_id: str) -> int | None:
    """The caller's Content-Length (None: chunked), refused with 413 before a byte is read if over the limit."""
    for name, value in scope["headers"]:
        if name == b"content-length":
            length = int(value)  # uvicorn has refused any that is not a number
            if length > max_body:
                raise _too_large(deployment_id, max_body, length)
            return length
    return None


def _too_large(deployment_id: str, max_body: int, length: int | None = None) -> ErrorAnswer:
    size = f"of {length} bytes " if length is not None else ""
    return ErrorAnswer(413, "RequestBodyTooLarge", f"the request body {size}is over the limit of {max_body} bytes "
                       f"of {deployment_id} (the setting max_request_body, or the deployment's "
                       f"{MAX_REQUEST_BODY} annotation)", headers={"Connection": "close"})


def cold_start_headers(assignment: Assignment, forwarded: Forwarded) -> Headers:
    """X-Cold-Start, and Server-Timing: the activator's wait, a cold start's phases, the forward."""
    if not assignment.cold:  # most requests: two figures, formatted at the least cost
        timing = b"activator;dur=%.1f, forward;dur=%.1f" % (assignment.waited_s * 1000, forwarded.head_s * 1000)
        return [(b"x-cold-start", b"false"), (b"server-timing", timing)]
    phases = {"activator": assignment.waited_s, **assignment.phases(), "forward": forwarded.head_s}
    timing_text = ", ".join(f"{name};dur={seconds * 1000:.1f}" for name, seconds in phases.items())
    return [(b"x-cold-start", b"true"), (b"server-timing", timing_text.encode())]


class _Answering:
    """``send``, noting whether the answer started (after that, a failure can only cut it short)."""

    __slots__ = ("send", "started")

    def __init__(self, send: Send) -> None:
        self.send = send
        self.started = False

    async def __call__(self, message: dict[str, Any]) -> None:
        self.started = True
        await self.send(message)


async def _refuse(send: Send, refused: ErrorAnswer) -> None:
    """SAP's error body, as plain ASGI."""
    body = json.dumps({"error": {"code": refused.code, "message": refused.message}}).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    headers += [(name.lower().encode(), value.encode()) for name, value in (refused.headers or {}).items()]
    await send({"type": "http.response.start", "status": refused.status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


router = APIRouter()
# Whatever the model server answers: KServe V1's {"predictions": ...}, V2's {"outputs": ...}, OpenAI's objects.
MODEL_ANSWER = {"description": "The model server's JSON answer (KServe V1, V2 or OpenAI protocol)"}


async def infer(deployment_id: str, path: str, request: Request) -> Response:
    """Never called: ``app.Gateway`` hands these paths to ``InferenceRoute`` before routing."""
    raise ErrorAnswer(500, "InternalError", "the inference route is not installed")


# One route per method, so that each has its own operation id in /openapi.json.
for _method in METHODS:
    router.add_api_route(
        PREFIX + "{deployment_id}/{path:path}", infer, methods=[_method], operation_id=f"inference.{_method.lower()}",
        summary="Call a deployment's model server (KServe V1/V2 protocol), starting it from zero if needed",
        responses={200: {"description": "The model server's answer, as it gave it", "content": {
            "application/json": {"schema": MODEL_ANSWER}}}},
    )
