"""API clients (``/v2/admin/clients``, a zeroserve extension): the OAuth clients that get tokens.

Managed with an admin token. A client is created for resource groups (``*`` for all: an admin
client); its secret is answered once, at creation, and never shown again.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Path, Response
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from zeroserve.api import records
from zeroserve.auth import Unauthorized
from zeroserve.core.store import RegisteredClient, Store
from zeroserve.events import ID_PATTERN, utc_text
from zeroserve.gateway.errors import ErrorAnswer, answers, not_found
from zeroserve.gateway.listing import listing
from zeroserve.gateway.routing import Router
from zeroserve.gateway.security import Admin, PlatformDep

router = Router(prefix="/v2/admin")

# A resource group id (events.ID_PATTERN), or * for every group.
GROUP_OR_ALL = r"^(\*|[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)$"


class ClientPost(BaseModel):
    model_config = ConfigDict(extra="forbid")

    groups: list[Annotated[str, Field(pattern=GROUP_OR_ALL)]] = Field(
        min_length=1, description="Resource groups the client may use; * for all (admin)")
    name: Annotated[str | None, Field(max_length=256)] = None


def client_view(client: RegisteredClient) -> dict[str, Any]:
    return {"clientId": client.id, "name": client.name, "groups": client.groups,
            "createdAt": utc_text(client.created_at)}


@router.post("/clients", status_code=201, response_model=records.ClientCredentials,
             summary="Create an API client for resource groups (admin token): "
             "answers clientId and clientSecret, the secret only this once", responses=answers(403))
async def create_client(claims: Admin, body: ClientPost, platform: PlatformDep) -> JSONResponse:
    try:
        client, secret = await platform.auth.create_client(body.groups, name=body.name)
    except Unauthorized as refused:
        raise ErrorAnswer(400, "BadRequest", f"body.groups: {refused.message}") from None
    return JSONResponse({**client_view(client), "clientSecret": secret}, status_code=201,
                        headers={"Location": f"{platform.settings.gateway_url}/v2/admin/clients/{client.id}",
                                 "Cache-Control": "no-store"})


@router.get("/clients", response_model=records.ApiClientList,
            summary="API clients: ids, names and groups (admin token; never secrets)",
            responses=answers(403))
async def list_clients(claims: Admin, platform: PlatformDep) -> dict[str, Any]:
    clients = sorted(await platform.store.clients.list(Store.GLOBAL), key=lambda c: (c.created_at, c.id))
    return listing([client_view(c) for c in clients])


@router.delete("/clients/{clientId}", status_code=204,
               summary="Delete an API client (admin token); tokens it already has stay valid until they expire",
               responses=answers(403, 404))
async def delete_client(
    claims: Admin, client_id: Annotated[str, Path(alias="clientId", pattern=ID_PATTERN)], platform: PlatformDep,
) -> Response:
    if await platform.store.clients.get(Store.GLOBAL, client_id) is None:
        raise not_found(f"client {client_id} not found")
    await platform.store.clients.delete(Store.GLOBAL, client_id)
    return Response(status_code=204)
