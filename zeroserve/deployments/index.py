"""Every deployment of the store, in this process's memory, for what looks at many at once: the API's
lists and counts and the ttl check. Reading 10,000 records from the KV bucket for each list costs
seconds; here a watch of the bucket keeps each record's JSON and a small summary (group, id, creation
time, the fields the API filters on), and a list parses only the records of the page it answers.

A list is as fresh as the store: it first asks the bucket's stream for its last sequence and waits
until the watch has applied it, so a deployment written a moment ago by any gateway or function is in
it. Should the watch fall behind (NATS away, say), a list reads the bucket as before and the watch
starts again. The watch starts on the first list: a process that never lists pays nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from datetime import datetime
from typing import NamedTuple

from nats.js.kv import KV_DEL, KV_PURGE
from pydantic import BaseModel, ConfigDict

from zeroserve.core.store import Deployment, Registry

log = logging.getLogger(__name__)

# How long a list waits for the watch to catch up with the store before it reads the store itself.
CATCH_UP_S = 2.0


class _Fields(BaseModel):
    """The part of a record a summary holds (pydantic-core reads only these out of the JSON)."""

    model_config = ConfigDict(extra="ignore")

    id: str
    group: str
    executable_id: str
    configuration_id: str | None = None
    scenario_id: str | None = None
    status: str
    ttl: str | None = None
    created_at: datetime


class Summary(NamedTuple):
    """What a list filters and orders on, without parsing the record."""

    key: str
    group: str
    id: str
    created: float
    executable_id: str
    configuration_id: str | None
    scenario_id: str | None
    status: str
    ttl: str | None


class DeploymentIndex:
    """The deployments bucket, followed: summaries to choose from, records parsed when asked for."""

    def __init__(self, registry: Registry[Deployment]) -> None:
        self.registry = registry
        self._json: dict[str, bytes] = {}
        self._summaries: dict[str, Summary] = {}
        self._changed: set[str] = set()  # keys whose JSON changed since they were last summarised
        self._applied = 0  # the bucket's stream sequence the watch has applied up to
        self._waiters: list[tuple[int, asyncio.Future[None]]] = []
        self._ordered: list[Summary] | None = None  # every summary, newest first, until the next change
        self._task: asyncio.Task[None] | None = None

    async def summaries(self, group: str | None = None) -> list[Summary] | None:
        """Every deployment's summary (of one group), newest first, ties by id, as the store holds them
        now; None if the watch could not catch up in time (then read the store: ``records``)."""
        target = (await self.registry.js.stream_info(f"KV_{self.registry.bucket}")).state.last_seq
        self._follow()
        if self._applied < target:
            waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            self._waiters.append((target, waiter))
            try:
                await asyncio.wait_for(waiter, CATCH_UP_S)
            except TimeoutError:
                log.warning("the deployment index is behind the store (%d of %d): read from the store",
                            self._applied, target)
                self._restart()
                return None
        if self._ordered is None:
            self._summarise()
            self._ordered = sorted(self._summaries.values(), key=lambda s: (-s.created, s.id))
        ordered = self._ordered
        return ordered if group is None else [s for s in ordered if s.group == group]

    def record(self, summary: Summary) -> Deployment | None:
        """The whole record of a summary (None if it went since)."""
        data = self._json.get(summary.key)
        return None if data is None else Deployment.model_validate_json(data)

    async def deployments(self, group: str | None = None) -> list[Deployment]:
        """Every record (of one group), newest first: from the index, or the store if it lags."""
        found = await self.summaries(group)
        if found is None:
            records = await self.registry.list(group)
            return sorted(records, key=lambda d: (-d.created_at.timestamp(), d.id))
        return [record for summary in found if (record := self.record(summary)) is not None]

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    # -- the watch --------------------------------------------------------------------------------

    def _follow(self) -> None:
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._watch(), name="deployment-index")

    def _restart(self) -> None:
        if self._task is not None:
            self._task.cancel()
        self._task = None
        self._waiters = [(target, waiter) for target, waiter in self._waiters if not waiter.done()]

    async def _watch(self) -> None:
        # Started afresh: what it had may miss deletions made while it was away.
        self._json.clear()
        self._summaries.clear()
        self._changed.clear()
        self._ordered = None
        self._applied = 0
        begun = (await self.registry.js.stream_info(f"KV_{self.registry.bucket}")).state.last_seq
        watcher = await self.registry.kv.watchall()
        try:
            async for entry in watcher:
                if entry is None:  # all the bucket held when the watch began has come
                    self._caught_up(begun)
                else:
                    self._apply(entry.key, entry.value, entry.operation, entry.revision or 0)
        finally:
            with contextlib.suppress(Exception):
                await watcher.stop()

    def _apply(self, key: str, value: bytes | None, operation: str | None, revision: int) -> None:
        # Summarised when a list asks (``_summarise``): a burst of changes to one record costs one parse.
        if operation in (KV_DEL, KV_PURGE) or not value:
            self._json.pop(key, None)
            self._summaries.pop(key, None)
            self._changed.discard(key)
        else:
            self._json[key] = value
            self._changed.add(key)
        self._ordered = None
        self._caught_up(revision)

    def _summarise(self) -> None:
        for key in self._changed:
            fields = _Fields.model_validate_json(self._json[key])
            self._summaries[key] = Summary(key, fields.group, fields.id, fields.created_at.timestamp(),
                                           fields.executable_id, fields.configuration_id, fields.scenario_id,
                                           fields.status, fields.ttl)
        self._changed.clear()

    def _caught_up(self, revision: int) -> None:
        self._applied = max(self._applied, revision)
        if self._waiters:
            still = []
            for target, waiter in self._waiters:
                if target <= self._applied:
                    if not waiter.done():
                        waiter.set_result(None)
                else:
                    still.append((target, waiter))
            self._waiters = still
