"""The replica process: one model, served by KServe's own model server, on 127.0.0.1 only. The local
backend binds a TCP socket to 127.0.0.1:0 and hands its descriptor down (``pass_fds``): KServe's
``ModelServer`` binds HTTP on 0.0.0.0 and gRPC on [::] and has no host flag, so the replica serves
KServe's REST app (data plane, model repository, V1 and V2 endpoints) on that socket and never
starts gRPC. The model is loaded before the socket accepts a connection, so any HTTP answer means
ready; given ``--ready-fd``, the replica also says so itself, one line on that pipe, as soon as its
socket serves. A fork of the fork server is handed KServe's app already built (``ReplicaApp``) and
only loads its model. Exit codes: 0 after SIGTERM or SIGINT, 2 for bad flags, 3 when the model cannot be
loaded, 4 (``faults.EXIT_GPU_OUT_OF_MEMORY``) when a GPU ran out of memory, loading or serving; one line
on stderr says why. The process dies with its parent (Linux). Its flags are in ``build_parser``'s usage.
"""

from __future__ import annotations

import argparse
import io
import ipaddress
import os
import signal
import socket
import sys
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING

from zeroserve.children import die_with_parent, leave
from zeroserve.serving.runtimes import faults

if TYPE_CHECKING:  # kserve is imported when a replica starts, after its flags are in sys.argv
    from kserve import Model

    from zeroserve.serving.runtimes.app import AppOptions, ReplicaApp

EXIT_BAD_FLAGS = 2
EXIT_LOAD_FAILED = 3



def _exit_quietly(signum: int, frame: object) -> None:
    # Before serving: leave at once. After serving, uvicorn restores this handler and raises the
    # signal it caught again; exiting 0 here is what makes SIGTERM a clean stop, not a -15.
    sys.exit(0)


def build_parser(kserve_parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m zeroserve.serving.runtimes.server",
        usage="%(prog)s --model-format F --model-name N --model-dir D (--listen-fd FD | --port P) "
        "[--parent-pid PID] [kserve flags]",
        description="Serve one model with KServe on 127.0.0.1.",
        parents=[kserve_parser],
    )
    parser.add_argument("--model-format", required=True, help="a key of zeroserve.serving.runtimes.RUNTIMES")
    parser.add_argument("--model-name", dest="model_name", required=True, help="the name in the URL paths")
    parser.add_argument("--model-dir", required=True, help="the local directory that holds the model")
    where = parser.add_mutually_exclusive_group(required=True)
    where.add_argument("--listen-fd", type=int, help="a TCP socket bound to a loopback address, inherited")
    where.add_argument("--port", type=int, help="bind 127.0.0.1:PORT (0 = any free port) instead")
    parser.add_argument("--parent-pid", type=int, help="exit at once if the parent is no longer this process")
    parser.add_argument("--ready-fd", type=int,
                        help="a pipe: 'ready <model load seconds>' is written to it once the socket serves")
    parser.add_argument("--access-log", action="store_true",
                        help="log a line per request (off: at a high rate each line costs the parent a log event)")
    parser.set_defaults(enable_grpc=False, enable_latency_logging=False, enable_docs_url=False)
    return parser


def default_app_options() -> AppOptions:
    """The app options of a replica given no kserve flags, as the local backend starts them."""
    from kserve import model_server as kserve_server

    from zeroserve.serving.runtimes.app import AppOptions

    parser = build_parser(kserve_server.parser)
    return AppOptions(*(parser.get_default(name) for name in AppOptions._fields))


def listening_socket(args: argparse.Namespace) -> socket.socket:
    """The socket to serve on; refuses anything that is not bound to a loopback address."""
    if args.listen_fd is not None:
        sock = socket.socket(fileno=args.listen_fd)
    else:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", args.port))
    sock.set_inheritable(False)
    host = sock.getsockname()[0]
    if sock.family not in (socket.AF_INET, socket.AF_INET6) or not ipaddress.ip_address(host).is_loopback:
        raise ValueError(f"the socket is bound to {sock.getsockname()!r}, not to a loopback address")
    return sock


def fail(reason: str, message: str) -> int:
    """One line on stderr (reason: message), for the parent to put into the deployment's status."""
    print(f"{reason}: {' '.join(message.split())}", file=sys.stderr)
    return EXIT_LOAD_FAILED


def load_model(args: argparse.Namespace) -> tuple[Model, float]:
    """The replica's model, loaded, and the seconds its load took; raises ZeroserveError if it cannot be."""
    from zeroserve.errors import GpuOutOfMemory, ModelLoadFailed, ZeroserveError
    from zeroserve.serving.runtimes import load_runtime

    started = time.monotonic()
    try:
        model = load_runtime(args.model_format)(args.model_name, args.model_dir)
        if model.load() is False or not model.ready:  # a custom predictor's load() may return nothing
            raise ModelLoadFailed(f"{type(model).__name__}.load() did not make the model ready")
    except Exception as exc:  # a runtime's own failure: reported, and the replica is dead
        if faults.is_gpu_out_of_memory(exc):  # the model does not fit its GPU: not a broken model
            raise GpuOutOfMemory(faults.describe(exc)) from exc
        if isinstance(exc, ZeroserveError):
            raise
        raise ModelLoadFailed(f"{type(exc).__name__}: {exc}") from exc
    return model, time.monotonic() - started


def main(argv: Sequence[str] | None = None, prepared: ReplicaApp | None = None) -> int:
    """Serve one model; ``prepared``, a ``ReplicaApp`` built before the fork, is used if its options fit."""
    parent_pid = os.getppid()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, _exit_quietly)
    # Pipes are block-buffered: the parent turns every line into a log event as it comes.
    for stream in (sys.stdout, sys.stderr):
        if isinstance(stream, io.TextIOWrapper):
            stream.reconfigure(line_buffering=True)

    early = argparse.ArgumentParser(add_help=False)
    early.add_argument("--parent-pid", type=int)
    die_with_parent(early.parse_known_args(argv)[0].parent_pid or parent_pid)

    # kserve.model_server parses sys.argv when imported: our flags must read well to it, and do.
    from kserve import model_server as kserve_server
    from kserve.logging import logger

    from zeroserve.errors import ZeroserveError
    from zeroserve.serving.runtimes.app import AppOptions, ReplicaApp

    parser = build_parser(kserve_server.parser)
    args = parser.parse_args(argv)
    if args.enable_grpc or args.workers != 1:
        parser.error("a zeroserve replica serves REST on 127.0.0.1 with one worker: no gRPC, --workers 1")
    try:
        sock = listening_socket(args)
    except (OSError, ValueError) as exc:
        print(f"cannot listen: {exc}", file=sys.stderr)
        return EXIT_BAD_FLAGS
    if args.ready_fd is not None:
        os.set_inheritable(args.ready_fd, False)

    try:
        model, load_s = load_model(args)
    except ZeroserveError as exc:
        failed = fail(exc.reason, exc.message)
        return faults.EXIT_GPU_OUT_OF_MEMORY if exc.reason == faults.GPU_OUT_OF_MEMORY else failed
    logger.info("Loaded %s model %r from %s in %.3f s", args.model_format, args.model_name, args.model_dir, load_s)
    options = AppOptions.of(args)
    app = prepared if prepared is not None and prepared.options == options else ReplicaApp(options)
    app.serve(model, sock, args.access_log, args.ready_fd, load_s)
    return 0


if __name__ == "__main__":
    leave(main)
