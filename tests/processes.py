"""The processes of a zeroserve, as the operating system sees them (read from /proc)."""

from __future__ import annotations

import contextlib
import os
import signal
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Process:
    pid: int
    parent: int
    cmdline: str


def processes() -> dict[int, Process]:
    """Every live process (zombies left out: they are gone, whatever their parent has not read yet)."""
    found = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        state, parent = stat.rsplit(")", 1)[1].split()[:2]
        if state != "Z":
            found[int(entry.name)] = Process(int(entry.name), int(parent), cmdline)
    return found


def descendants(root: int) -> list[int]:
    """The pids of every process below ``root`` (children, theirs, ...), whatever session they are in."""
    table = processes()
    children: dict[int, list[int]] = {}
    for process in table.values():
        children.setdefault(process.parent, []).append(process.pid)
    found, queue = [], list(children.get(root, []))
    while queue:
        pid = queue.pop()
        found.append(pid)
        queue.extend(children.get(pid, []))
    return found


def replica_pids(root: int) -> list[int]:
    """Model-server processes of the zeroserve with pid ``root``: spawned by it, or forked by its fork
    server (a child of it that forks the replicas)."""
    table = processes()
    fork_servers = {p.pid for p in table.values()
                    if p.parent == root and "zeroserve.serving.forkserver" in p.cmdline}
    return sorted(p.pid for p in table.values()
                  if (p.parent == root and "zeroserve.serving.runtimes.server" in p.cmdline)
                  or p.parent in fork_servers)


def kill_tree(root: int) -> int:
    """SIGKILL ``root`` and everything below it at once, as a power cut would; the number killed.

    Every process is stopped first (listing again until no new one appears), so that none can start
    another, or notice the others dying and clean up, before the kill.
    """
    stopped: set[int] = set()
    while new := {root, *descendants(root)} - stopped:
        for pid in new:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGSTOP)
        stopped |= new
    for pid in stopped:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    return len(stopped)


def with_environment(name: str, value: str) -> list[int]:
    """Every process whose environment has ``name=value``: what a zeroserve started, orphans included
    (a process whose parent died is adopted by init, but keeps the environment it inherited)."""
    wanted = f"{name}={value}".encode()
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                if wanted in (entry / "environ").read_bytes().split(b"\0"):
                    found.append(int(entry.name))
    return [pid for pid in found if pid in processes()]
