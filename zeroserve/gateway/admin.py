"""SAP AI API's admin routes (``/v2/admin``): resource groups, object store secrets, and API clients.

Resource groups are created and deleted with an admin token (one for ``*``); any token lists and
reads the groups it may use. ``default`` always exists, and the ``/v2/lm`` routes work in any group
a token covers, registered or not: registering gives a group its labels and its place in the list.
Object store secrets belong to the group of the ``AI-Resource-Group`` header and are what
``ai://<name>/<path>`` artifact URLs resolve through: SAP's ``S3``, and zeroserve's ``local`` (a
directory on this machine, inside the allowed file roots). A secret's ``data`` (the access keys)
goes into the store and nowhere else: no response, log line or event carries it. Clients (a
zeroserve extension) are the OAuth clients that get tokens; their secrets are shown once.
"""

from __future__ import annotations

import asyncio
import re
from typing import Annotated, Any

from fastapi import APIRouter, Path, Query, Response
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from zeroserve.artifacts.object_stores import (
    ACCESS_KEY_ID,
    LOCAL,
    OBJECT_STORE_NAME,
    OBJECT_STORE_TYPES,
    S3,
    SECRET_ACCESS_KEY,
)
from zeroserve.auth import ALL_GROUPS, Claims, Unauthorized
from zeroserve.core.store import ObjectStoreSecret, RegisteredClient, ResourceGroup, Store, now
from zeroserve.errors import ZeroserveError
from zeroserve.events import ID_PATTERN, Label
from zeroserve.gateway.catalog import listing, page, timestamp
from zeroserve.gateway.errors import ApiError, answers, not_found
from zeroserve.gateway.params import ApiBody
from zeroserve.gateway.security import DEFAULT_GROUP, Admin, Caller, InGroup
from zeroserve.platform import Platform

# SAP's resource group id (3 to 253 characters) must also be an RFC 1123 label here: it becomes a
# NATS subject token and a Kubernetes label value.
SAP_GROUP = r"^[a-zA-Z0-9][a-zA-Z0-9.-]{1,251}[a-zA-Z0-9]$"
GROUP_LABEL_KEY = r"^ext.ai.sap.com/(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]){1,48}$"
_ZEROSERVE_GROUP = re.compile(ID_PATTERN)
Top = Annotated[int | None, Query(alias="$top", ge=0)]
Skip = Annotated[int, Query(alias="$skip", ge=0)]
SecretName = Annotated[str, Path(alias="objectStoreName", pattern=r"^[a-zA-Z0-9\.\-_]+$")]
Count = Annotated[bool, Query(alias="$count", description="count: every match (true) or those in this page")]


class GroupLabel(ApiBody):
    key: Annotated[str, Field(max_length=63, pattern=GROUP_LABEL_KEY)]
    value: Annotated[str, Field(max_length=5000)]


class ResourceGroupPost(ApiBody):
    """SAP's BckndResourceGroupsPostRequest."""

    resource_group_id: Annotated[str, Field(min_length=3, max_length=253, pattern=SAP_GROUP)]
    labels: list[GroupLabel] = []


class ObjectStoreSecretData(ApiBody):
    """SAP's BckndobjectStoreSecretWithSensitiveDataRequest; type ``local`` is zeroserve's own."""

    name: Annotated[str, Field(max_length=233)]
    type: str = Field(description="S3, or local (a directory on this machine: pathPrefix)")
    bucket: str | None = None
    endpoint: str | None = None
    region: str | None = None
    path_prefix: str | None = None
    verifyssl: str | None = None
    usehttps: str | None = "1"
    data: dict[str, str]


class ClientPost(BaseModel):
    model_config = ConfigDict(extra="forbid")

    groups: list[str] = Field(min_length=1, description="Resource groups the client may use; * for all (admin)")
    name: Annotated[str | None, Field(max_length=256)] = None


def router(platform: Platform) -> APIRouter:
    api = APIRouter(prefix="/v2/admin")
    store = platform.store

    # -- resource groups -------------------------------------------------------------------------

    async def default_group() -> ResourceGroup:
        # Recorded the first time anyone asks, so that its createdAt stays the same afterwards.
        group = await store.resource_groups.update(
            Store.GLOBAL, DEFAULT_GROUP, lambda current: None if current else ResourceGroup(id=DEFAULT_GROUP))
        assert group is not None
        return group

    async def visible_groups(claims: Claims) -> list[ResourceGroup]:
        """Every group this token may use: registered ones, default, and for a group token its own groups."""
        registered = {group.id: group for group in await store.resource_groups.list(Store.GLOBAL)}
        registered[DEFAULT_GROUP] = registered.get(DEFAULT_GROUP) or await default_group()
        baseline = registered[DEFAULT_GROUP].created_at
        for name in claims.groups:
            if name != ALL_GROUPS and name not in registered:
                # Usable without registration (the lm routes need none): it exists as far as this token goes.
                registered[name] = ResourceGroup(id=name, created_at=baseline)
        return sorted((g for g in registered.values() if claims.may_use(g.id)), key=lambda g: g.id)

    def group_view(group: ResourceGroup) -> dict[str, Any]:
        return {"resourceGroupId": group.id, "tenantId": "zeroserve", "createdAt": timestamp(group.created_at),
                "labels": [label.model_dump() for label in group.labels], "status": "PROVISIONED"}

    @api.post("/resourceGroups", status_code=202, summary="Create a resource group (admin token)",
              responses=answers(403, 409))
    async def create_group(claims: Admin, body: ResourceGroupPost) -> dict[str, Any]:
        group_id = body.resource_group_id
        if not _ZEROSERVE_GROUP.fullmatch(group_id):
            raise ApiError(400, "BadRequest", f"body.resourceGroupId: zeroserve needs {ID_PATTERN} (lower-case "
                           f"letters, digits and '-', at most 63): {group_id!r}")
        if group_id == DEFAULT_GROUP:
            raise ApiError(409, "Conflict", "resource group default always exists")
        labels = [Label(key=label.key, value=label.value) for label in body.labels]

        def create(current: ResourceGroup | None) -> ResourceGroup:
            if current is not None:
                raise ApiError(409, "Conflict", f"resource group {group_id} already exists")
            return ResourceGroup(id=group_id, labels=labels)

        await store.resource_groups.update(Store.GLOBAL, group_id, create)
        return {"resourceGroupId": group_id, "tenantId": "zeroserve"}

    @api.get("/resourceGroups", summary="The resource groups this token may use")
    async def list_groups(claims: Caller, top: Top = None, skip: Skip = 0, count: Count = False) -> dict[str, Any]:
        groups = await visible_groups(claims)
        shown = page(groups, len(groups) if top is None else top, skip)
        return listing([group_view(g) for g in shown], count=len(groups) if count else len(shown))

    @api.get("/resourceGroups/{resourceGroupId}", summary="One resource group (404 if this token does not cover it)",
             responses=answers(404))
    async def get_group(
        claims: Caller, group_id: Annotated[str, Path(alias="resourceGroupId", min_length=3, max_length=253,
                                                      pattern=SAP_GROUP)],
    ) -> dict[str, Any]:
        for group in await visible_groups(claims):
            if group.id == group_id:
                return group_view(group)
        raise not_found(f"resource group {group_id} not found")

    @api.delete("/resourceGroups/{resourceGroupId}", status_code=202,
                summary="Delete a resource group with its artifacts, configurations and object store secrets "
                "(admin token; refused while it has deployments)", responses=answers(403, 404))
    async def delete_group(
        claims: Admin, group_id: Annotated[str, Path(alias="resourceGroupId", min_length=3, max_length=253,
                                                     pattern=SAP_GROUP)],
    ) -> dict[str, Any]:
        if group_id == DEFAULT_GROUP:
            raise ApiError(400, "BadRequest", "resource group default cannot be deleted")
        if await store.resource_groups.get(Store.GLOBAL, group_id) is None:
            raise not_found(f"resource group {group_id} not found")
        deployments = await store.deployments.list(group_id)
        if deployments:
            names = ", ".join(sorted(d.id for d in deployments)[:10])
            raise ApiError(400, "ResourceGroupNotEmpty", f"resource group {group_id} still has {len(deployments)} "
                           f"deployment(s) ({names}): stop and delete them first")
        # Its records go with it: a group created later under the same name starts empty.
        for registry in (store.artifacts, store.configurations, store.object_store_secrets):
            records = await registry.list(group_id)
            await asyncio.gather(*(registry.delete(group_id, _record_id(record)) for record in records))
        await store.resource_groups.delete(Store.GLOBAL, group_id)
        return {"id": group_id, "message": "Resource Group deletion scheduled"}

    # -- object store secrets --------------------------------------------------------------------

    def secret_record(group: str, body: ObjectStoreSecretData, created: ObjectStoreSecret | None) -> ObjectStoreSecret:
        """The record of a valid secret, or a 400 that names the field that is not."""
        kind = {t.lower(): t for t in OBJECT_STORE_TYPES}.get(body.type.lower())
        if kind is None:
            raise ApiError(400, "BadRequest", f"body.type: zeroserve reads object stores of type "
                           f"{' or '.join(OBJECT_STORE_TYPES)}, not {body.type!r}")
        path_prefix = body.path_prefix
        if kind == S3:
            if not body.bucket:
                raise ApiError(400, "BadRequest", "body.bucket: an S3 object store needs a bucket")
            missing = [key for key in (ACCESS_KEY_ID, SECRET_ACCESS_KEY) if not body.data.get(key)]
            if missing:
                raise ApiError(400, "BadRequest", f"body.data: an S3 object store needs {' and '.join(missing)}")
        if kind == LOCAL:
            if not path_prefix:
                raise ApiError(400, "BadRequest", "body.pathPrefix: a local object store needs the absolute path "
                               "of its directory")
            try:
                directory = platform.models.local_directory(path_prefix)
            except ZeroserveError as refused:
                raise ApiError(400, "BadRequest", f"body.pathPrefix: {refused.message}") from None
            if not directory.is_dir():
                raise ApiError(400, "BadRequest", f"body.pathPrefix: {path_prefix} is not a directory")
        return ObjectStoreSecret(
            name=body.name, group=group, type=kind, bucket=body.bucket, endpoint=body.endpoint, region=body.region,
            path_prefix=path_prefix, verifyssl=body.verifyssl, usehttps=body.usehttps, data=dict(body.data),
            created_at=created.created_at if created else now(),
        )

    def secret_view(secret: ObjectStoreSecret) -> dict[str, Any]:
        # SAP's metadata annotations; data is left out by construction, not by filtering.
        metadata = {
            "storage.ai.sap.com/type": secret.type,
            "storage.ai.sap.com/bucket": secret.bucket,
            "storage.ai.sap.com/endpoint": secret.endpoint,
            "storage.ai.sap.com/region": secret.region,
            "storage.ai.sap.com/pathPrefix": secret.path_prefix,
            "serving.kubeflow.org/s3-endpoint": secret.endpoint if secret.type == S3 else None,
            "serving.kubeflow.org/s3-region": secret.region if secret.type == S3 else None,
            "serving.kubeflow.org/s3-usehttps": secret.usehttps if secret.type == S3 else None,
            "serving.kubeflow.org/s3-verifyssl": secret.verifyssl if secret.type == S3 else None,
        }
        return {"name": secret.name, "metadata": {key: value for key, value in metadata.items() if value is not None}}

    @api.post("/objectStoreSecrets", status_code=202,
              summary="Create an object store secret of the resource group: S3, or local (a directory here)",
              responses=answers(404, 409))
    async def create_secret(scope: InGroup, body: ObjectStoreSecretData) -> dict[str, Any]:
        if not OBJECT_STORE_NAME.fullmatch(body.name):
            raise ApiError(400, "BadRequest", f"body.name: {body.name[:80]!r} must be lower-case letters, digits, "
                           "'-' and '.' (an RFC 1123 subdomain)")
        secret = secret_record(scope.group, body, None)

        def create(current: ObjectStoreSecret | None) -> ObjectStoreSecret:
            if current is not None:
                raise ApiError(409, "Conflict", f"object store secret {body.name} already exists")
            return secret

        await store.object_store_secrets.update(scope.group, body.name, create)
        return {"message": "Secret has been created"}

    @api.get("/objectStoreSecrets", summary="Object store secrets of the resource group (never their data)",
             responses=answers(404))
    async def list_secrets(scope: InGroup, top: Top = None, skip: Skip = 0, count: Count = False) -> dict[str, Any]:
        secrets = sorted(await store.object_store_secrets.list(scope.group), key=lambda s: s.name)
        shown = page(secrets, len(secrets) if top is None else top, skip)
        return listing([secret_view(s) for s in shown], count=len(secrets) if count else len(shown))

    async def existing_secret(group: str, name: str) -> ObjectStoreSecret:
        # A name create_secret refuses names no secret, and the store's keys cannot hold every one ("a.").
        secret = await store.object_store_secrets.get(group, name) if OBJECT_STORE_NAME.fullmatch(name) else None
        if secret is None:
            raise not_found(f"object store secret {name} not found")
        return secret

    @api.get("/objectStoreSecrets/{objectStoreName}", summary="One object store secret (never its data)",
             responses=answers(404))
    async def get_secret(scope: InGroup, name: SecretName) -> dict[str, Any]:
        return secret_view(await existing_secret(scope.group, name))

    @api.patch("/objectStoreSecrets/{objectStoreName}", status_code=202,
               summary="Replace an object store secret (the body is the whole secret, data included)",
               responses=answers(404))
    async def update_secret(scope: InGroup, name: SecretName, body: ObjectStoreSecretData) -> dict[str, Any]:
        if body.name != name:
            raise ApiError(400, "BadRequest", f"body.name: {body.name[:80]!r} differs from the secret's name {name}")
        await existing_secret(scope.group, name)

        def replace(current: ObjectStoreSecret | None) -> ObjectStoreSecret:
            if current is None:
                raise not_found(f"object store secret {name} not found")
            return secret_record(scope.group, body, current)

        await store.object_store_secrets.update(scope.group, name, replace)
        return {"id": name, "message": "Secret has been modified"}

    @api.delete("/objectStoreSecrets/{objectStoreName}", status_code=202, summary="Delete an object store secret",
                responses=answers(404))
    async def delete_secret(scope: InGroup, name: SecretName) -> dict[str, Any]:
        await existing_secret(scope.group, name)
        await store.object_store_secrets.delete(scope.group, name)
        return {"id": name, "message": "Object Store Secret has been deleted"}

    # -- clients (a zeroserve extension) -----------------------------------------------------------

    def client_view(client: RegisteredClient) -> dict[str, Any]:
        return {"clientId": client.id, "name": client.name, "groups": client.groups,
                "createdAt": timestamp(client.created_at)}

    @api.post("/clients", status_code=201, summary="Create an API client for resource groups (admin token): "
              "answers clientId and clientSecret, the secret only this once", responses=answers(403))
    async def create_client(claims: Admin, body: ClientPost) -> JSONResponse:
        try:
            client, secret = await platform.auth.create_client(body.groups, name=body.name)
        except Unauthorized as refused:
            raise ApiError(400, "BadRequest", f"body.groups: {refused.message}") from None
        return JSONResponse({**client_view(client), "clientSecret": secret}, status_code=201,
                            headers={"Location": f"{platform.settings.gateway_url}/v2/admin/clients/{client.id}",
                                     "Cache-Control": "no-store"})

    @api.get("/clients", summary="API clients: ids, names and groups (admin token; never secrets)",
             responses=answers(403))
    async def list_clients(claims: Admin) -> dict[str, Any]:
        clients = sorted(await store.clients.list(Store.GLOBAL), key=lambda c: (c.created_at, c.id))
        return listing([client_view(c) for c in clients])

    @api.delete("/clients/{clientId}", status_code=204,
                summary="Delete an API client (admin token); tokens it already has stay valid until they expire",
                responses=answers(403, 404))
    async def delete_client(claims: Admin, client_id: Annotated[str, Path(alias="clientId", pattern=ID_PATTERN)],
                            ) -> Response:
        if await store.clients.get(Store.GLOBAL, client_id) is None:
            raise not_found(f"client {client_id} not found")
        await store.clients.delete(Store.GLOBAL, client_id)
        return Response(status_code=204)

    return api


def _record_id(record: Any) -> str:
    return str(record.name if isinstance(record, ObjectStoreSecret) else record.id)

