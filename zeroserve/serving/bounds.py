"""A replica's share of this machine: its resource plan's CPU and memory (the InferenceService's
predictor limits), held on one machine as near to a cluster's container limits as the machine allows
without privileges:

- CPU: the replica runs on ``ceil(cpu)`` cores (``sched_setaffinity``, every thread), and its
  libraries start that many threads (``OMP_NUM_THREADS``, ``MKL_NUM_THREADS``,
  ``OPENBLAS_NUM_THREADS``; the replica sets torch's count too; a library the fork server loaded
  before keeps its own count, on those cores). A plan with at least as many cores
  as the machine has runs on all of them. A cluster's CFS quota is a share of time, not cores: a
  plan of 0.5 CPU gets a whole core here.
- Memory: a watch reads the replica's own resident memory (its private pages: what a cgroup would
  charge it, not the pages it shares with the fork server) every ``MEMORY_POLL_S``, and stops the
  replica (SIGKILL, as the kernel's OOM killer would) once it passes the plan's memory. The
  deployment is then DEAD with ``MemoryLimitExceeded``. An allocation faster than the poll can pass
  the limit for that long; processes the replica starts are not counted.

A cgroup would hold both exactly, but on this kind of machine it needs delegation (cgroup v2 with
the memory and cpu controllers handed to zeroserve's own cgroup), which a user session rarely has;
see docs/models.md. ``Settings.replica_limits`` turns the local bounds off.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

# How often a replica's memory is read: a read costs about 0.1 ms for a small process, a few ms for
# one of many GB (the kernel walks its page tables), in a thread.
MEMORY_POLL_S = 0.25
_QUANTITY = re.compile(r"^\s*([+]?[0-9.]+(?:[eE][+-]?[0-9]+)?)\s*([KMGTPE]i|[numkMGTPE])?\s*$")
_SCALE = {None: 1.0, "n": 1e-9, "u": 1e-6, "m": 1e-3, "k": 1e3, "M": 1e6, "G": 1e9, "T": 1e12, "P": 1e15,
          "E": 1e18, "Ki": 2.0**10, "Mi": 2.0**20, "Gi": 2.0**30, "Ti": 2.0**40, "Pi": 2.0**50, "Ei": 2.0**60}
THREAD_VARIABLES = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")


def quantity(text: object) -> float:
    """A Kubernetes quantity ("500m", "3", "10G", "3Gi") as a number; ValueError if it is none."""
    found = _QUANTITY.match(str(text))
    if found is None:
        raise ValueError(f"not a quantity: {text!r}")
    return float(found[1]) * _SCALE[found[2]]


@dataclass(frozen=True)
class ReplicaBounds:
    """The CPU (cores) and memory (bytes) one replica may use; None: unbounded."""

    cpu: float | None = None
    memory: int | None = None

    @classmethod
    def from_limits(cls, limits: Mapping[str, object]) -> ReplicaBounds:
        """The bounds of a container's ``resources.limits``."""
        cpu, memory = limits.get("cpu"), limits.get("memory")
        return cls(cpu=None if cpu is None else quantity(cpu),
                   memory=None if memory is None else int(quantity(memory)))

    @property
    def cores(self) -> int | None:
        """How many of this machine's cores the replica runs on; None: all of them."""
        if self.cpu is None:
            return None
        machine = len(os.sched_getaffinity(0))
        wanted = max(math.ceil(self.cpu), 1)
        return wanted if wanted < machine else None

    def environment(self) -> dict[str, str]:
        """What the replica's libraries read for their thread counts: one per core it may use."""
        if self.cpu is None:
            return {}
        threads = str(self.cores or len(os.sched_getaffinity(0)))
        return dict.fromkeys(THREAD_VARIABLES, threads)

    def placement(self, number: int) -> set[int] | None:
        """The cores replica ``number`` runs on: the plan's count, the next ones in turn, so that
        replicas started one after another spread over the machine; None: all of them."""
        count = self.cores
        if count is None:
            return None
        allowed = sorted(os.sched_getaffinity(0))
        first = (number - 1) * count
        return {allowed[(first + offset) % len(allowed)] for offset in range(count)}

    def pin(self, pid: int, number: int) -> None:
        """Put every thread of process ``pid`` on replica ``number``'s cores (threads it starts later
        inherit them). A process already gone is left alone."""
        cores = self.placement(number)
        if cores is None:
            return
        pinned: set[str] = set()
        with contextlib.suppress(ProcessLookupError, FileNotFoundError):
            while True:  # until no thread is new: one may start another while they are listed
                threads = set(os.listdir(f"/proc/{pid}/task")) - pinned
                if not threads:
                    return
                for thread in threads:
                    with contextlib.suppress(ProcessLookupError):
                        os.sched_setaffinity(int(thread), cores)
                pinned |= threads


class Watched(Protocol):
    """The part of a replica's process the memory watch uses."""

    @property
    def pid(self) -> int: ...

    @property
    def returncode(self) -> int | None: ...

    async def wait(self) -> int: ...


def private_memory(pid: int) -> int:
    """Bytes of resident memory that only process ``pid`` maps (its own anonymous and file pages);
    0 once it is gone."""
    try:
        text = Path(f"/proc/{pid}/smaps_rollup").read_text()
    except OSError:  # gone (not found, no such process), or the read failed: nothing to measure this time
        return 0
    total = 0
    for line in text.splitlines():
        if line.startswith(("Private_Clean:", "Private_Dirty:")):
            total += int(line.split()[1]) * 1024
    return total


async def memory_passed(process: Watched, limit: int, interval: float = MEMORY_POLL_S) -> int | None:
    """Watch ``process`` until its private memory passes ``limit`` (returns what it used then) or it
    exits (returns None). Reads happen in a thread: a large process takes the kernel milliseconds."""
    exited = asyncio.ensure_future(process.wait())
    try:
        while not exited.done():
            used = await asyncio.to_thread(private_memory, process.pid)
            if used > limit and process.returncode is None:
                return used
            await asyncio.wait((exited,), timeout=interval)
        return None
    finally:
        exited.cancel()
