"""Who is calling and which resource group they act in: the dependencies every protected route uses.

``authenticate`` checks the bearer token (401 without a valid one). ``scope`` adds the resource
group from the ``AI-Resource-Group`` header (``default`` when absent) and answers 404 when the
token does not cover it, so a client of group A cannot even learn that group B's things exist.
``administrator`` is for the routes that manage groups and clients (a token for ``*``). The
platform itself reaches a route the same way, as the ``PlatformDep`` parameter.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Header, Request
from fastapi.openapi.models import OAuthFlowClientCredentials, OAuthFlows
from fastapi.security import OAuth2
from starlette.requests import HTTPConnection, cookie_parser

from zeroserve.auth import Claims, Unauthorized
from zeroserve.events import ID_PATTERN, is_id
from zeroserve.gateway.errors import ErrorAnswer
from zeroserve.platform import Platform

DEFAULT_GROUP = "default"
TOKEN_URL = "/oauth/token"
# The web console's session (gateway/console.py): its token in an HttpOnly cookie, taken only from a request
# that carries the header too, which a page of another origin cannot send without a preflight.
CONSOLE_COOKIE = "zeroserve_console"
CONSOLE_HEADER = "X-Zeroserve-Console"


def console_token(headers: Mapping[str, str]) -> str | None:
    """The console's token: its cookie, when the request also says ``X-Zeroserve-Console: 1``."""
    return cookie_token(headers.get("cookie")) if headers.get(CONSOLE_HEADER) == "1" else None


def cookie_token(cookie: str | None) -> str | None:
    """The token in a Cookie header's console cookie, if it has one."""
    return cookie_parser(cookie).get(CONSOLE_COOKIE) or None if cookie else None


class ClientCredentials(OAuth2):
    """SAP AI Core's OAuth2 client-credentials flow, as the description states it (so ``/docs`` can fetch a
    token from ``/oauth/token``), read as a plain bearer token: the token, or None when there is none."""

    def __init__(self) -> None:
        super().__init__(flows=OAuthFlows(clientCredentials=OAuthFlowClientCredentials(tokenUrl=TOKEN_URL)),
                         scheme_name="OAuth2ClientCredentials", auto_error=False,
                         description="A client id and secret get a bearer token from POST /oauth/token; "
                                     "send it as Authorization: Bearer <token>.")

    async def __call__(self, request: HTTPConnection) -> str | None:
        authorization = request.headers.get("Authorization")
        if authorization is None:  # the header wins; without it, the console's cookie may stand in
            return console_token(request.headers)
        scheme, _, token = authorization.partition(" ")
        return token.strip() or None if scheme.lower() == "bearer" else None


bearer = ClientCredentials()


def platform_of(request: Request) -> Platform:
    platform: Platform = request.app.state.platform
    return platform


async def current_platform(request: Request) -> Platform:
    # ``platform_of`` as a dependency, async so that FastAPI does not hand every call to a worker thread.
    return platform_of(request)


async def authenticate(request: Request, token: Annotated[str | None, Depends(bearer)]) -> Claims:
    return claims_of(platform_of(request), token)


def claims_of(platform: Platform, token: str | None) -> Claims:
    """The claims of a bearer token, or 401 (the inference route calls this before any routing)."""
    if not token:
        raise ErrorAnswer(401, "Unauthorized", "a bearer token is required: get one from POST /oauth/token",
                       headers={"WWW-Authenticate": "Bearer"})
    try:
        return platform.auth.verify(token)
    except Unauthorized as error:
        raise ErrorAnswer(401, "Unauthorized", error.message,
                       headers={"WWW-Authenticate": 'Bearer error="invalid_token"'}) from None


@dataclass(frozen=True)
class Scope:
    """The resource group a request acts in, and the caller's claims."""

    group: str
    claims: Claims


async def scope(
    claims: Annotated[Claims, Depends(authenticate)],
    ai_resource_group: Annotated[str, Header(alias="AI-Resource-Group", description="The resource group id")] = (
        DEFAULT_GROUP),
) -> Scope:
    return Scope(group_of(claims, ai_resource_group), claims)


def group_of(claims: Claims, ai_resource_group: str) -> str:
    """The resource group a request acts in: 400 for one that cannot exist, 404 for one the token does not cover."""
    if not is_id(ai_resource_group):
        raise ErrorAnswer(400, "InvalidResourceGroup", f"AI-Resource-Group must match {ID_PATTERN}: "
                       f"{ai_resource_group[:80]!r}")
    if not claims.may_use(ai_resource_group):
        raise ErrorAnswer(404, "NotFound", f"resource group {ai_resource_group} not found")
    return ai_resource_group


async def administrator(claims: Annotated[Claims, Depends(authenticate)]) -> Claims:
    if not claims.admin:
        raise ErrorAnswer(403, "Forbidden", "this needs a token for every resource group (a client created with "
                       "--group '*')")
    return claims


Caller = Annotated[Claims, Depends(authenticate)]
InGroup = Annotated[Scope, Depends(scope)]
Admin = Annotated[Claims, Depends(administrator)]
# The platform a route works with, as a parameter: routes are module-level and close over nothing.
PlatformDep = Annotated[Platform, Depends(current_platform)]
