"""SAP AI API's applications (``/v2/admin/applications``): a revision and path of a registered
repository whose serving templates are synced (``templates/applications.py``), with the sync's status.

Tenant-wide, with an admin token, as in SAP AI Core. Creating or changing an application syncs it,
and so does a refresh: each answers at once and the sync runs on (its status says how it went). A
push webhook (``settings.webhooks``, kind ``git``) refreshes applications too: ``refresh_pushed``.

Where an application's templates land: every resource group, unless a template carries SAP's label
``ai.sap.com/resourceGroup``, which keeps it to that group (docs/templates.md).
"""

from __future__ import annotations

import json
import re
from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Body, Path
from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

from zeroserve.core.store import Store
from zeroserve.events import content_id, utc_text
from zeroserve.gateway.errors import ErrorAnswer, answers, not_found
from zeroserve.gateway.listing import AdminCount, AdminSkip, AdminTop, page
from zeroserve.gateway.params import ApiBody
from zeroserve.gateway.repositories import REPOSITORY_NAME
from zeroserve.gateway.security import Admin, PlatformDep
from zeroserve.platform import Platform
from zeroserve.redaction import redact
from zeroserve.settings import WebhookSource
from zeroserve.templates.applications import TemplateApplication
from zeroserve.templates.git import REVISION_PATTERN, URL_PATTERN

router = APIRouter(prefix="/v2/admin", tags=["applications"])

APPLICATION_NAME = r"^[a-z0-9\-]+$"
ApplicationNamePath = Annotated[str, Path(alias="applicationName", min_length=3, max_length=63,
                                          pattern=APPLICATION_NAME)]


class ApplicationBase(ApiBody):
    """SAP's BckndArgoCDApplicationBaseData."""

    repository_url: str = Field(pattern=URL_PATTERN)
    revision: str = Field(pattern=REVISION_PATTERN, description="A branch, a tag, a commit or HEAD")
    path: str = Field(description="The folder whose *.yaml / *.yml files are serving templates ('.': the top)")


class ApplicationByUrl(ApiBody):
    """SAP's BckndArgoCDApplicationDataRequest: the repository by its URL."""

    application_name: Annotated[str | None, Field(min_length=3, max_length=54, pattern=APPLICATION_NAME)] = None
    repository_url: str = Field(pattern=URL_PATTERN)
    revision: str = Field(pattern=REVISION_PATTERN, description="A branch, a tag, a commit or HEAD")
    path: str


class ApplicationByName(ApiBody):
    """SAP's BckndArgoCDApplicationDataRepoName: the repository by its name."""

    application_name: Annotated[str | None, Field(min_length=3, max_length=54, pattern=APPLICATION_NAME)] = None
    repository_name: str = Field(pattern=REPOSITORY_NAME, max_length=51)
    revision: str = Field(pattern=REVISION_PATTERN, description="A branch, a tag, a commit or HEAD")
    path: str


class _Answer(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True)


class ApplicationDetails(_Answer):
    application_name: str
    repository_url: str
    revision: str
    path: str


class ApplicationList(_Answer):
    count: int
    resources: list[ApplicationDetails]


class ApplicationAnswer(_Answer):
    id: str
    message: str


class SyncedResource(_Answer):
    """One template file of the last sync; ``file`` and ``line`` are zeroserve's, for a refused one."""

    name: str
    kind: str
    status: Literal["Synced", "SyncFailed", "Pruned"]
    message: str
    file: str
    line: int | None = None


class ApplicationSource(BaseModel):
    repo_url: str = Field(serialization_alias="repoURL")
    path: str
    revision: str = Field(description="The commit last synced (the application's revision until then)")


class ApplicationStatus(_Answer):
    """SAP's BckndArgoCDApplicationStatus."""

    health_status: Literal["Healthy", "Degraded", "Progressing"]
    sync_status: Literal["Synced", "OutOfSync", "Unknown"]
    message: str
    source: ApplicationSource
    sync_started_at: str | None = None
    sync_finished_at: str | None = None
    reconciled_at: str | None = None
    sync_resources_status: list[SyncedResource]


def details(application: TemplateApplication) -> ApplicationDetails:
    return ApplicationDetails(application_name=application.name, repository_url=redact(application.repository_url),
                              revision=application.revision, path=application.path)


def _time(value: datetime | None) -> str | None:
    return utc_text(value) if value else None


async def existing_application(platform: Platform, name: str) -> TemplateApplication:
    application = await platform.applications.applications.get(Store.GLOBAL, name)
    if application is None:
        raise not_found(f"application {name} not found")
    return application


async def repository_url(platform: Platform, body: ApplicationByUrl | ApplicationByName | ApplicationBase) -> str:
    """The URL of the registered repository the body names, or a 404."""
    if isinstance(body, ApplicationByName):
        repository = await platform.applications.repositories.get(Store.GLOBAL, body.repository_name)
        if repository is None:
            raise not_found(f"body.repositoryName: no repository {body.repository_name!r} is registered")
        return repository.url
    if await platform.applications.repository_of(body.repository_url) is None:
        raise not_found(f"body.repositoryUrl: no repository with the URL {redact(body.repository_url)} is registered: "
                        "register it first (POST /v2/admin/repositories)")
    return body.repository_url


def application_name(body: ApplicationByUrl | ApplicationByName, url: str) -> str:
    if body.application_name:
        return body.application_name
    base = url.rstrip("/").rsplit("/", 1)[-1].removesuffix(".git") + "-" + body.path.strip("/").replace("/", "-")
    slug = re.sub(r"[^a-z0-9-]+", "-", base.lower()).strip("-")[:54].strip("-")
    return slug if len(slug) >= 3 else f"application-{content_id(url, body.path, length=8)}"


@router.post("/applications", summary="Create an application: sync a repository's serving templates (admin token)",
             responses=answers(403, 404, 409))
async def create_application(
    claims: Admin, body: Annotated[ApplicationByUrl | ApplicationByName, Body()], platform: PlatformDep,
) -> ApplicationAnswer:
    url = await repository_url(platform, body)
    name = application_name(body, url)

    def create(current: TemplateApplication | None) -> TemplateApplication:
        if current is not None:
            raise ErrorAnswer(409, "Conflict", f"application {name} already exists")
        return TemplateApplication(name=name, repository_url=url, revision=body.revision, path=body.path)

    await platform.applications.applications.update(Store.GLOBAL, name, create)
    platform.applications.refresh(name)
    return ApplicationAnswer(id=name, message="Application has been created; its templates are being synced")


@router.get("/applications", summary="The applications (admin token)", responses=answers(403))
async def list_applications(
    claims: Admin, platform: PlatformDep, top: AdminTop = None, skip: AdminSkip = 0, count: AdminCount = False,
) -> ApplicationList:
    found = sorted(await platform.applications.applications.list(Store.GLOBAL), key=lambda a: a.name)
    shown = page(found, len(found) if top is None else top, skip)
    return ApplicationList(count=len(found) if count else len(shown), resources=[details(a) for a in shown])


@router.get("/applications/{applicationName}", summary="One application", responses=answers(403, 404))
async def get_application(claims: Admin, name: ApplicationNamePath, platform: PlatformDep) -> ApplicationDetails:
    return details(await existing_application(platform, name))


@router.patch("/applications/{applicationName}", summary="Change an application's repository, revision or path; "
              "it syncs again (admin token)", responses=answers(403, 404))
async def update_application(
    claims: Admin, name: ApplicationNamePath, body: ApplicationBase, platform: PlatformDep,
) -> ApplicationAnswer:
    await existing_application(platform, name)
    url = await repository_url(platform, body)

    def change(current: TemplateApplication | None) -> TemplateApplication:
        if current is None:
            raise not_found(f"application {name} not found")
        return current.model_copy(update={"repository_url": url, "revision": body.revision, "path": body.path})

    await platform.applications.applications.update(Store.GLOBAL, name, change)
    platform.applications.refresh(name)
    return ApplicationAnswer(id=name, message="Application has been updated; its templates are being synced")


@router.delete("/applications/{applicationName}",
               summary="Delete an application and the templates it synced (deployments keep what they render)",
               responses=answers(403, 404))
async def delete_application(claims: Admin, name: ApplicationNamePath, platform: PlatformDep) -> ApplicationAnswer:
    await existing_application(platform, name)
    await platform.applications.remove(name)
    return ApplicationAnswer(id=name, message="Application has been deleted")


@router.get("/applications/{applicationName}/status",
            summary="How the application's last sync went: each template file synced, refused (line and reason) "
            "or removed", responses=answers(403, 404), response_model_exclude_none=True)
async def application_status(claims: Admin, name: ApplicationNamePath, platform: PlatformDep) -> ApplicationStatus:
    application = await existing_application(platform, name)
    return ApplicationStatus(
        health_status=application.health_status, sync_status=application.sync_status, message=application.message,
        source=ApplicationSource(repo_url=redact(application.repository_url), path=application.path,
                                 revision=application.commit or application.revision),
        sync_started_at=_time(application.sync_started_at), sync_finished_at=_time(application.sync_finished_at),
        reconciled_at=_time(application.reconciled_at),
        sync_resources_status=[SyncedResource(**result.model_dump()) for result in application.resources])


@router.post("/applications/{applicationName}/refresh", status_code=202,
             summary="Sync the application now (admin token); its status tells when it is done",
             responses=answers(403, 404))
async def refresh_application(claims: Admin, name: ApplicationNamePath, platform: PlatformDep) -> ApplicationAnswer:
    await existing_application(platform, name)
    platform.applications.refresh(name)
    return ApplicationAnswer(id=name, message="Refresh of the application has been scheduled")


def pushed_urls(body: bytes) -> set[str]:
    """The repository URLs a push webhook names: GitHub's, Gitea's and Forgejo's (``repository``) and
    GitLab's (``project``, ``repository``)."""
    try:
        document = json.loads(body)
    except (ValueError, RecursionError):
        return set()
    urls: set[str] = set()
    for part in ("repository", "project"):
        found = document.get(part) if isinstance(document, dict) else None
        if isinstance(found, dict):
            urls.update(value for key in ("clone_url", "html_url", "git_url", "ssh_url", "url", "git_http_url",
                                          "git_ssh_url", "web_url", "homepage")
                        if isinstance(value := found.get(key), str))
    return {_plain(url) for url in urls}


def _plain(url: str) -> str:
    return url.rstrip("/").removesuffix(".git")


async def refresh_pushed(platform: Platform, source: WebhookSource, body: bytes) -> dict[str, Any]:
    """What a signed push webhook (kind ``git``) refreshes: the source's applications, else those of the
    repository the push names."""
    applications = await platform.applications.applications.list(Store.GLOBAL)
    if source.applications:
        chosen = [a.name for a in applications if a.name in source.applications]
    else:
        urls = pushed_urls(body)
        chosen = [a.name for a in applications if _plain(a.repository_url) in urls]
    for name in chosen:
        platform.applications.refresh(name)
    answer: dict[str, Any] = {"applications": sorted(chosen)}
    if not chosen:
        answer["note"] = "no application syncs from this repository: nothing to refresh"
    return answer
