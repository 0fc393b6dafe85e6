"""KServe's HTTP side of a replica, built before its model is known: the ``ModelServer``, its REST
app with every route, middleware and exception handler, and uvicorn's configuration, loaded. Building
them takes a fresh process about 100 ms (FastAPI analyses every route's signature, pydantic's v1
shims and uvicorn's protocols are imported); the fork server builds one ``ReplicaApp`` once, and each
forked replica only registers its model on its copy and serves. A replica serves with
``ReadyServer``, which says on a pipe when its socket accepts connections, so that the backend hears
of readiness at once instead of asking for it. This module imports kserve: only the replica process
and the fork server import it, after ``sys.argv`` is theirs.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import socket
import warnings
from collections.abc import Awaitable, Callable, Iterator, MutableMapping
from typing import Any, NamedTuple

import uvicorn
from kserve.constants.constants import FASTAPI_APP_IMPORT_STRING
from kserve.logging import logger
from kserve.model import BaseKServeModel
from kserve.model_server import ModelServer
from kserve.model_server import app as kserve_app
from kserve.protocol.rest.server import RESTServer
from kserve.protocol.rest.timeseries.config import maybe_register_time_series_endpoints

from zeroserve.serving.runtimes import faults

# The requests of ReplicaApp.warm_up: the routes the backend and callers use first.
WARM_UP = (("GET", "/v2/health/ready"), ("POST", "/v1/models/warm-up:predict"), ("POST", "/v2/models/warm-up/infer"))
WARM_UP_BODY = b'{"instances": [[0.0]]}'


async def _request(app: Callable[..., Awaitable[None]], method: str, path: str, body: bytes) -> None:
    """One HTTP request through an ASGI app, in process; the answer is not needed."""
    scope = {
        "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": method, "scheme": "http",
        "path": path, "raw_path": path.encode(), "query_string": b"", "root_path": "",
        "headers": [(b"host", b"127.0.0.1"), (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode())],
        "client": ("127.0.0.1", 0), "server": ("127.0.0.1", 0), "state": {},
    }
    messages: list[MutableMapping[str, Any]] = [{"type": "http.request", "body": body, "more_body": False}]

    async def receive() -> MutableMapping[str, Any]:
        return messages.pop() if messages else {"type": "http.disconnect"}

    async def send(message: MutableMapping[str, Any]) -> None:
        pass

    await app(scope, receive, send)


@contextlib.contextmanager
def quiet() -> Iterator[None]:
    """No log records: for the fork server, whose lines about an app with no model (and the 404s of
    its warm-up, logged as errors) would only be noise on zeroserve's terminal; a failure still
    raises. A threshold for every logger: kserve sets its loggers' levels while its server is built."""
    logging.disable(logging.CRITICAL)
    try:
        yield
    finally:
        logging.disable(logging.NOTSET)


class AppOptions(NamedTuple):
    """The kserve flags that shape the app; a prepared app serves only a replica with the same ones."""

    enable_latency_logging: bool
    access_log_format: str | None
    event_loop: str
    timeout_keep_alive: int

    @classmethod
    def of(cls, args: argparse.Namespace) -> AppOptions:
        return cls(args.enable_latency_logging, args.access_log_format, args.event_loop, args.timeout_keep_alive)


class ReadyServer(uvicorn.Server):
    """uvicorn's server, which writes ``ready <model load seconds>`` on ``ready_fd`` (and closes it)
    once its socket accepts connections: the backend's readiness signal."""

    def __init__(self, config: uvicorn.Config, ready_fd: int | None, load_s: float) -> None:
        super().__init__(config)
        self.ready_fd = ready_fd
        self.load_s = load_s

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets=sockets)
        if self.started and self.ready_fd is not None:
            try:
                os.write(self.ready_fd, f"ready {self.load_s:.6f}\n".encode())
            except OSError:  # the backend stopped listening: it has given up on this replica
                pass
            os.close(self.ready_fd)
            self.ready_fd = None


def _end_on_gpu_out_of_memory(app: Any) -> None:
    """A request whose model ran out of GPU memory ends the replica (``faults.py``): it is not to be
    trusted after, and the deployment says why. Other errors keep KServe's own answer. Set before
    the app's middleware is built (the first request builds it), so its error middleware has it."""
    answer = app.exception_handlers[Exception]

    async def handler(request: Any, error: Exception) -> Any:
        if faults.is_gpu_out_of_memory(error):
            faults.exit_out_of_gpu_memory(error)
        return await answer(request, error)

    app.add_exception_handler(Exception, handler)


class ReplicaApp:
    """KServe's model server and REST app for one replica, with no model yet: one worker, REST only."""

    def __init__(self, options: AppOptions) -> None:
        self.options = options
        # kserve's app uses ORJSONResponse, which FastAPI now deprecates with a two-line warning that
        # would become two log events of every replica: kserve's to fix, nothing a user can act on.
        warnings.filterwarnings("ignore", message="ORJSONResponse is deprecated")
        # The port is never bound: the replica serves on the socket its backend hands it.
        self.model_server = ModelServer(
            http_port=0,
            workers=1,
            enable_grpc=False,
            enable_docs_url=False,
            enable_latency_logging=options.enable_latency_logging,
            access_log_format=options.access_log_format,
            event_loop=options.event_loop,
            timeout_keep_alive=options.timeout_keep_alive,
        )
        server = self.model_server
        self.rest = RESTServer(
            FASTAPI_APP_IMPORT_STRING,
            server.dataplane,
            server.model_repository_extension,
            server.http_port,
            access_log_format=server.access_log_format,
            workers=1,
            grace_period=server.grace_period,
            event_loop=server.event_loop,
            timeout_keep_alive=server.timeout_keep_alive,
        )
        self.rest.create_application()  # kserve's module-level FastAPI app: one ReplicaApp a process
        _end_on_gpu_out_of_memory(kserve_app)
        self.rest.config.load()
        self.rest.config.get_loop_factory()  # imports the event loop's module (uvloop: 20 ms)
        try:  # kserve's OpenAI routes need vllm: whether they can be had is known once, not per fork
            from kserve.protocol.rest.openai.config import maybe_register_openai_endpoints

            self.openai_routes: Callable[..., None] | None = maybe_register_openai_endpoints
        except ImportError:
            self.openai_routes = None

    def warm_up(self) -> None:
        """Send a few requests through the app, with no model: what FastAPI builds on a route's first
        match and Starlette on the first request (the middleware stack) is then built once, here,
        not in every fork while its first caller waits."""
        for method, path in WARM_UP:
            asyncio.run(_request(self.rest.config.loaded_app, method, path, WARM_UP_BODY))

    def serve(self, model: BaseKServeModel, sock: socket.socket, access_log: bool, ready_fd: int | None,
              load_s: float) -> None:
        """Serve ``model`` (loaded) on ``sock`` until SIGTERM or SIGINT."""
        server = self.model_server
        server.register_model(model)
        model.enable_latency_logging = server.enable_latency_logging
        # kserve adds the OpenAI and time-series routes only for models of those kinds, when it
        # builds its app: this one was built before the model came, so they are added for it now.
        if self.openai_routes is not None:
            self.openai_routes(kserve_app, server.registered_models)
        if getattr(model, "serves_openai", False):  # the huggingface runtime's generators and encoders
            from zeroserve.serving.runtimes.openai_api import add_openai_routes

            add_openai_routes(kserve_app, model)
        maybe_register_time_series_endpoints(kserve_app, server.registered_models)
        if not access_log:
            logging.getLogger("uvicorn.access").disabled = True
        if not server.enable_latency_logging:
            # kserve's timing middleware logs two lines per request besides the access log.
            logging.getLogger("kserve.trace").setLevel(logging.WARNING)
        host, port = sock.getsockname()[:2]
        gpus = os.environ.get("CUDA_VISIBLE_DEVICES")
        logger.info("Serving model %r on http://%s:%d%s", model.name, host, port, f" with GPU {gpus}" if gpus else "")
        ReadyServer(self.rest.config, ready_fd, load_s).run(sockets=[sock])
