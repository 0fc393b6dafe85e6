"""Inference routing: ``/v2/inference/deployments/{id}/{path}`` to a replica of the deployment, where
``path`` is a KServe V1 or V2 protocol path (``v1/models/{id}:predict``, ``v2/models/{id}/infer``,
``v2/health/ready``, ...). Where the backend has an activator (the local backend), it assigns the
request a replica, starting one when there is none (a cold start, said in ``X-Cold-Start`` and
``Server-Timing``); elsewhere (kserve) the request goes to the InferenceService's URL. It is
forwarded as it came. Failures answer with SAP's error body and a status a client can act on: 429
with ``Retry-After`` when too many requests already wait, 503 when the model cannot be served, 504
when no replica was ready in time, 502 when a replica broke off.
"""

from __future__ import annotations

import time

import aiohttp
from fastapi import APIRouter, Request, Response
from starlette.datastructures import QueryParams

from zeroserve.core import metrics
from zeroserve.errors import NotReady, Overloaded, ZeroserveError
from zeroserve.events import Status, is_id
from zeroserve.gateway.errors import error_response
from zeroserve.gateway.security import InGroup
from zeroserve.platform import Platform
from zeroserve.serving.activator import Activator, Assignment

# Not forwarded: they describe one hop, not the request (RFC 9110 section 7.6.1).
HOP_BY_HOP = {
    "connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "te", "trailer",
    "transfer-encoding", "upgrade", "host", "content-length",
}
# Not forwarded either: the caller's bearer token is zeroserve's, checked here; a model server has
# no use for it and must not be able to replay it.
NOT_FORWARDED = HOP_BY_HOP | {"authorization"}


class UpstreamTimeout(Exception):
    pass


class UpstreamFailed(Exception):
    pass


class Upstream:
    """The client requests are forwarded with: one pool of keep-alive connections (TCP_NODELAY).

    aiohttp's client, not httpx: measured here, a forward through it costs 1.4 ms at p50 where
    httpx's costs 2.0 ms, on a path whose whole budget is a few milliseconds. Bodies pass through
    as they are (no decompression), so the replica's Content-Encoding stays true.
    """

    def __init__(self) -> None:
        self._session: aiohttp.ClientSession | None = None

    async def request(self, method: str, url: str, params: QueryParams, body: bytes, headers: dict[str, str],
                      timeout: float) -> tuple[int, dict[str, str], bytes]:
        if self._session is None:  # made here: a session belongs to the running event loop
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=0), auto_decompress=False, trust_env=False,
                skip_auto_headers=("User-Agent", "Accept-Encoding", "Accept"))
        try:
            async with self._session.request(
                method, url, params=list(params.multi_items()), data=body, headers=headers,
                timeout=aiohttp.ClientTimeout(total=timeout), allow_redirects=False,
            ) as response:
                content = await response.read()
                kept = {k: v for k, v in response.headers.items() if k.lower() not in HOP_BY_HOP}
                return response.status, kept, content
        except TimeoutError:  # aiohttp's timeouts are TimeoutErrors too
            raise UpstreamTimeout() from None
        except aiohttp.ClientError as error:
            raise UpstreamFailed(type(error).__name__) from None

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()


router = APIRouter()


async def infer(deployment_id: str, path: str, request: Request, scope: InGroup) -> Response:
    # Read from the app's state, not through a dependency: this is the hot path.
    state = request.app.state
    return await answer(state.platform, state.upstream, scope.group, deployment_id, path, request)


# One route per method, so that each has its own operation id in /openapi.json.
for _method in ("GET", "POST", "PUT", "DELETE", "PATCH"):
    router.add_api_route(
        "/v2/inference/deployments/{deployment_id}/{path:path}", infer, methods=[_method],
        operation_id=f"infer_{_method.lower()}",
        summary="Call a deployment's model server (KServe V1/V2 protocol), starting it from zero if needed",
    )


async def answer(platform: Platform, upstream: Upstream, group: str, deployment_id: str, path: str,
                 request: Request) -> Response:
    """One inference request, answered and counted in the metrics."""
    started = time.perf_counter()
    if not is_id(deployment_id):  # cannot exist: say so without asking the store
        return error_response(404, "DeploymentNotFound", f"no deployment {deployment_id[:80]!r}")
    # The local backend serves here, through its activator; any other forwards to where the backend serves.
    activator = platform.backend.activator
    if activator is None:
        response = await to_backend(platform, upstream, group, deployment_id, path, request)
    else:
        response = await to_replica(platform, activator, upstream, group, deployment_id, path, request)
    if response.status_code != 404:  # unknown ids would grow the labels
        metrics.inference_requests.labels(group, deployment_id, str(response.status_code)).inc()
        metrics.inference_seconds.labels(group, deployment_id).observe(time.perf_counter() - started)
    return response


async def to_replica(platform: Platform, activator: Activator, upstream: Upstream, group: str, deployment_id: str,
                     path: str, request: Request) -> Response:
    """This machine: forward to the replica the activator assigns, starting one from zero if needed."""
    service = activator.service(group, deployment_id)
    if service is None or service.stopped:
        return await _not_serving(platform, group, deployment_id)
    body = await request.body()
    headers = forwarded_headers(request)
    try:
        async with activator.assign(group, deployment_id) as assignment:
            forward_started = time.perf_counter()
            try:
                status, response_headers, content = await upstream.request(
                    request.method, f"{assignment.replica.url}/{path}", request.query_params, body, headers,
                    platform.settings.request_timeout_s,
                )
            except UpstreamTimeout:
                return error_response(504, "UpstreamTimeout", f"the model server of {deployment_id} "
                                      f"did not answer within {platform.settings.request_timeout_s:g} s")
            except UpstreamFailed as error:
                return error_response(502, "ReplicaFailed", f"the model server of {deployment_id} broke "
                                      f"off: {error}")
    except Overloaded as error:
        return error_response(429, error.reason, error.message, headers={"Retry-After": "1"})
    except NotReady as error:
        return error_response(504, error.reason, error.message)
    except ZeroserveError as error:
        return error_response(503, error.reason, error.message)
    forward_s = time.perf_counter() - forward_started
    if assignment.cold:
        metrics.cold_starts.labels(group, deployment_id).inc()
        metrics.cold_start_seconds.labels(group, deployment_id).observe(assignment.waited_s)
    response_headers["X-Cold-Start"] = "true" if assignment.cold else "false"
    response_headers["Server-Timing"] = server_timing(assignment, forward_s)
    if assignment.cold:
        await activator.report_cold_start(assignment, forward_s)
    return Response(content, status_code=status, headers=response_headers)


def server_timing(assignment: Assignment, forward_s: float) -> str:
    """The Server-Timing header of a forwarded request: the activator's wait, a cold start's phases, the forward."""
    phases = {"activator": assignment.waited_s, **assignment.phases(), "forward": forward_s}
    return ", ".join(f"{name};dur={seconds * 1000:.1f}" for name, seconds in phases.items())


async def to_backend(platform: Platform, upstream: Upstream, group: str, deployment_id: str, path: str,
                     request: Request) -> Response:
    """A cluster: forward to the InferenceService's URL; Knative's activator does scale-from-zero."""
    deployment = await platform.store.deployments.get(group, deployment_id)
    if deployment is None or deployment.status != Status.RUNNING or not deployment.backend_url:
        return await _not_serving(platform, group, deployment_id)
    headers = forwarded_headers(request)
    started = time.perf_counter()
    try:
        status, response_headers, content = await upstream.request(
            request.method, f"{deployment.backend_url.rstrip('/')}/{path}", request.query_params,
            await request.body(), headers, platform.settings.request_timeout_s,
        )
    except UpstreamTimeout:
        return error_response(504, "UpstreamTimeout", f"{deployment_id} did not answer within "
                              f"{platform.settings.request_timeout_s:g} s")
    except UpstreamFailed as error:
        return error_response(502, "UpstreamFailed", f"{deployment_id} could not be reached: {error}")
    response_headers["Server-Timing"] = f"forward;dur={(time.perf_counter() - started) * 1000:.1f}"
    return Response(content, status_code=status, headers=response_headers)


def forwarded_headers(request: Request) -> dict[str, str]:
    return {k: v for k, v in request.headers.items() if k.lower() not in NOT_FORWARDED}


async def _not_serving(platform: Platform, group: str, deployment_id: str) -> Response:
    deployment = await platform.store.deployments.get(group, deployment_id)
    if deployment is None:
        return error_response(404, "DeploymentNotFound",
                              f"no deployment {deployment_id} in resource group {group}")
    message = f"deployment {deployment_id} is {deployment.status.value}"
    if deployment.status == Status.DEAD and deployment.reason:
        message += f" ({deployment.reason}: {deployment.message})"
    return error_response(503, "DeploymentNotRunning", message)
