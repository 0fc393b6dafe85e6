"""Child processes that end with their parent: replicas, the fork server and the embedded nats-server.

zeroserve starts processes of its own, and none of them may outlive it: a model server left behind
holds its memory and its port, a nats-server left behind holds the JetStream directory.
``die_with_parent`` asks Linux to signal a child when its parent goes (``PR_SET_PDEATHSIG``), and
leaves at once if the parent is already gone; ``leave`` ends a child without the interpreter's
teardown, which the parent would wait for. It imports only the standard library, so that the
runtimes and the framework can both use it.
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys
import traceback
from collections.abc import Callable
from typing import NoReturn

_PR_SET_PDEATHSIG = 1


def die_with_parent(parent_pid: int | None) -> None:
    """Ask Linux to SIGTERM this process when its parent goes, and leave if it has already gone.

    The kernel signals when the *thread* that forked this process exits: the parent must spawn
    replicas from a long-lived thread (its event loop), not from a short-lived worker thread.
    """
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
    # A parent that died before prctl took effect sent nothing: we have been re-parented.
    if parent_pid is not None and os.getppid() != parent_pid:
        sys.exit(0)


def leave(run: Callable[[], int]) -> NoReturn:
    """Run ``run`` and exit with its code (or a ``SystemExit``'s) through ``os._exit``, once stdout and
    stderr are flushed. The interpreter's own teardown is skipped: with torch imported it takes about
    0.8 s (measured), which whoever stops the process waits out, and a replica or fork server has
    nothing to tidy that the kernel does not (sockets, pipes, memory)."""
    code = 1
    try:
        code = run()
    except SystemExit as stop:
        if isinstance(stop.code, int) or stop.code is None:
            code = stop.code or 0
        else:  # a message: said on stderr, as Python says it
            print(stop.code, file=sys.stderr)
    except BaseException:  # noqa: BLE001 - said on stderr as Python would, then the exit
        traceback.print_exc()
    finally:
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except (OSError, ValueError):  # a closed pipe: nothing more to say anyway
                pass
        os._exit(code)
