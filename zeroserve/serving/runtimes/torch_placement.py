"""Where a torch runtime's work goes in its replica, chosen in the replica and nowhere else (a fork
server that chose a device could not fork GPU replicas): the GPU when the backend gave the replica
one (``CUDA_VISIBLE_DEVICES`` not empty) and CUDA works, else the CPU; and as many threads as the
replica may use. Shared by the ``pytorch`` and ``huggingface`` runtimes.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import torch

CGROUP_CPU_MAX = Path("/sys/fs/cgroup/cpu.max")


def replica_device() -> torch.device:
    """``cuda`` when this replica was given GPUs and CUDA works, else ``cpu``. Asking CUDA loads
    NVIDIA's driver: done only where a GPU was given, so never in a fork server."""
    if os.environ.get("CUDA_VISIBLE_DEVICES", "").strip() and torch.cuda.is_available():
        return torch.device("cuda")
    return torch.device("cpu")


def replica_threads() -> int:
    """The threads torch should use here: the plan's count the backend sets (``OMP_NUM_THREADS``; a
    fork's torch, imported by its parent, no longer reads it), else the CPUs this process may use,
    bounded by a cgroup v2 CPU quota where there is one: more threads than that only wait."""
    planned = os.environ.get("OMP_NUM_THREADS", "")
    if planned.isdigit() and int(planned) > 0:
        return int(planned)
    cpus = len(os.sched_getaffinity(0))
    try:
        quota, period = CGROUP_CPU_MAX.read_text().split()[:2]
        if quota != "max":
            cpus = min(cpus, math.ceil(int(quota) / int(period)))
    except (OSError, ValueError):  # no cgroup v2 here, or not readable: the affinity is the bound
        pass
    return max(cpus, 1)


def use_replica_threads() -> None:
    torch.set_num_threads(replica_threads())
