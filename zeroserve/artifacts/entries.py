"""The model cache's entries on disk, and which of them make room. An entry is a directory that
holds one staged artifact and a marker file, ``.zeroserve-staged``, written last, before the
directory is renamed into place: a directory without it (a download that crashed, an eviction cut
short) never counts as staged, and is swept. The marker says what the entry holds (its URI, with
credentials cut, and its bytes: files only, a link to a ``file://`` artifact's files takes no room)
and its modification time is when the entry was last used. Everything here blocks: callers run it
in a thread.
"""

from __future__ import annotations

import json
import os
import shutil
import stat
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

COMPLETE = ".zeroserve-staged"
# Directories being filled: never an entry, and swept when no staging of this process owns them.
PARTIAL = ".partial"


@dataclass(frozen=True)
class Entry:
    """One staged artifact in the cache: where, what, how many bytes, and when it was last used."""

    path: Path
    uri: str
    bytes: int
    used_ns: int


def size_of(directory: Path) -> int:
    """The bytes of the regular files under ``directory``; links (to a local artifact's files) count nothing."""
    total = 0
    for folder, _, files in os.walk(directory):
        for name in files:
            status = os.lstat(os.path.join(folder, name))
            if stat.S_ISREG(status.st_mode):
                total += status.st_size
    return total


def mark_complete(directory: Path, uri: str, size: int) -> None:
    (directory / COMPLETE).write_text(json.dumps({"uri": uri, "bytes": size}))
    touch(directory)


def touch(entry: Path) -> bool:
    """Record a use of the entry (its place in the least-recently-used order); False if it is not staged."""
    now = time.time_ns()  # the clock's own resolution: the file system's coarse one would tie close uses
    try:
        os.utime(entry / COMPLETE, ns=(now, now))
    except FileNotFoundError:
        return False
    return True


def read_entry(path: Path) -> Entry | None:
    marker = path / COMPLETE
    try:
        used_ns = marker.stat().st_mtime_ns
        said = json.loads(marker.read_text() or "{}")
    except FileNotFoundError:
        return None
    except ValueError:  # a marker of an older zeroserve (empty) or cut short: what it holds is measured
        said = {}
    size = said.get("bytes")
    if not isinstance(size, int):
        size = size_of(path)
    return Entry(path=path, uri=str(said.get("uri", path.name)), bytes=size, used_ns=used_ns)


def read_entries(root: Path, staging: Iterable[Path] = ()) -> list[Entry]:
    """The staged entries under ``root``; what is neither staged nor being staged (``staging``) is removed."""
    if not root.is_dir():
        return []
    entries = []
    busy = set(staging)
    for path in root.iterdir():
        if not path.is_dir() or path in busy:
            continue
        entry = read_entry(path)
        if entry is not None:
            entries.append(entry)
        else:  # left by a crash: a download or an eviction cut short
            shutil.rmtree(path, ignore_errors=True)
    return entries


def remove(entry: Path) -> None:
    """Evict an entry: its marker first, so that a removal cut short never leaves something that counts as staged."""
    (entry / COMPLETE).unlink(missing_ok=True)
    shutil.rmtree(entry, ignore_errors=True)


def least_recently_used(entries: Iterable[Entry], in_use: set[Path], excess: int) -> list[Entry] | None:
    """The entries to evict to free ``excess`` bytes, least recently used first, never one ``in_use``
    (nor one that frees nothing); None if even all of those would not free enough."""
    if excess <= 0:
        return []
    chosen: list[Entry] = []
    for entry in sorted(entries, key=lambda e: e.used_ns):
        if entry.path in in_use or entry.bytes == 0:
            continue
        chosen.append(entry)
        excess -= entry.bytes
        if excess <= 0:
            return chosen
    return None
