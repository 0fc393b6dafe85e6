"""Deployment log records: control-plane notes and every line a replica prints.

Each record becomes an ``io.zeroserve.deployment.log`` event on the logs stream, which keeps
them after the replicas are gone. Replicas can print faster than JetStream acks one by one, so
records go through a bounded queue to one publisher task; a full queue makes the writer wait
rather than drop lines.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Literal

from zeroserve.core.bus import Bus
from zeroserve.events import DeploymentLog, new_event

log = logging.getLogger(__name__)

Stream = Literal["stdout", "stderr", "control"]


class DeploymentLogs:
    def __init__(self, bus: Bus, capacity: int = 10_000) -> None:
        self.bus = bus
        self._queue: asyncio.Queue[tuple[str, DeploymentLog, str | None]] = asyncio.Queue(capacity)
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._publish(), name="deployment-logs")

    async def stop(self) -> None:
        """Publish what is queued, then stop."""
        if self._task is None:
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._queue.join(), timeout=5)
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task
        self._task = None

    async def write(
        self, group: str, deployment_id: str, source: str, stream: Stream, message: str,
        timestamp: datetime | None = None, event_id: str | None = None,
    ) -> None:
        """Queue one record; ``timestamp`` is when it was written (now, unless the source says);
        ``event_id`` names it for JetStream's de-duplication when the same record may come twice."""
        record = DeploymentLog(
            id=deployment_id, timestamp=timestamp or datetime.now(UTC), source=source, stream=stream, message=message
        )
        await self._queue.put((group, record, event_id))

    async def control(self, group: str, deployment_id: str, message: str) -> None:
        await self.write(group, deployment_id, "control-plane", "control", message)

    async def _publish(self) -> None:
        while True:
            group, record, event_id = await self._queue.get()
            try:
                event = new_event(record, source=f"/zeroserve/deployments/{record.id}", subject=record.id, id=event_id)
                await self.bus.publish(event, group)
            except Exception as error:  # a log line must not take the publisher down
                log.warning("could not publish a log record of %s: %s", record.id, error)
            finally:
                self._queue.task_done()


async def output_records(stream: asyncio.StreamReader, quiet_s: float = 0.1) -> AsyncIterator[str]:
    """A process's output as log records: a line, with its indented continuation lines (a Python
    traceback, to its closing ``Error: ...`` line) kept in one record rather than thirty."""
    pending: list[str] = []
    while True:
        try:
            # With a record open, a short silence closes it; without one, wait as long as it takes.
            raw = await (asyncio.wait_for(stream.readline(), quiet_s) if pending else stream.readline())
        except TimeoutError:
            yield "\n".join(pending)
            pending = []
            continue
        except ValueError:  # a line past the reader's limit: asyncio has dropped it; say so, read on
            raw = b"[a line longer than the log limit was left out]\n"
        if not raw:
            break
        line = raw.decode(errors="replace").rstrip()
        if not line:
            continue
        continues = line[:1].isspace()
        closes_traceback = bool(pending) and pending[0].startswith("Traceback") and pending[-1][:1].isspace()
        if pending and (continues or closes_traceback):
            pending.append(line)
            if closes_traceback and not continues:
                yield "\n".join(pending)
                pending = []
            continue
        if pending:
            yield "\n".join(pending)
        pending = [line]
    if pending:
        yield "\n".join(pending)
