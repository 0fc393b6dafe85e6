"""SAP AI API's GitOps repositories (``/v2/admin/repositories``): the git repositories whose serving
templates applications sync (``templates/applications.py``).

Tenant-wide, as in SAP AI Core: no resource group, and an admin token (one for ``*``) for every
call. A repository is a name, a URL (``https://``, ``http://``, ``ssh://``, ``git://``, ``file://`` or
an absolute path on the gateway's machine) and read credentials; the password goes into the store
and nowhere else: no answer, log line or event carries it.
"""

from __future__ import annotations

import re
from typing import Annotated, Literal

from fastapi import APIRouter, Path
from pydantic import BaseModel, Field

from zeroserve.core.store import Store, now
from zeroserve.events import content_id
from zeroserve.gateway.errors import ErrorAnswer, answers, not_found
from zeroserve.gateway.listing import AdminCount, AdminSkip, AdminTop, page
from zeroserve.gateway.params import ApiBody
from zeroserve.gateway.security import Admin, PlatformDep
from zeroserve.platform import Platform
from zeroserve.redaction import redact
from zeroserve.templates.applications import TemplateRepository
from zeroserve.templates.git import URL_PATTERN

router = APIRouter(prefix="/v2/admin", tags=["repositories"])

# SAP's repository name.
REPOSITORY_NAME = r"^[a-z0-9\-]+$"
RepositoryNamePath = Annotated[str, Path(alias="repositoryName", min_length=1, max_length=51,
                                         pattern=REPOSITORY_NAME)]


class RepositoryData(ApiBody):
    """SAP's BckndArgoCDRepositoryData; the credentials may be left out for a public or local repository."""

    name: Annotated[str | None, Field(min_length=1, max_length=51, pattern=REPOSITORY_NAME,
                                      description="Default: from the URL's last part")] = None
    url: str = Field(pattern=URL_PATTERN, description="https://, http://, ssh://, git://, file:// or an absolute path")
    username: str = ""
    password: str = ""


class RepositoryCredentials(ApiBody):
    """SAP's BckndArgoCDRepositoryCredentials."""

    username: str
    password: str


class RepositoryDetails(BaseModel):
    name: str
    url: str
    status: Literal["ERROR", "IN-PROGRESS", "COMPLETED"] = "COMPLETED"


class RepositoryList(BaseModel):
    count: int
    resources: list[RepositoryDetails]


class RepositoryAnswer(BaseModel):
    id: str
    message: str


def repository_name(body: RepositoryData) -> str:
    if body.name:
        return body.name
    last = body.url.rstrip("/").rsplit("/", 1)[-1].removesuffix(".git")
    slug = re.sub(r"[^a-z0-9-]+", "-", last.lower()).strip("-")[:51]
    return slug or f"repository-{content_id(body.url, length=8)}"


async def existing_repository(platform: Platform, name: str) -> TemplateRepository:
    repository = await platform.applications.repositories.get(Store.GLOBAL, name)
    if repository is None:
        raise not_found(f"repository {name} not found")
    return repository


@router.post("/repositories", summary="Register a git repository of serving templates (admin token)",
             responses=answers(403, 409))
async def create_repository(claims: Admin, body: RepositoryData, platform: PlatformDep) -> RepositoryAnswer:
    name = repository_name(body)
    if await platform.applications.repository_of(body.url) is not None:
        raise ErrorAnswer(409, "Conflict", f"a repository with the URL {redact(body.url)} is registered already")

    def create(current: TemplateRepository | None) -> TemplateRepository:
        if current is not None:
            raise ErrorAnswer(409, "Conflict", f"repository {name} already exists")
        return TemplateRepository(name=name, url=body.url, username=body.username, password=body.password)

    await platform.applications.repositories.update(Store.GLOBAL, name, create)
    return RepositoryAnswer(id=name, message="Repository has been on-boarded")


@router.get("/repositories", summary="The registered git repositories (admin token)", responses=answers(403))
async def list_repositories(
    claims: Admin, platform: PlatformDep, top: AdminTop = None, skip: AdminSkip = 0, count: AdminCount = False,
) -> RepositoryList:
    found = sorted(await platform.applications.repositories.list(Store.GLOBAL), key=lambda r: r.name)
    shown = page(found, len(found) if top is None else top, skip)
    return RepositoryList(count=len(found) if count else len(shown),
                          resources=[RepositoryDetails(name=r.name, url=redact(r.url)) for r in shown])


@router.get("/repositories/{repositoryName}", summary="One git repository (never its credentials)",
            responses=answers(403, 404))
async def get_repository(claims: Admin, name: RepositoryNamePath, platform: PlatformDep) -> RepositoryDetails:
    repository = await existing_repository(platform, name)
    return RepositoryDetails(name=repository.name, url=redact(repository.url))


@router.patch("/repositories/{repositoryName}", summary="Replace a repository's credentials (admin token)",
              responses=answers(403, 404))
async def update_repository(
    claims: Admin, name: RepositoryNamePath, body: RepositoryCredentials, platform: PlatformDep,
) -> RepositoryAnswer:
    def replace(current: TemplateRepository | None) -> TemplateRepository:
        if current is None:
            raise not_found(f"repository {name} not found")
        return current.model_copy(update={"username": body.username, "password": body.password,
                                          "modified_at": now()})

    await platform.applications.repositories.update(Store.GLOBAL, name, replace)
    return RepositoryAnswer(id=name, message="Repository credentials have been updated")


@router.delete("/repositories/{repositoryName}",
               summary="Remove a git repository (admin token; refused while an application syncs from it)",
               responses=answers(403, 404))
async def delete_repository(claims: Admin, name: RepositoryNamePath, platform: PlatformDep) -> RepositoryAnswer:
    repository = await existing_repository(platform, name)
    users = [a.name for a in await platform.applications.applications.list(Store.GLOBAL)
             if a.repository_url.rstrip("/") == repository.url.rstrip("/")]
    if users:
        raise ErrorAnswer(400, "RepositoryInUse", f"repository {name} is synced by application(s) "
                          f"{', '.join(sorted(users))}: delete them first")
    await platform.applications.repositories.delete(Store.GLOBAL, name)
    return RepositoryAnswer(id=name, message="The repository has been off-boarded.")
