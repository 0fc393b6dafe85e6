"""SAP AI API's resource groups (``/v2/admin/resourceGroups``): the tenants' rooms.

Created and deleted with an admin token (one for ``*``); any token lists and reads the groups it
may use. ``default`` always exists, and the ``/v2/lm`` routes work in any group a token covers,
registered or not: registering gives a group its labels and its place in the list. Deleting a
group takes its artifacts, configurations and object store secrets with it, and is refused while
it has deployments.
"""

from __future__ import annotations

import asyncio
from typing import Annotated, Any

from fastapi import Path
from pydantic import Field

from zeroserve.api import records
from zeroserve.auth import ALL_GROUPS, Claims
from zeroserve.core.store import ObjectStoreSecret, ResourceGroup, Store
from zeroserve.events import ID_PATTERN, Label, is_id, utc_text
from zeroserve.gateway.errors import ErrorAnswer, answers, not_found
from zeroserve.gateway.listing import AdminCount, AdminSkip, AdminTop, listing, page
from zeroserve.gateway.params import ApiBody
from zeroserve.gateway.routing import Router
from zeroserve.gateway.security import DEFAULT_GROUP, Admin, Caller, PlatformDep

router = Router(prefix="/v2/admin")

# SAP's resource group id (3 to 253 characters) must also be an RFC 1123 label here: it becomes a
# NATS subject token and a Kubernetes label value.
SAP_GROUP = r"^[a-zA-Z0-9][a-zA-Z0-9.-]{1,251}[a-zA-Z0-9]$"
GROUP_LABEL_KEY = r"^ext.ai.sap.com/(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]){1,48}$"
# A group zeroserve can hold: SAP's 3 characters at least, and an RFC 1123 label (ID_PATTERN).
GROUP_ID = r"^[a-z0-9][a-z0-9-]{1,61}[a-z0-9]$"
GroupIdPath = Annotated[str, Path(alias="resourceGroupId", min_length=3, max_length=253, pattern=SAP_GROUP)]
# default always exists, so it is no group to delete: the description says so.
DeletableGroupPath = Annotated[str, Path(alias="resourceGroupId", min_length=3, max_length=253, pattern=SAP_GROUP,
                                         json_schema_extra={"not": {"enum": [DEFAULT_GROUP]}})]


class GroupLabel(ApiBody):
    key: Annotated[str, Field(max_length=63, pattern=GROUP_LABEL_KEY)]
    value: Annotated[str, Field(max_length=5000)]


class ResourceGroupPost(ApiBody):
    """SAP's BckndResourceGroupsPostRequest."""

    resource_group_id: Annotated[str, Field(min_length=3, max_length=63, pattern=GROUP_ID, description=(
        "Lower-case letters, digits and '-' (an RFC 1123 label): it names NATS subjects and Kubernetes labels"))]
    labels: list[GroupLabel] = []


async def default_group(store: Store) -> ResourceGroup:
    # Recorded the first time anyone asks, so that its createdAt stays the same afterwards.
    group = await store.resource_groups.update(
        Store.GLOBAL, DEFAULT_GROUP, lambda current: None if current else ResourceGroup(id=DEFAULT_GROUP))
    assert group is not None
    return group


async def visible_groups(store: Store, claims: Claims) -> list[ResourceGroup]:
    """Every group this token may use: registered ones, default, and for a group token its own groups."""
    registered = {group.id: group for group in await store.resource_groups.list(Store.GLOBAL)}
    registered[DEFAULT_GROUP] = registered.get(DEFAULT_GROUP) or await default_group(store)
    baseline = registered[DEFAULT_GROUP].created_at
    for name in claims.groups:
        if name != ALL_GROUPS and name not in registered:
            # Usable without registration (the lm routes need none): it exists as far as this token goes.
            registered[name] = ResourceGroup(id=name, created_at=baseline)
    return sorted((g for g in registered.values() if claims.may_use(g.id)), key=lambda g: g.id)


def group_view(group: ResourceGroup) -> dict[str, Any]:
    return {"resourceGroupId": group.id, "tenantId": "zeroserve", "createdAt": utc_text(group.created_at),
            "labels": [label.model_dump() for label in group.labels], "status": "PROVISIONED"}


def _record_id(record: Any) -> str:
    return str(record.name if isinstance(record, ObjectStoreSecret) else record.id)


@router.post("/resourceGroups", status_code=202, response_model=records.ResourceGroup,
             summary="Create a resource group (admin token)",
             responses=answers(403, 409))
async def create_group(claims: Admin, body: ResourceGroupPost, platform: PlatformDep) -> dict[str, Any]:
    group_id = body.resource_group_id
    if not is_id(group_id):
        raise ErrorAnswer(400, "BadRequest", f"body.resourceGroupId: zeroserve needs {ID_PATTERN} (lower-case "
                       f"letters, digits and '-', at most 63): {group_id!r}")
    if group_id == DEFAULT_GROUP:
        raise ErrorAnswer(409, "Conflict", "resource group default always exists")
    labels = [Label(key=label.key, value=label.value) for label in body.labels]

    def create(current: ResourceGroup | None) -> ResourceGroup:
        if current is not None:
            raise ErrorAnswer(409, "Conflict", f"resource group {group_id} already exists")
        return ResourceGroup(id=group_id, labels=labels)

    await platform.store.resource_groups.update(Store.GLOBAL, group_id, create)
    return {"resourceGroupId": group_id, "tenantId": "zeroserve"}


@router.get("/resourceGroups", response_model=records.ResourceGroupList,
            summary="The resource groups this token may use")
async def list_groups(
    claims: Caller, platform: PlatformDep, top: AdminTop = None, skip: AdminSkip = 0, count: AdminCount = False,
) -> dict[str, Any]:
    groups = await visible_groups(platform.store, claims)
    shown = page(groups, len(groups) if top is None else top, skip)
    return listing([group_view(g) for g in shown], count=len(groups) if count else len(shown))


@router.get("/resourceGroups/{resourceGroupId}", response_model=records.ResourceGroup,
            summary="One resource group (404 if this token does not cover it)",
            responses=answers(404))
async def get_group(claims: Caller, group_id: GroupIdPath, platform: PlatformDep) -> dict[str, Any]:
    for group in await visible_groups(platform.store, claims):
        if group.id == group_id:
            return group_view(group)
    raise not_found(f"resource group {group_id} not found")


@router.delete("/resourceGroups/{resourceGroupId}", status_code=202, response_model=records.Created,
               summary="Delete a resource group with its artifacts, configurations and object store secrets "
               "(admin token; refused while it has deployments)", responses=answers(403, 404))
async def delete_group(claims: Admin, group_id: DeletableGroupPath, platform: PlatformDep) -> dict[str, Any]:
    store = platform.store
    if group_id == DEFAULT_GROUP:
        raise ErrorAnswer(400, "BadRequest", "resource group default cannot be deleted")
    if await store.resource_groups.get(Store.GLOBAL, group_id) is None:
        raise not_found(f"resource group {group_id} not found")
    deployments = await store.deployments.list(group_id)
    if deployments:
        names = ", ".join(sorted(d.id for d in deployments)[:10])
        raise ErrorAnswer(400, "ResourceGroupNotEmpty", f"resource group {group_id} still has {len(deployments)} "
                       f"deployment(s) ({names}): stop and delete them first")
    # Its records go with it: a group created later under the same name starts empty.
    for registry in (store.artifacts, store.configurations, store.object_store_secrets):
        records = await registry.list(group_id)
        await asyncio.gather(*(registry.delete(group_id, _record_id(record)) for record in records))
    await store.resource_groups.delete(Store.GLOBAL, group_id)
    return {"id": group_id, "message": "Resource Group deletion scheduled"}
