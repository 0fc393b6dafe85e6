"""The web console: its files at ``/console/`` and its session at ``/console/session``.

The files (``zeroserve/console/static/``, package data) are public and served with a strict
Content-Security-Policy: scripts only from this origin, none inline, and no page of another origin may
frame them. Signing in (a JSON body, which no form of another origin can send) trades a client id and
secret for the same bearer token ``POST /oauth/token`` gives (same throttling of failed logins), kept in
an HttpOnly, SameSite=Strict cookie that page scripts never read; the API takes that cookie in place of
``Authorization: Bearer`` only from a request that also carries ``X-Zeroserve-Console: 1``
(``security.console_token``), a header a page of another origin cannot send without a CORS preflight,
which the gateway never grants. None of these routes is part of the API's description: they are the
console's, not the AI API's.
"""

from __future__ import annotations

import json
import math
import posixpath
from datetime import UTC, datetime
from pathlib import Path

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import BaseRoute, Route
from starlette.staticfiles import StaticFiles

from zeroserve.auth import Throttled, Unauthorized
from zeroserve.gateway.errors import ErrorAnswer, error_response
from zeroserve.gateway.security import CONSOLE_COOKIE, claims_of, cookie_token, platform_of

STATIC = Path(__file__).resolve().parent.parent / "console" / "static"
PREFIX = "/console"
SESSION = f"{PREFIX}/session"

# Everything from this origin only; no inline script or style, no plugin, no framing, no <base> games.
POLICY = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
          "font-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'")
SECURITY_HEADERS = {
    "Content-Security-Policy": POLICY,
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cross-Origin-Opener-Policy": "same-origin",
}
# Stated, not guessed from the platform's mime tables: a module script must come as JavaScript.
MEDIA_TYPES = {".js": "text/javascript; charset=utf-8", ".css": "text/css; charset=utf-8",
               ".html": "text/html; charset=utf-8", ".md": "text/markdown; charset=utf-8",
               ".svg": "image/svg+xml", ".png": "image/png", ".ico": "image/x-icon"}
_FIELD_LIMIT = 256

_files = StaticFiles(directory=STATIC, html=True, check_dir=False)


def _secured(response: Response, cache: str) -> Response:
    response.headers.update(SECURITY_HEADERS)
    response.headers["Cache-Control"] = cache
    return response


async def asset(request: Request) -> Response:
    """One file of the console (index.html for the folder itself)."""
    path = request.path_params["path"]
    # As StaticFiles reads a path itself; it also refuses one that leads out of its folder.
    try:
        response = await _files.get_response(posixpath.normpath(path or "."), request.scope)
    except HTTPException as missing:  # answered here: a plain Route is not one the token check knows as public
        return _refusal(ErrorAnswer(missing.status_code, "NotFound", f"the console has no file {path[:80]!r}"))
    suffix = Path(path).suffix if path else ".html"
    if response.status_code == 200 and suffix in MEDIA_TYPES:
        response.headers["Content-Type"] = MEDIA_TYPES[suffix]
    # Revalidated each time (ETag): a console upgraded with zeroserve is never run half old, half new.
    return _secured(response, "no-cache")


async def to_folder(request: Request) -> Response:
    return RedirectResponse(f"{PREFIX}/", status_code=308)


def _refusal(error: ErrorAnswer) -> Response:
    return _secured(error_response(error.status, error.code, error.message, error.headers), "no-store")


def _json_body(request: Request) -> None:
    # A form of another origin can post text/plain that parses as JSON, never application/json (that takes a
    # preflight, which is never granted): so no page elsewhere can sign a browser in to someone else's session.
    media_type = request.headers.get("content-type", "").partition(";")[0].strip().lower()
    if media_type != "application/json":
        raise ErrorAnswer(415, "UnsupportedMediaType", "sign in with a JSON body (Content-Type: application/json): "
                          '{"clientId", "clientSecret"}')


async def _credentials(request: Request) -> tuple[str, str]:
    try:
        body = json.loads(await request.body())
    except (ValueError, UnicodeDecodeError):
        raise ErrorAnswer(400, "BadRequest", "the body must be JSON: {\"clientId\", \"clientSecret\"}") from None
    client_id = body.get("clientId") if isinstance(body, dict) else None
    secret = body.get("clientSecret") if isinstance(body, dict) else None
    for name, value in (("clientId", client_id), ("clientSecret", secret)):
        if not isinstance(value, str) or not value or len(value) > _FIELD_LIMIT:
            raise ErrorAnswer(400, "BadRequest", f"body.{name}: a non-empty string is required")
    assert isinstance(client_id, str) and isinstance(secret, str)
    return client_id, secret


async def sign_in(request: Request) -> Response:
    """A client id and secret: the token in an HttpOnly cookie that lives as long as the token."""
    platform = platform_of(request)
    address = request.client.host if request.client else None
    try:
        _json_body(request)
        if (wait := platform.auth.throttled(None, address)) is not None:
            raise Throttled(f"too many failed sign-ins from this address: retry in {math.ceil(wait)} s", wait)
        client_id, secret = await _credentials(request)
        token, lifetime = await platform.auth.token(client_id, secret, address)
    except ErrorAnswer as refused:
        return _refusal(refused)
    except Throttled as refused:
        return _refusal(ErrorAnswer(429, "TooManyFailedLogins", refused.message,
                                    headers={"Retry-After": str(max(1, math.ceil(refused.retry_after_s)))}))
    except Unauthorized:
        return _refusal(ErrorAnswer(401, "Unauthorized", "wrong client id or secret"))
    response = _secured(Response(status_code=204), "no-store")
    response.set_cookie(CONSOLE_COOKIE, token, max_age=lifetime, path="/", httponly=True, samesite="strict",
                        secure=request.url.scheme == "https")
    return response


async def session(request: Request) -> Response:
    """Who is signed in: client id, admin or not, groups, and when the session ends."""
    try:
        claims = claims_of(platform_of(request), cookie_token(request.headers.get("cookie")))
    except ErrorAnswer as refused:
        return _refusal(refused)
    body = {"clientId": claims.client_id, "admin": claims.admin, "groups": list(claims.groups),
            "expiresAt": datetime.fromtimestamp(claims.expires_at, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")}
    return _secured(Response(json.dumps(body), media_type="application/json"), "no-store")


async def sign_out(request: Request) -> Response:
    """The cookie dropped; the token itself stays valid until it expires (it is never shown anywhere). A page of
    another origin cannot send a DELETE without a preflight."""
    response = _secured(Response(status_code=204), "no-store")
    response.delete_cookie(CONSOLE_COOKIE, path="/", httponly=True, samesite="strict",
                           secure=request.url.scheme == "https")
    return response


async def _session(request: Request) -> Response:
    handler = {"POST": sign_in, "GET": session, "DELETE": sign_out}[request.method]
    return await handler(request)


def routes() -> list[BaseRoute]:
    """The console's routes, none of them in the API's description."""
    return [
        Route(PREFIX, to_folder, methods=["GET"], include_in_schema=False),
        Route(SESSION, _session, methods=["GET", "POST", "DELETE"], include_in_schema=False),
        Route(PREFIX + "/{path:path}", asset, methods=["GET"], include_in_schema=False),
    ]
