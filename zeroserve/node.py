"""One zeroserve process: ``Node`` is what ``zeroserve up`` runs and what the end-to-end tests start.

On one machine it runs every role (``zeroserve.roles``) with a private nats-server and model servers
as child processes that come and go with traffic; on a cluster it runs the roles it is given against
an external NATS. Stopping it stops the pieces in the order that loses nothing: the gateway first
(no new requests), then the runner (in-flight events finish or go back to JetStream), then the
replicas, then NATS.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import json
import logging
import os
import socket
from collections.abc import Coroutine, Generator, Iterable
from typing import Any, TypeVar

import uvicorn
import uvloop
from prometheus_client import start_http_server

from zeroserve.auth import ALL_GROUPS
from zeroserve.core.nats_auth import EmbeddedCredentials, render_authorization, write_private
from zeroserve.core.nats_server import NatsServer
from zeroserve.core.runner import Runner, load_functions
from zeroserve.core.store import Store
from zeroserve.deployments.expiry import enforce_ttl
from zeroserve.gateway.app import create_app
from zeroserve.platform import Platform
from zeroserve.redaction import redact
from zeroserve.roles import ROLES, checked_roles, every_role
from zeroserve.settings import Settings
from zeroserve.webhooks.dispatcher import Dispatcher

log = logging.getLogger(__name__)
T = TypeVar("T")


def run(main: Coroutine[Any, Any, T]) -> T:
    """Run zeroserve's main coroutine to its end on uvloop, the event loop uvicorn picks when it makes
    its own: the gateway's inference path spends less CPU per request on it than on asyncio's."""
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(main)


class _Gateway(uvicorn.Server):
    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        # Signals belong to `zeroserve up`, which stops every part in order, not to uvicorn.
        yield


class Node:
    def __init__(self, settings: Settings, roles: Iterable[str] = ROLES) -> None:
        self.settings = settings
        self.roles = checked_roles(roles, settings)
        self.nats: NatsServer | None = None
        self.nats_url: str | None = None
        self.platform: Platform | None = None
        self.runner: Runner | None = None
        self._gateway: _Gateway | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._metrics: Any = None  # the scrape endpoint's server, with metrics_port

    @property
    def url(self) -> str:
        return self.settings.gateway_url

    async def start(self) -> None:
        settings = self.settings
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        listener = self._listen() if "gateway" in self.roles else None
        settings = self.settings  # _listen may have picked the port

        if settings.nats_url:
            self.nats_url = settings.nats_url
        else:
            # Only zeroserve may use its NATS: another local process could otherwise publish status
            # events, or requests of any group, past every token and group the gateway checks.
            credentials = EmbeddedCredentials.load_or_create(settings.nats_dir)
            self.nats = NatsServer(settings.nats_dir, config=render_authorization([credentials.user_of()]))
            self.nats_url = credentials.in_url(await self.nats.start())
        # Only for this user: the URL carries the credentials.
        write_private(settings.data_dir / "nats.url", self.nats_url)

        self.platform = platform = await Platform.open(settings, self.nats_url)
        if settings.metrics_port is not None:
            # prometheus_client's own server, in its thread: a scrape never waits for the event loop.
            self._metrics, _ = await asyncio.to_thread(start_http_server, settings.metrics_port, settings.gateway_host)
        if every_role(self.roles):  # one process: bring the backend back in line with the store
            await platform.restore()
        if "watcher" in self.roles:
            self._tasks.append(asyncio.create_task(self._watch(platform), name="watcher"))
            # Webhooks out with the watcher, which always runs (every replica, Lease or not: they share one
            # durable consumer), not with the functions, which KEDA keeps at zero while no event waits for them.
            self._tasks.append(asyncio.create_task(Dispatcher(platform).run(), name="webhooks-out"))
        if "functions" in self.roles:
            self.runner = Runner(platform, load_functions(settings.functions_dir))
            await self.runner.start()
        if listener is None:
            self._settle()
            log.info("zeroserve %s up: NATS %s", " and ".join(sorted(self.roles)), redact(self.nats_url))
            return

        await self._ensure_credentials()
        config = uvicorn.Config(create_app(platform), log_level="warning", access_log=False, lifespan="on")
        self._gateway = _Gateway(config)
        self._tasks.append(asyncio.create_task(self._gateway.serve(sockets=[listener]), name="gateway"))
        while not self._gateway.started:
            if self._tasks[-1].done():
                await self._tasks[-1]
                raise SystemExit("the gateway stopped at start")
            await asyncio.sleep(0.01)
        (settings.data_dir / "gateway.url").write_text(self.url)
        self._settle()
        log.info("zeroserve is up: gateway %s, NATS %s", self.url, redact(self.nats_url))

    @staticmethod
    def _settle() -> None:
        # What start-up built lives as long as the node: out of the collector's sight (until stop),
        # or each full collection walks it (~200 ms with kserve and sklearn imported) while the event
        # loop waits.
        gc.freeze()

    async def _watch(self, platform: Platform) -> None:
        """Statuses from the backend and ttl expiry; on a cluster only while holding the Lease."""

        async def watch() -> None:
            tasks = [asyncio.create_task(platform.follow_backend(), name="follow-backend"),
                     asyncio.create_task(enforce_ttl(platform), name="ttl")]
            try:
                await asyncio.gather(*tasks)
            finally:
                await cancel(tasks)

        if self.settings.backend != "kserve" or every_role(self.roles):
            await watch()  # one process does everything: nobody to share the work with
            return
        from zeroserve.backends.kserve.backend import KserveBackend
        from zeroserve.backends.kserve.leader_election import Lease

        backend = platform.backend
        assert isinstance(backend, KserveBackend)
        lease = Lease(backend.api, self.settings.lease_namespace, self.settings.lease_name,
                      self.settings.pod_name or socket.gethostname(), self.settings.lease_duration_s)
        await lease.hold(watch)

    def _listen(self) -> socket.socket:
        settings = self.settings
        # IPPROTO_TCP said, not left 0: asyncio sets TCP_NODELAY only on sockets whose proto says
        # TCP, and without it every response waited ~40 ms for a delayed ACK (measured).
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            listener.bind((settings.gateway_host, settings.gateway_port))
        except OSError as error:
            listener.close()
            raise SystemExit(f"cannot listen on {settings.gateway_host}:{settings.gateway_port}: {error.strerror}; "
                             "set ZEROSERVE_GATEWAY_PORT to a free port") from None
        if settings.gateway_port == 0:  # a free port was asked for: deployment URLs need the real one
            self.settings = settings.model_copy(update={"gateway_port": listener.getsockname()[1]})
        return listener

    async def _ensure_credentials(self) -> None:
        """A client for every group, for the operator of this machine: its id and secret go to
        data_dir/credentials.json (mode 0600), where the CLI and the Python client look first."""
        assert self.platform is not None
        path = self.settings.data_dir / "credentials.json"
        if path.exists():
            try:
                known = json.loads(path.read_text())
                if await self.platform.auth.clients.get(Store.GLOBAL, known["client_id"]) is not None:
                    return
            except (ValueError, KeyError, TypeError):
                pass  # unreadable: replaced below
        client, secret = await self.platform.auth.create_client([ALL_GROUPS], name="local operator")
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as file:
            json.dump({"client_id": client.id, "client_secret": secret}, file)
        path.chmod(0o600)

    async def stop(self) -> None:
        gc.unfreeze()
        if self._gateway is not None:
            self._gateway.should_exit = True
        if self.runner is not None:
            await self.runner.stop()
        for task in self._tasks:
            if task.get_name() == "gateway":
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(task, 10)
        await cancel(self._tasks)
        if self.platform is not None:
            await self.platform.close()
        if self.nats is not None:
            await self.nats.stop()
        if self._metrics is not None:
            await asyncio.to_thread(self._metrics.shutdown)
            self._metrics.server_close()
        for name in ("nats.url", "gateway.url"):
            (self.settings.data_dir / name).unlink(missing_ok=True)

    async def __aenter__(self) -> Node:
        try:
            await self.start()
        except BaseException:
            await self.stop()
            raise
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()


async def cancel(tasks: list[asyncio.Task[None]], attempts: int = 50) -> None:
    """Cancel the tasks and wait for them, cancelling again those that swallowed it.

    Python 3.11's ``asyncio.wait_for`` (nats-py's fetch waits with it) loses a cancellation that
    arrives as the awaited thing completes, and the task loops on; cancelling once is not enough.
    """
    pending = [task for task in tasks if not task.done()]
    for _ in range(attempts):
        if not pending:
            break
        for task in pending:
            task.cancel()
        _, still = await asyncio.wait(pending, timeout=0.2)
        pending = list(still)
    if pending:
        log.warning("tasks still running after stop: %s", ", ".join(task.get_name() for task in pending))
    for task in tasks:
        if task.done() and not task.cancelled() and task.exception() is not None:
            log.debug("task %s ended with %r", task.get_name(), task.exception())
