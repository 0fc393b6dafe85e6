"""SAP AI API's object store secrets (``/v2/admin/objectStoreSecrets``): where ``ai://`` artifact URLs lead.

A secret belongs to the group of the ``AI-Resource-Group`` header and is what ``ai://<name>/<path>``
artifact URLs resolve through: SAP's ``S3``, and zeroserve's ``local`` (a directory on this
machine, inside the allowed file roots). A secret's ``data`` (the access keys) goes into the store
and nowhere else: no response, log line or event carries it.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Path
from pydantic import Field

from zeroserve.api import records
from zeroserve.artifacts.object_stores import (
    ACCESS_KEY_ID,
    LOCAL,
    OBJECT_STORE_NAME,
    OBJECT_STORE_TYPES,
    S3,
    SECRET_ACCESS_KEY,
)
from zeroserve.core.store import ObjectStoreSecret, Store, now
from zeroserve.errors import ZeroserveError
from zeroserve.gateway.errors import ErrorAnswer, answers, not_found
from zeroserve.gateway.listing import AdminCount, AdminSkip, AdminTop, listing, page
from zeroserve.gateway.params import ApiBody
from zeroserve.gateway.routing import Router
from zeroserve.gateway.security import InGroup, PlatformDep
from zeroserve.platform import Platform

router = Router(prefix="/v2/admin")

SecretName = Annotated[str, Path(alias="objectStoreName", pattern=r"^[a-zA-Z0-9\.\-_]+$")]


class ObjectStoreSecretData(ApiBody):
    """SAP's BckndobjectStoreSecretWithSensitiveDataRequest; type ``local`` is zeroserve's own."""

    name: Annotated[str, Field(max_length=233, pattern=OBJECT_STORE_NAME.pattern,
                               description="An RFC 1123 subdomain: lower-case letters, digits, '-' and '.'")]
    type: str = Field(pattern=r"^([sS]3|[lL][oO][cC][aA][lL])$",
                      description="S3, or local (a directory on this machine: pathPrefix), in any case")
    bucket: str | None = None
    endpoint: str | None = None
    region: str | None = None
    path_prefix: str | None = None
    verifyssl: str | None = None
    usehttps: str | None = "1"
    data: dict[str, str]


def secret_record(
    platform: Platform, group: str, body: ObjectStoreSecretData, created: ObjectStoreSecret | None,
) -> ObjectStoreSecret:
    """The record of a valid secret, or a 400 that names the field that is not."""
    kind = {t.lower(): t for t in OBJECT_STORE_TYPES}.get(body.type.lower())
    if kind is None:
        raise ErrorAnswer(400, "BadRequest", f"body.type: zeroserve reads object stores of type "
                       f"{' or '.join(OBJECT_STORE_TYPES)}, not {body.type!r}")
    path_prefix = body.path_prefix
    if kind == S3:
        if not body.bucket:
            raise ErrorAnswer(400, "BadRequest", "body.bucket: an S3 object store needs a bucket")
        missing = [key for key in (ACCESS_KEY_ID, SECRET_ACCESS_KEY) if not body.data.get(key)]
        if missing:
            raise ErrorAnswer(400, "BadRequest", f"body.data: an S3 object store needs {' and '.join(missing)}")
    if kind == LOCAL:
        if not path_prefix:
            raise ErrorAnswer(400, "BadRequest", "body.pathPrefix: a local object store needs the absolute path "
                           "of its directory")
        try:
            directory = platform.models.local_directory(path_prefix)
        except ZeroserveError as refused:
            raise ErrorAnswer(400, "BadRequest", f"body.pathPrefix: {refused.message}") from None
        if not directory.is_dir():
            raise ErrorAnswer(400, "BadRequest", f"body.pathPrefix: {path_prefix} is not a directory")
    return ObjectStoreSecret(
        name=body.name, group=group, type=kind, bucket=body.bucket, endpoint=body.endpoint, region=body.region,
        path_prefix=path_prefix, verifyssl=body.verifyssl, usehttps=body.usehttps, data=dict(body.data),
        created_at=created.created_at if created else now(),
    )


def secret_view(secret: ObjectStoreSecret) -> dict[str, Any]:
    # SAP's metadata annotations; data is left out by construction, not by filtering.
    metadata = {
        "storage.ai.sap.com/type": secret.type,
        "storage.ai.sap.com/bucket": secret.bucket,
        "storage.ai.sap.com/endpoint": secret.endpoint,
        "storage.ai.sap.com/region": secret.region,
        "storage.ai.sap.com/pathPrefix": secret.path_prefix,
        "serving.kubeflow.org/s3-endpoint": secret.endpoint if secret.type == S3 else None,
        "serving.kubeflow.org/s3-region": secret.region if secret.type == S3 else None,
        "serving.kubeflow.org/s3-usehttps": secret.usehttps if secret.type == S3 else None,
        "serving.kubeflow.org/s3-verifyssl": secret.verifyssl if secret.type == S3 else None,
    }
    return {"name": secret.name, "metadata": {key: value for key, value in metadata.items() if value is not None}}


async def existing_secret(store: Store, group: str, name: str) -> ObjectStoreSecret:
    # A name create_secret refuses names no secret, and the store's keys cannot hold every one ("a.").
    secret = await store.object_store_secrets.get(group, name) if OBJECT_STORE_NAME.fullmatch(name) else None
    if secret is None:
        raise not_found(f"object store secret {name} not found")
    return secret


@router.post("/objectStoreSecrets", status_code=202, response_model=records.Message,
             summary="Create an object store secret of the resource group: S3, or local (a directory here)",
             responses=answers(404, 409))
async def create_secret(scope: InGroup, body: ObjectStoreSecretData, platform: PlatformDep) -> dict[str, Any]:
    if not OBJECT_STORE_NAME.fullmatch(body.name):
        raise ErrorAnswer(400, "BadRequest", f"body.name: {body.name[:80]!r} must be lower-case letters, digits, "
                       "'-' and '.' (an RFC 1123 subdomain)")
    secret = secret_record(platform, scope.group, body, None)

    def create(current: ObjectStoreSecret | None) -> ObjectStoreSecret:
        if current is not None:
            raise ErrorAnswer(409, "Conflict", f"object store secret {body.name} already exists")
        return secret

    await platform.store.object_store_secrets.update(scope.group, body.name, create)
    return {"message": "Secret has been created"}


@router.get("/objectStoreSecrets", response_model=records.ObjectStoreSecretList,
            summary="Object store secrets of the resource group (never their data)",
            responses=answers(404))
async def list_secrets(
    scope: InGroup, platform: PlatformDep, top: AdminTop = None, skip: AdminSkip = 0, count: AdminCount = False,
) -> dict[str, Any]:
    secrets = sorted(await platform.store.object_store_secrets.list(scope.group), key=lambda s: s.name)
    shown = page(secrets, len(secrets) if top is None else top, skip)
    return listing([secret_view(s) for s in shown], count=len(secrets) if count else len(shown))


@router.get("/objectStoreSecrets/{objectStoreName}", response_model=records.ObjectStoreSecret,
            summary="One object store secret (never its data)",
            responses=answers(404))
async def get_secret(scope: InGroup, name: SecretName, platform: PlatformDep) -> dict[str, Any]:
    return secret_view(await existing_secret(platform.store, scope.group, name))


@router.patch("/objectStoreSecrets/{objectStoreName}", status_code=202, response_model=records.Created,
              summary="Replace an object store secret (the body is the whole secret, data included)",
              responses=answers(404))
async def update_secret(
    scope: InGroup, name: SecretName, body: ObjectStoreSecretData, platform: PlatformDep,
) -> dict[str, Any]:
    if body.name != name:
        raise ErrorAnswer(400, "BadRequest", f"body.name: {body.name[:80]!r} differs from the secret's name {name}")
    await existing_secret(platform.store, scope.group, name)

    def replace(current: ObjectStoreSecret | None) -> ObjectStoreSecret:
        if current is None:
            raise not_found(f"object store secret {name} not found")
        return secret_record(platform, scope.group, body, current)

    await platform.store.object_store_secrets.update(scope.group, name, replace)
    return {"id": name, "message": "Secret has been modified"}


@router.delete("/objectStoreSecrets/{objectStoreName}", status_code=202, response_model=records.Created,
               summary="Delete an object store secret",
               responses=answers(404))
async def delete_secret(scope: InGroup, name: SecretName, platform: PlatformDep) -> dict[str, Any]:
    await existing_secret(platform.store, scope.group, name)
    await platform.store.object_store_secrets.delete(scope.group, name)
    return {"id": name, "message": "Object Store Secret has been deleted"}
