"""The replica's side of a GPU running out of memory: how a runtime recognises it, and how it ends
the replica so that the backend can tell the user. A replica that ran out of GPU memory is not to be
trusted after (half-built batches, a fragmented allocator, CUDA state a failed kernel left), so it
says why in one line on stderr (``GpuOutOfMemory: <the library's message>``) and exits at once with
``EXIT_GPU_OUT_OF_MEMORY``; the backend turns that exit, before or after ready, into the
deployment's ``GpuOutOfMemory`` with the replica's last lines. Runtimes call
``exit_out_of_gpu_memory`` where an error would not reach KServe's app (a generation thread); the
replica's app and its model loading call it for everything else. Nothing here imports torch: a
runtime without it pays nothing.
"""

from __future__ import annotations

import contextlib
import os
import sys
from typing import NoReturn

# The replica's exit code when it ran out of GPU memory (server.py: 2 bad flags, 3 load failed).
EXIT_GPU_OUT_OF_MEMORY = 4
GPU_OUT_OF_MEMORY = "GpuOutOfMemory"
# What CUDA's and torch's allocators say when a device is full (older torch raised a RuntimeError).
_MESSAGES = ("CUDA out of memory", "CUDA error: out of memory")


def gpu_out_of_memory_in(error: BaseException | None) -> BaseException | None:
    """The GPU out-of-memory error in ``error`` or in what caused it (a library may wrap it), or None."""
    seen: set[int] = set()
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        kind = type(error)
        # torch.cuda.OutOfMemoryError is torch.OutOfMemoryError: named, so that torch is not imported.
        if kind.__name__ == "OutOfMemoryError" and kind.__module__.split(".")[0] == "torch":
            return error
        if any(message in str(error) for message in _MESSAGES):
            return error
        error = error.__cause__ or error.__context__
    return None


def is_gpu_out_of_memory(error: BaseException) -> bool:
    """Whether ``error`` (or what caused it) is a GPU running out of memory."""
    return gpu_out_of_memory_in(error) is not None


def describe(error: BaseException) -> str:
    """The out-of-memory error's own message, on one line."""
    found = gpu_out_of_memory_in(error) or error
    return " ".join(str(found).split()) or type(found).__name__


def exit_out_of_gpu_memory(error: BaseException) -> NoReturn:
    """Say ``GpuOutOfMemory: <message>`` on stderr and end the replica now, with ``EXIT_GPU_OUT_OF_MEMORY``.

    Safe from any thread: ``os._exit`` runs no cleanup that could wait on the broken one.
    """
    with contextlib.suppress(OSError, ValueError):  # a closed pipe: the exit code still says it
        sys.stdout.flush()
    with contextlib.suppress(OSError, ValueError):
        print(f"{GPU_OUT_OF_MEMORY}: {describe(error)}", file=sys.stderr, flush=True)
    os._exit(EXIT_GPU_OUT_OF_MEMORY)
