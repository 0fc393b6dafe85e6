"""``POST /oauth/token``: the OAuth 2.0 client-credentials grant (RFC 6749 section 4.4), as SAP AI
Core's clients use it: id and secret in HTTP Basic auth or in the form, a bearer token back.

Every refusal is RFC 6749's error body (section 5.2), not SAP's: OAuth clients parse this one. So
the route reads the form itself rather than have FastAPI refuse a missing field or a form it cannot
parse with SAP's 400: both are this route's ``invalid_request``.

Failed logins are throttled (``auth.LoginThrottle``): a client id or a source address that failed
``login_failure_limit`` times within ``login_failure_window_s`` is answered 429 ``slow_down`` (the
OAuth extension error of RFC 8628) with ``Retry-After`` until its window closes, before any secret
is hashed, and an address already refused is answered before its form is read. The refusal comes
after a pause (at most the wait itself): a caller that does not heed ``Retry-After``
gets one answer a second (``login_slow_down_s``) per connection instead of as many as the gateway
can write.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import math
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from starlette.exceptions import HTTPException

from zeroserve.auth import Throttled, Unauthorized
from zeroserve.gateway.security import PlatformDep
from zeroserve.platform import Platform

_FORM = {"application/x-www-form-urlencoded": {"schema": {
    "type": "object", "required": ["grant_type"],
    "properties": {"grant_type": {"type": "string", "enum": ["client_credentials"]},
                   "client_id": {"type": "string", "description": "Unless given in HTTP Basic auth"},
                   "client_secret": {"type": "string", "description": "Unless given in HTTP Basic auth"}},
}}}
_OAUTH_ERROR = {"application/json": {"schema": {
    "type": "object", "required": ["error"], "description": "RFC 6749 section 5.2",
    "properties": {"error": {"type": "string"}, "error_description": {"type": "string"}},
}}}


class Token(BaseModel):
    access_token: str
    token_type: str
    expires_in: int


def _oauth_error(status: int, error: str, description: str, retry_after_s: float | None = None) -> JSONResponse:
    headers = {"Cache-Control": "no-store"}
    if status == 401:
        headers["WWW-Authenticate"] = "Basic"
    if retry_after_s is not None:
        headers["Retry-After"] = str(max(1, math.ceil(retry_after_s)))
    return JSONResponse({"error": error, "error_description": description}, status_code=status, headers=headers)


async def _slow_down(platform: Platform, refusal: str, retry_after_s: float) -> JSONResponse:
    await asyncio.sleep(min(platform.settings.login_slow_down_s, retry_after_s))  # costs a timer, not a core
    return _oauth_error(429, "slow_down", refusal, retry_after_s=retry_after_s)


router = APIRouter(tags=["OAuth"])
_REFUSALS: dict[int | str, dict[str, Any]] = {
    400: {"description": "invalid_request (grant_type missing) or unsupported_grant_type", "content": _OAUTH_ERROR},
    401: {"description": "invalid_client: unknown client, wrong secret, or none given", "content": _OAUTH_ERROR},
    429: {"description": "slow_down: too many failed logins for this client id or from this address; "
                         "retry after Retry-After seconds", "content": _OAUTH_ERROR,
          "headers": {"Retry-After": {"schema": {"type": "integer"}, "description": "Seconds to wait"}}},
}


@router.post("/oauth/token", response_model=Token, responses=_REFUSALS,
             openapi_extra={"requestBody": {"required": True, "content": _FORM}},
             summary="Get a bearer token for a client id and secret (client credentials)")
async def token(request: Request, platform: PlatformDep) -> JSONResponse:
    address = request.client.host if request.client else None
    if (wait := platform.auth.throttled(None, address)) is not None:
        return await _slow_down(platform, f"too many failed logins from {address}: retry in {math.ceil(wait)} s", wait)
    try:
        form = await request.form()
    except HTTPException as unreadable:  # Starlette's, for a multipart body it cannot parse
        return _oauth_error(400, "invalid_request", f"the form cannot be read: {unreadable.detail}")
    # No files here: any sent are dropped, and closed (their spooled temporary files with them).
    fields = {name: value for name, value in form.items() if isinstance(value, str)}
    await form.close()
    grant_type, client_id, client_secret = (fields.get(name) for name in ("grant_type", "client_id", "client_secret"))
    if grant_type is None:
        return _oauth_error(400, "invalid_request", "grant_type is required (client_credentials)")
    if grant_type != "client_credentials":
        return _oauth_error(400, "unsupported_grant_type", "only grant_type=client_credentials is supported")
    authorization = request.headers.get("authorization", "")
    if authorization.lower().startswith("basic "):
        try:
            decoded = base64.b64decode(authorization[6:].strip(), validate=True).decode()
            client_id, _, client_secret = decoded.partition(":")
        except (binascii.Error, UnicodeDecodeError):
            return _oauth_error(401, "invalid_client", "the Basic credentials are not valid base64")
    if not client_id or not client_secret:
        return _oauth_error(401, "invalid_client", "client_id and client_secret are required "
                            "(HTTP Basic auth or form fields)")
    try:
        access_token, lifetime = await platform.auth.token(client_id, client_secret, address)
    except Throttled as refused:
        return await _slow_down(platform, refused.message, refused.retry_after_s)
    except Unauthorized as error:
        return _oauth_error(401, "invalid_client", error.message)
    return JSONResponse({"access_token": access_token, "token_type": "bearer", "expires_in": lifetime},
                        headers={"Cache-Control": "no-store"})
