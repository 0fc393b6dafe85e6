"""A model on this disk, made a URL zeroserve may read: the path (a directory, or one file) is packed
into a plain tar, the same bytes for the same files (sorted, no times or owners, links followed),
and uploaded into the group's uploads (``POST /v2/uploads``, gateway/uploads.py), which answers the
``file://`` URL to register the artifact with. The same files give the same URL, so ``apply`` finds
its artifact unchanged.
"""

from __future__ import annotations

import io
import tarfile
import tempfile
from pathlib import Path
from typing import IO

from zeroserve.cli.output import bad_input
from zeroserve.client import Client

# Where a URL, not a path, is given.
SCHEMES = ("file://", "s3://", "gs://", "https://", "http://", "hf://", "ai://")


def is_url(model: str) -> bool:
    return "://" in model


def local_path(model: str, base: Path | None = None) -> Path:
    """The path ``model`` names (relative to ``base``, else to this directory), or exit 2 if nothing is there."""
    path = Path(model).expanduser()
    if not path.is_absolute() and base is not None:
        path = base / path
    if not path.exists():
        raise bad_input(f"{model}: no such file or directory (give a path or a URL: {', '.join(SCHEMES)})")
    return path


def _entry(name: str, size: int = 0, directory: bool = False) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = tarfile.DIRTYPE if directory else tarfile.REGTYPE
    info.mode = 0o755 if directory else 0o644
    info.size = size
    info.mtime = 0  # the same files, the same bytes: uploads are content addressed
    return info


def pack(path: Path, into: IO[bytes]) -> None:
    """A plain tar of ``path``'s files (of ``path`` itself, if a file), reproducibly."""
    with tarfile.open(fileobj=into, mode="w:", format=tarfile.PAX_FORMAT) as tar:
        if path.is_file():
            tar.addfile(_entry(path.name, path.stat().st_size), path.open("rb"))
            return
        for entry in sorted(path.rglob("*")):
            name = entry.relative_to(path).as_posix()
            if entry.is_dir():
                tar.addfile(_entry(name, directory=True))
            elif entry.is_file():
                with entry.open("rb") as file:
                    tar.addfile(_entry(name, entry.stat().st_size), file)


def uploaded(zs: Client, path: Path) -> str:
    """Upload the model at ``path`` into the group's uploads: the ``file://`` URL to register."""
    with tempfile.TemporaryFile() as archive:
        pack(path, archive)
        archive.seek(0)
        answer = zs.upload(archive)
    return str(answer["url"])


def packed_bytes(path: Path) -> bytes:
    """The tar of ``pack`` in memory (tests compare two of them)."""
    buffer = io.BytesIO()
    pack(path, buffer)
    return buffer.getvalue()
