"""A fork server for replicas: Python started and kserve imported once, each replica a fork. A fresh
replica process spends most of its start (about 1.2 s of 1.6 s here) importing kserve, FastAPI,
numpy and the model's framework before it reads the model. The fork server pays that once, at
start-up: it imports what every replica needs and builds KServe's app (``preload``), freezes what
it built out of the collector's sight, and then waits, one thread, no event
loop, no gRPC channel, for requests. Each request forks a child that *is* a replica: it takes the
listening socket, the output pipes and the ready pipe the backend sends with the request, and runs
``zeroserve.serving.runtimes.server.main`` with the replica's flags and the prepared app.
The server exits when its socket closes or its parent dies; its children die with it (Linux).
A fork server has a preload profile: ``cpu`` (kserve and every runtime but torch's family) or
``torch`` (kserve, torch, transformers if installed, and the runtimes of ``TORCH_FORMATS``), so
that a process serving scikit-learn in 30 ms never pays torch's seconds and 537 MB.

GPU replicas fork too, from a server that has never loaded NVIDIA's driver library: CUDA state does
not survive a fork, but a process that never mapped ``libcuda`` has none to pass on. A fork server
runs with no GPU visible (``CUDA_VISIBLE_DEVICES=""``), its runtimes choose their device only in
the replica, and it says whether it may fork GPU replicas (``gpu_forks``) once its imports are
done, and checks again before each one (``/proc/self/maps``); where the driver is mapped (or CUDA
initialised), GPU replicas are spawned as fresh processes instead. A GPU replica's fork sets its
``CUDA_VISIBLE_DEVICES`` before anything in it can touch CUDA.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import json
import logging
import os
import selectors
import signal
import socket
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from zeroserve.children import die_with_parent, leave

if TYPE_CHECKING:
    from zeroserve.serving.runtimes.app import ReplicaApp

log = logging.getLogger(__name__)

# The backend talks to the server (python -m zeroserve.serving.forkserver --control-fd FD
# --parent-pid PID) over a Unix SOCK_SEQPACKET socket, one JSON message per packet:
#
#   backend -> server   {"id": N, "argv": [...], "env": {...}}   + fds [listen socket, stdout, stderr(, ready)]
#   server -> backend   {"id": N, "pid": PID} | {"id": N, "error": "..."}
#   server -> backend   {"exited": PID, "code": CODE}   (a signal S gives -S, as subprocess does)
#   server -> backend   {"ready": true, "gpu_forks": B}  (once, when the imports are done; B: whether
#                                                         it may fork replicas that use a GPU)
#   a request for a GPU replica says so: {"id": N, "argv": [...], "env": {...}, "gpus": true}

MAX_MESSAGE = 1 << 20  # a request is a few hundred bytes; this bounds a broken one

CPU = "cpu"
TORCH = "torch"
PROFILES = (CPU, TORCH)


def runtime_modules(profile: str) -> list[str]:
    """The modules of the runtimes a fork server of ``profile`` serves: torch's family for ``torch``,
    the others for ``cpu``."""
    from zeroserve.serving.runtimes import RUNTIMES, TORCH_FORMATS

    return [target.partition(":")[0] for model_format, target in RUNTIMES.items()
            if (model_format in TORCH_FORMATS) == (profile == TORCH)]


def preload(profile: str = CPU) -> ReplicaApp:
    """Import what replicas of ``profile`` need, so that forks start with it: kserve's model server
    and REST app, the runtimes and their frameworks; and build KServe's app, which every replica with
    kserve's default flags serves as it is."""
    import importlib

    from zeroserve.serving.runtimes.app import ReplicaApp, quiet
    from zeroserve.serving.runtimes.server import default_app_options

    for module in runtime_modules(profile):
        importlib.import_module(module)
    if profile == TORCH:
        for module in ("torch", "transformers"):
            try:
                importlib.import_module(module)
            except ImportError:  # not installed: its runtime says so in its replica
                pass
        if "transformers" in sys.modules:
            from zeroserve.serving.runtimes.huggingface import warm_up

            with quiet():
                warm_up()  # a fork's first Hugging Face load then reads weights only (2 s -> 0.1 s)
    else:
        _warm_sklearn()
    with quiet():
        app = ReplicaApp(default_app_options())
        app.warm_up()
    return app


def cuda_driver_loaded(maps: str | None = None) -> bool:
    """Whether NVIDIA's driver library is mapped into this process (``maps``: its /proc/self/maps):
    once it is, CUDA may have been initialised, and no fork of this process may use a GPU. Unknown
    (no /proc) counts as loaded."""
    if maps is None:
        try:
            maps = Path("/proc/self/maps").read_text()
        except OSError:
            return True
    return "libcuda.so" in maps


def gpu_forks_allowed() -> bool:
    """Whether this process's forks may initialise CUDA themselves."""
    return not cuda_initialised() and not cuda_driver_loaded()


def cuda_initialised() -> bool:
    """Whether this process has initialised CUDA through torch (then no fork of it may use CUDA)."""
    torch = sys.modules.get("torch")
    return torch is not None and bool(torch.cuda.is_initialized())


def _warm_sklearn() -> None:
    """Import the estimators a pickled scikit-learn model names, and make its first prediction's
    one-time work happen here, not in every fork."""
    import importlib

    for module in ("sklearn.linear_model", "sklearn.ensemble", "sklearn.tree", "sklearn.pipeline",
                   "sklearn.preprocessing", "sklearn.svm", "sklearn.neighbors"):
        try:
            importlib.import_module(module)
        except ImportError:  # an older or trimmed scikit-learn: its models load the slow way
            pass
    # The first prediction of a scikit-learn estimator looks for narwhals' dataframe plugins in
    # every installed package's metadata (20 ms): once, here, and never again in a fork.
    try:
        from sklearn.dummy import DummyClassifier

        DummyClassifier().fit([[0.0]], [0]).predict([[0.0]])
    except ImportError:
        pass


def _reply(control: socket.socket, message: dict[str, Any]) -> None:
    try:
        control.send(json.dumps(message).encode())
    except OSError:
        pass  # the backend is gone: the next read says so


def _fork(control: socket.socket, request: dict[str, Any], fds: list[int], app: ReplicaApp | None) -> int:
    """Start one replica; returns its pid (in the server) or never returns (in the replica)."""
    listen_fd, stdout_fd, stderr_fd, *ready = fds
    if request.get("gpus") and not gpu_forks_allowed():
        raise RuntimeError("this fork server has loaded NVIDIA's driver: a GPU replica must be a new process")
    for stream in (sys.stdout, sys.stderr):
        stream.flush()
    pid = os.fork()
    if pid:
        return pid
    # The replica. Whatever happens here ends in os._exit: the server's own cleanup is not ours.
    code = 70
    try:
        control.close()
        os.setsid()  # its own session, as a spawned replica has: a terminal's Ctrl-C is not for it
        os.dup2(stdout_fd, 1)
        os.dup2(stderr_fd, 2)
        os.close(stdout_fd)
        os.close(stderr_fd)
        os.environ.update(request.get("env") or {})
        for signum in (signal.SIGCHLD, signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, signal.SIG_DFL)
        signal.set_wakeup_fd(-1)
        from zeroserve.serving.runtimes.server import main

        argv = [*request["argv"], "--listen-fd", str(listen_fd), "--parent-pid", str(os.getppid()),
                *(["--ready-fd", str(ready[0])] if ready else [])]
        code = main(argv, prepared=app)
    except SystemExit as stop:
        code = stop.code if isinstance(stop.code, int) else (0 if stop.code is None else 1)
    except BaseException as error:  # noqa: BLE001 - a replica reports, then dies
        print(f"ReplicaStartFailed: {type(error).__name__}: {error}", file=sys.stderr)
    finally:
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except Exception:  # noqa: BLE001 - a closed pipe: nothing more to say anyway
                pass
        os._exit(code)


def serve(control: socket.socket, app: ReplicaApp | None = None) -> int:
    """Answer requests until the backend closes the socket; each fork serves ``app`` if it fits."""
    wake_r, wake_w = os.pipe()
    os.set_blocking(wake_w, False)
    signal.set_wakeup_fd(wake_w)
    signal.signal(signal.SIGCHLD, lambda *_: None)  # wakes the selector through the pipe
    selector = selectors.DefaultSelector()
    selector.register(control, selectors.EVENT_READ, "control")
    selector.register(wake_r, selectors.EVENT_READ, "child")
    _reply(control, {"ready": True, "gpu_forks": gpu_forks_allowed()})
    while True:
        for key, _ in selector.select():
            if key.data == "child":
                os.read(wake_r, 4096)
                _reap(control)
                continue
            try:
                data, fds, _flags, _addr = socket.recv_fds(control, MAX_MESSAGE, 4)
            except OSError:
                return 0
            if not data:
                return 0  # the backend closed it: it is stopping
            request: Any = None
            try:
                request = json.loads(data)
                if len(fds) not in (3, 4):
                    raise ValueError(f"expected 3 or 4 descriptors (socket, stdout, stderr[, ready]), got {len(fds)}")
                _reply(control, {"id": request.get("id"), "pid": _fork(control, request, fds, app)})
            except Exception as error:  # noqa: BLE001 - one bad request does not end the server
                _reply(control, {"id": request.get("id") if isinstance(request, dict) else None,
                                 "error": f"{type(error).__name__}: {error}"})
            finally:
                for fd in fds:
                    os.close(fd)
        _reap(control)


def _reap(control: socket.socket) -> None:
    while True:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return
        _reply(control, {"exited": pid, "code": os.waitstatus_to_exitcode(status)})


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m zeroserve.serving.forkserver")
    parser.add_argument("--control-fd", type=int, required=True)
    parser.add_argument("--parent-pid", type=int, required=True)
    parser.add_argument("--preload", choices=PROFILES, default=CPU)
    args = parser.parse_args(argv)
    die_with_parent(args.parent_pid)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is for zeroserve, which stops us in order
    control = socket.socket(fileno=args.control_fd)
    sys.argv = [sys.argv[0]]  # kserve parses sys.argv when imported: give it nothing to misread
    app = preload(args.preload)
    if cuda_initialised():  # an import touched the GPU: its forks could not use CUDA, nor be trusted to
        print("the fork server initialised CUDA while it imported its runtimes: it cannot fork", file=sys.stderr)
        return 1
    # What was built so far is every fork's, read-only: out of the collector's sight, a fork's
    # collections do not touch (and so copy) those pages. Instagram's gc.freeze recipe.
    gc.freeze()
    return serve(control, app)


if __name__ == "__main__":
    leave(main)


# --- the backend's side ---------------------------------------------------------------------------


class ForkedProcess:
    """A replica the fork server started: the part of ``asyncio.subprocess.Process`` the local
    backend uses (pid, returncode, stdout, stderr, send_signal, kill, wait). Its exit status comes
    from the fork server, its parent; signals go through a pidfd, so never to a recycled pid."""

    def __init__(self, pid: int, stdout: asyncio.StreamReader, stderr: asyncio.StreamReader) -> None:
        self.pid = pid
        self.stdout = stdout
        self.stderr = stderr
        self.returncode: int | None = None
        self._exited = asyncio.Event()
        try:
            self._pidfd: int | None = os.pidfd_open(pid)
        except (OSError, AttributeError):  # gone already, or not Linux >= 5.3: plain kill then
            self._pidfd = None

    def send_signal(self, signum: int) -> None:
        if self.returncode is not None:
            raise ProcessLookupError(self.pid)
        if self._pidfd is not None:
            signal.pidfd_send_signal(self._pidfd, signum)
        else:
            os.kill(self.pid, signum)

    def terminate(self) -> None:
        self.send_signal(signal.SIGTERM)

    def kill(self) -> None:
        self.send_signal(signal.SIGKILL)

    async def wait(self) -> int:
        await self._exited.wait()
        assert self.returncode is not None
        return self.returncode

    def _exit(self, code: int) -> None:
        self.returncode = code
        if self._pidfd is not None:
            os.close(self._pidfd)
            self._pidfd = None
        self._exited.set()


class ForkServer:
    """The backend's handle on a fork server process: start it, fork replicas from it, stop it."""

    def __init__(self, env: dict[str, str], output_limit: int, profile: str = CPU) -> None:
        self.env = env
        self.output_limit = output_limit
        self.profile = profile
        self.ready = False
        self.gpu_forks = False  # whether it may fork GPU replicas: said when it is ready
        self._process: asyncio.subprocess.Process | None = None
        self._socket: socket.socket | None = None
        self._reader: asyncio.Task[None] | None = None
        self._replies: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self._children: dict[int, ForkedProcess] = {}
        self._early_exits: dict[int, int] = {}
        self._requests = 0
        self._ready = asyncio.Event()

    async def start(self) -> None:
        """Start the server; it is ``ready`` once its imports are done (about a second)."""
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        try:
            self._process = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "zeroserve.serving.forkserver",
                "--control-fd", str(theirs.fileno()), "--parent-pid", str(os.getpid()),
                "--preload", self.profile, pass_fds=(theirs.fileno(),), env=self.env, start_new_session=True,
                stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.DEVNULL,
            )
        finally:
            theirs.close()
        ours.setblocking(False)
        self._socket = ours
        self._reader = asyncio.create_task(self._read(), name="fork-server")

    async def _read(self) -> None:
        assert self._socket is not None
        loop = asyncio.get_running_loop()
        try:
            while True:
                data = await loop.sock_recv(self._socket, MAX_MESSAGE)
                if not data:
                    break
                message = json.loads(data)
                if message.get("ready"):
                    self.gpu_forks = bool(message.get("gpu_forks"))
                    self.ready = True
                    self._ready.set()
                elif "exited" in message:
                    child = self._children.pop(message["exited"], None)
                    if child is not None:
                        child._exit(message["code"])
                    else:  # it exited before spawn() saw its pid
                        self._early_exits[message["exited"]] = message["code"]
                elif message.get("id") in self._replies:
                    self._replies.pop(message["id"]).set_result(message)
        except (OSError, ValueError) as error:
            log.warning("the fork server stopped answering: %s", error)
        finally:
            self.ready = False
            for future in self._replies.values():
                future.cancel()
            # Its replicas die with it (their parent-death signal): say so once they are gone.
            for child in list(self._children.values()):
                asyncio.create_task(_await_exit(child))
            self._children.clear()

    async def wait_ready(self) -> None:
        """Until the server has done its imports (put a timeout around it)."""
        await self._ready.wait()

    async def spawn(self, argv: list[str], env: dict[str, str], listen_fd: int,
                    ready_fd: int | None = None, gpus: bool = False) -> ForkedProcess:
        """Fork a replica running ``python -m zeroserve.serving.runtimes.server *argv`` on ``listen_fd``
        (and ``--ready-fd`` on a copy of ``ready_fd``, if given); ``gpus``: one that will use a GPU
        (only where ``gpu_forks``)."""
        if not self.ready or self._socket is None:
            raise OSError("the fork server is not ready")
        loop = asyncio.get_running_loop()
        self._requests += 1
        request_id = self._requests
        reply: asyncio.Future[dict[str, Any]] = loop.create_future()
        self._replies[request_id] = reply
        out_r, out_w = os.pipe()
        err_r, err_w = os.pipe()
        try:
            payload = json.dumps({"id": request_id, "argv": argv, "env": env, "gpus": gpus}).encode()
            while True:
                try:
                    socket.send_fds(self._socket, [payload],
                                    [listen_fd, out_w, err_w, *([] if ready_fd is None else [ready_fd])])
                    break
                except BlockingIOError:
                    await asyncio.sleep(0.001)
        except BaseException:
            self._replies.pop(request_id, None)
            for fd in (out_r, err_r):
                os.close(fd)
            raise
        finally:
            os.close(out_w)
            os.close(err_w)
        try:
            async with asyncio.timeout(10):
                answer = await reply
        except BaseException:
            self._replies.pop(request_id, None)
            for fd in (out_r, err_r):
                os.close(fd)
            raise
        if "pid" not in answer:
            for fd in (out_r, err_r):
                os.close(fd)
            raise OSError(f"the fork server could not start a replica: {answer.get('error')}")
        stdout = await self._stream(out_r)
        stderr = await self._stream(err_r)
        child = ForkedProcess(answer["pid"], stdout, stderr)
        if child.pid in self._early_exits:
            child._exit(self._early_exits.pop(child.pid))
        else:
            self._children[child.pid] = child
        return child

    async def _stream(self, fd: int) -> asyncio.StreamReader:
        loop = asyncio.get_running_loop()
        reader = asyncio.StreamReader(limit=self.output_limit, loop=loop)
        await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader, loop=loop), os.fdopen(fd, "rb", 0))
        return reader

    async def close(self) -> None:
        if not self.ready and self._process is not None and self._process.returncode is None:
            # Still importing (torch's take seconds): it would read the end of its socket only after.
            # It has forked nothing yet; SIGTERM ends it at once.
            with contextlib.suppress(ProcessLookupError):
                self._process.terminate()
        self.ready = False
        if self._socket is not None:
            self._socket.close()  # the server reads end-of-file and exits
            self._socket = None
        if self._reader is not None:
            self._reader.cancel()
        if self._process is not None and self._process.returncode is None:
            try:
                async with asyncio.timeout(5):
                    await self._process.wait()
            except TimeoutError:
                self._process.kill()
                await self._process.wait()


async def _await_exit(child: ForkedProcess) -> None:
    """A replica whose fork server is gone: no exit status will come; wait until it is gone."""
    while True:
        try:
            os.kill(child.pid, 0)
        except ProcessLookupError:
            child._exit(-signal.SIGTERM)
            return
        await asyncio.sleep(0.1)
