"""Templates from git, SAP AI Core's way: a registered repository (its URL and read credentials) and
applications, each a revision and a path of one repository whose serving templates it syncs.

A sync fetches the revision (``templates/git.py``), checks every YAML file under the path as the
operator's templates are checked (``executables.check_template``), and writes what passes as
``AddedTemplate`` records: usable at once by every process, with no restart. A broken file is refused
with its line and reason in the application's status while the others load; the last good version of
a template whose file broke stays, as Argo CD keeps a resource whose sync failed; a template whose
file is gone is removed. Syncs run in the process that was asked (the gateway), one at a time per
application; a refresh asked for during one runs once it ends.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import datetime
from typing import Literal

from pydantic import BaseModel, Field

from zeroserve.core.store import Registry, Store, now
from zeroserve.redaction import redact
from zeroserve.settings import Settings
from zeroserve.templates.executables import ALL_GROUPS, AddedTemplate, Executables, TemplateRefused, check_template
from zeroserve.templates.git import Credentials, RepositoryUnreachable, Revision, read_revision
from zeroserve.templates.plans import ResourcePlan

log = logging.getLogger(__name__)


class TemplateRepository(BaseModel):
    """A git repository applications sync from; its password is never returned, logged or put in an event."""

    name: str
    url: str
    username: str = ""
    password: str = Field(default="", repr=False)
    created_at: datetime = Field(default_factory=now)
    modified_at: datetime = Field(default_factory=now)


class TemplateResult(BaseModel):
    """What the last sync did with one file: Synced, SyncFailed (with the line and reason) or Pruned."""

    name: str
    kind: str = "ServingTemplate"
    status: Literal["Synced", "SyncFailed", "Pruned"]
    message: str = ""
    file: str
    line: int | None = None


class TemplateApplication(BaseModel):
    """A revision and path of a repository to sync, and how its last sync went (Argo CD's words)."""

    name: str
    repository_url: str
    revision: str
    path: str
    created_at: datetime = Field(default_factory=now)
    # Synced: every file is in use; OutOfSync: some were refused; Unknown: the revision could not be read.
    sync_status: Literal["Synced", "OutOfSync", "Unknown"] = "Unknown"
    health_status: Literal["Healthy", "Degraded", "Progressing"] = "Progressing"
    message: str = "waiting for its first sync"
    commit: str | None = None
    sync_started_at: datetime | None = None
    sync_finished_at: datetime | None = None
    reconciled_at: datetime | None = None
    resources: list[TemplateResult] = Field(default_factory=list)


class Applications:
    """The repositories and applications, and their syncs."""

    def __init__(
        self, repositories: Registry[TemplateRepository], applications: Registry[TemplateApplication],
        executables: Executables, plans: dict[str, ResourcePlan], settings: Settings,
    ) -> None:
        self.repositories = repositories
        self.applications = applications
        self.executables = executables
        self.plans = plans
        self.settings = settings
        self._syncing: dict[str, asyncio.Task[None]] = {}
        self._again: set[str] = set()

    @classmethod
    async def open(cls, store: Store, executables: Executables, plans: dict[str, ResourcePlan],
                   settings: Settings) -> Applications:
        return cls(await store.registry("template_repositories", TemplateRepository),
                   await store.registry("template_applications", TemplateApplication), executables, plans, settings)

    async def repository_of(self, url: str) -> TemplateRepository | None:
        found = await self.repositories.list(Store.GLOBAL)
        return next((r for r in found if r.url.rstrip("/") == url.rstrip("/")), None)

    def refresh(self, name: str) -> None:
        """Sync ``name`` soon, in this process: now, or right after the sync that runs."""
        running = self._syncing.get(name)
        if running is not None and not running.done():
            self._again.add(name)
            return
        self._syncing[name] = asyncio.create_task(self._syncs(name), name=f"template sync {name}")

    async def _syncs(self, name: str) -> None:
        while True:
            self._again.discard(name)
            try:
                await self.sync(name)
            except Exception:  # the NATS connection lost, a bug: the next refresh tries again
                log.exception("application %s: the sync failed", name)
            if name not in self._again:
                return

    async def close(self) -> None:
        tasks = [task for task in self._syncing.values() if not task.done()]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def sync(self, name: str) -> TemplateApplication | None:
        """One sync of application ``name``, now; its record as it ends (None: there is no such application)."""
        application = await self.applications.get(Store.GLOBAL, name)
        if application is None:
            return None
        await self._record(name, health_status="Progressing", sync_started_at=now())
        repository = await self.repository_of(application.repository_url)
        try:
            if repository is None:
                raise RepositoryUnreachable(f"no registered repository has the URL {redact(application.repository_url)}"
                                            ": register it (POST /v2/admin/repositories)")
            revision = await read_revision(
                repository.url, application.revision, application.path, timeout_s=self.settings.template_sync_timeout_s,
                credentials=Credentials(repository.username, repository.password))
        except RepositoryUnreachable as error:
            log.warning("application %s: %s", name, error.message)
            return await self._record(name, sync_status="Unknown", health_status="Degraded", message=error.message,
                                      sync_finished_at=now(), reconciled_at=now())
        results = await self._apply(application, revision)
        failed = [result for result in results if result.status == "SyncFailed"]
        synced = [result for result in results if result.status == "Synced"]
        message = f"{len(synced)} template(s) synced from {revision.commit[:12]}"
        if failed:
            message += f"; {len(failed)} refused: " + "; ".join(result.message for result in failed)
        log.info("application %s: %s", name, message)
        return await self._record(
            name, sync_status="OutOfSync" if failed else "Synced", health_status="Degraded" if failed else "Healthy",
            message=message, commit=revision.commit, resources=results, sync_finished_at=now(), reconciled_at=now())

    async def _apply(self, application: TemplateApplication, revision: Revision) -> list[TemplateResult]:
        """The revision's templates written, those gone removed; what became of each file."""
        results: list[TemplateResult] = []
        kept: set[tuple[str, str]] = set()
        refused_files: set[str] = set()
        for file, text in sorted(revision.files.items()):
            try:
                template, group = check_template(text, file, plans=self.plans, settings=self.settings)
                key = (group or ALL_GROUPS, template.name)
                if template.name in self.executables.shipped or key in kept:
                    whose = "an operator's template" if key not in kept else "another file of this revision"
                    raise TemplateRefused(file, 1, f"{template.name!r} is the name of {whose}")
                await self._put(application, key, file, revision.commit, text)
                kept.add(key)
                results.append(TemplateResult(name=template.name, status="Synced", file=file, message=file))
            except TemplateRefused as refused:
                refused_files.add(file)
                results.append(TemplateResult(name=file.rsplit("/", 1)[-1], status="SyncFailed", file=file,
                                              line=refused.line, message=refused.message))
        for record in await self.executables.added.list():
            if (record.application == application.name and (record.scope, record.name) not in kept
                    and record.file not in refused_files):
                await self.executables.added.delete(record.scope, record.name)
                results.append(TemplateResult(name=record.name, status="Pruned", file=record.file,
                                              message=f"{record.file} is no longer in {application.path}"))
        return results

    async def _put(self, application: TemplateApplication, key: tuple[str, str], file: str, commit: str,
                   text: str) -> None:
        scope, name = key

        def put(current: AddedTemplate | None) -> AddedTemplate | None:
            if current is not None and current.application != application.name:
                raise TemplateRefused(file, 1, f"{name!r} is taken ({current.origin}"
                                      f"{'' if scope == ALL_GROUPS else ' in ' + scope})")
            if current is not None and current.text == text and current.file == file:
                return None
            return AddedTemplate(name=name, scope=scope, application=application.name, file=file, commit=commit,
                                 text=text, created_at=current.created_at if current else now())

        await self.executables.added.update(scope, name, put)

    async def _record(self, name: str, **status: object) -> TemplateApplication | None:
        def change(current: TemplateApplication | None) -> TemplateApplication | None:
            # Deleted meanwhile: nothing to record.
            return None if current is None else current.model_copy(update=status)

        return await self.applications.update(Store.GLOBAL, name, change)

    async def remove(self, name: str) -> None:
        """Delete application ``name`` and the templates it synced."""
        running = self._syncing.pop(name, None)
        if running is not None:
            running.cancel()
            await asyncio.gather(running, return_exceptions=True)
        await self.applications.delete(Store.GLOBAL, name)
        for record in await self.executables.added.list():
            if record.application == name:
                await self.executables.added.delete(record.scope, record.name)
