"""zeroserve's model uploads (``POST /v2/uploads``, an extension: SAP's API has none): how a model
on a user's disk reaches a zeroserve that may only read its allowed roots. The body is a plain tar
of the model's files (``zeroserve deploy PATH`` and ``apply`` make it); it streams to disk, bounded
by ``upload_max_bytes`` (413 past it), is unpacked into ``<data_dir>/uploads/<group>/<sha256>``,
content addressed, so the same files are stored once and answered with the same ``file://`` URL,
and that URL is what an artifact is then registered with. Only regular files and directories
unpack (no links, devices, absolute paths or ``..``), into the caller's group's own directory,
which no other group's artifact may name (artifacts/uris.py). Uploads serve the local backend:
on a cluster a model goes to an object store (``ai://``, ``s3://``).
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import shutil
import tarfile
import uuid
from pathlib import Path, PurePosixPath
from typing import BinaryIO

from fastapi import APIRouter, Request
from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

from zeroserve.gateway.errors import ErrorAnswer, answers
from zeroserve.gateway.security import InGroup, PlatformDep

router = APIRouter(prefix="/v2")

TAR = "application/x-tar"
# Taken as well, and what the API's description names (tools that generate requests know it).
OCTETS = "application/octet-stream"
# Written to disk in pieces of about this size, each in a thread: the event loop never waits on the disk.
WRITE_CHUNK = 1 << 20


class Upload(BaseModel):
    """Where the uploaded files lie, as the ``file://`` URL to register an artifact with."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True)

    url: str = Field(description="file:// URL of the unpacked files, inside the group's uploads")
    digest: str = Field(description="sha256 of the tar uploaded: the same files, the same URL")
    size: int = Field(description="Bytes received")
    files: int = Field(description="Files unpacked")
    created: bool = Field(description="False: these files were uploaded before, and nothing was written")


def unpack(archive: BinaryIO, target: Path) -> int:
    """Unpack a plain tar into ``target`` (which must not exist), refusing anything but files and
    directories inside it; the number of files."""
    files = 0
    with tarfile.open(fileobj=archive, mode="r:") as tar:
        members = tar.getmembers()
        for member in members:
            name = PurePosixPath(member.name)
            if name.is_absolute() or ".." in name.parts or not (member.isfile() or member.isdir()):
                raise ValueError(f"{member.name!r} is not a plain file or directory inside the upload")
            files += member.isfile()
        tar.extractall(target, members=members, filter="data")
    return files


async def received(request: Request, partial: Path, limit: int) -> tuple[str, int]:
    """The body written to ``partial``: its sha256 and size, or 413 past ``limit`` bytes."""
    digest, size, pending = hashlib.sha256(), 0, bytearray()
    with partial.open("wb") as file:
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                raise ErrorAnswer(413, "UploadTooLarge", f"the upload is over {limit} bytes, the limit: the operator "
                                  "sets it with ZEROSERVE_UPLOAD_MAX_BYTES")
            digest.update(chunk)
            pending += chunk
            if len(pending) >= WRITE_CHUNK:
                await asyncio.to_thread(file.write, bytes(pending))
                pending.clear()
        await asyncio.to_thread(file.write, bytes(pending))
    return digest.hexdigest(), size


def placed(partial: Path, target: Path) -> int:
    """Unpack next to ``target`` and rename into place: a reader sees all the files or none."""
    unpacking = target.with_name(f".{target.name}.{uuid.uuid4().hex[:8]}")
    try:
        with partial.open("rb") as archive:
            files = unpack(archive, unpacking)
        try:
            os.rename(unpacking, target)
        except OSError:
            if not target.is_dir():  # not a twin upload that finished first
                raise
        return files
    finally:
        shutil.rmtree(unpacking, ignore_errors=True)


@router.post("/uploads", response_model=Upload, response_model_by_alias=True,
             summary="Upload a model (a tar of its files) into the group's uploads; register its URL as an artifact",
             responses=answers(400, 404, 413), openapi_extra={"requestBody": {
                 "required": True, "description": f"A plain tar of the model's files ({TAR} or {OCTETS})",
                 "content": {OCTETS: {"schema": {"type": "string", "format": "binary"}}}}})
async def upload(request: Request, scope: InGroup, platform: PlatformDep) -> Upload:
    settings = platform.settings
    if settings.backend != "local":
        raise ErrorAnswer(400, "UploadsNotServed", "uploads serve the local backend; on a cluster put the model in "
                          "an object store and register its ai:// or s3:// URL")
    if request.headers.get("content-type", "").split(";")[0].strip() not in (TAR, OCTETS):
        raise ErrorAnswer(400, "BadRequest", f"the body must be a plain tar ({TAR}) of the model's files")
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > settings.upload_max_bytes:
        raise ErrorAnswer(413, "UploadTooLarge", f"the upload is over {settings.upload_max_bytes} bytes, the limit: "
                          "the operator sets it with ZEROSERVE_UPLOAD_MAX_BYTES")
    own = settings.uploads_dir.resolve() / scope.group
    await asyncio.to_thread(own.mkdir, parents=True, exist_ok=True)
    partial = own / f".upload-{uuid.uuid4().hex}"
    try:
        digest, size = await received(request, partial, settings.upload_max_bytes)
        target = own / digest
        if target.is_dir():
            files = sum(1 for entry in target.rglob("*") if entry.is_file())
            return Upload(url=target.as_uri(), digest=digest, size=size, files=files, created=False)
        try:
            files = await asyncio.to_thread(placed, partial, target)
        except (tarfile.TarError, ValueError) as error:
            raise ErrorAnswer(400, "BadRequest", f"the upload is not a usable tar: {error}") from None
        return Upload(url=target.as_uri(), digest=digest, size=size, files=files, created=True)
    finally:
        await asyncio.to_thread(partial.unlink, missing_ok=True)
