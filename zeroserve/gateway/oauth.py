"""``POST /oauth/token``: the OAuth 2.0 client-credentials grant (RFC 6749 section 4.4), as SAP AI
Core's clients use it: id and secret in HTTP Basic auth or in the form, a bearer token back."""

from __future__ import annotations

import base64
import binascii
from typing import Annotated

from fastapi import APIRouter, Form, Request
from fastapi.responses import JSONResponse

from zeroserve.auth import Unauthorized
from zeroserve.platform import Platform


def _oauth_error(status: int, error: str, description: str) -> JSONResponse:
    # RFC 6749 section 5.2's error body, not SAP's: OAuth clients parse this one.
    headers = {"WWW-Authenticate": "Basic"} if status == 401 else None
    return JSONResponse({"error": error, "error_description": description}, status_code=status,
                        headers={**(headers or {}), "Cache-Control": "no-store"})


def router(platform: Platform) -> APIRouter:
    router = APIRouter(tags=["OAuth"])

    @router.post("/oauth/token", summary="Get a bearer token for a client id and secret (client credentials)")
    async def token(
        request: Request,
        grant_type: Annotated[str, Form()],
        client_id: Annotated[str | None, Form()] = None,
        client_secret: Annotated[str | None, Form()] = None,
    ) -> JSONResponse:
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
            access_token, lifetime = await platform.auth.token(client_id, client_secret)
        except Unauthorized as error:
            return _oauth_error(401, "invalid_client", error.message)
        return JSONResponse({"access_token": access_token, "token_type": "bearer", "expires_in": lifetime},
                            headers={"Cache-Control": "no-store"})

    return router
