"""Object store secrets, AI Core's way to name where artifacts lie: an ``ai://<secret>/<path>`` URI
names a secret of the artifact's resource group, of type S3 (a bucket, a path prefix, an endpoint and
access keys) or local (a directory on this machine). S3 keys are handed to boto3 for one download and
never to the process environment, and botocore's request logs are scrubbed of them.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING
from urllib.parse import unquote, urlparse

from zeroserve.errors import ArtifactNotFound
from zeroserve.redaction import redact

if TYPE_CHECKING:
    from zeroserve.core.store import ObjectStoreSecret

# AI Core's artifact URLs: ai://<object store secret>/<path inside its bucket or directory>.
OBJECT_STORE_SCHEME = "ai"
# The object store secret types zeroserve can read: SAP's S3, and a directory on this machine.
S3 = "S3"
LOCAL = "local"
OBJECT_STORE_TYPES = (S3, LOCAL)
ACCESS_KEY_ID = "AWS_ACCESS_KEY_ID"
SECRET_ACCESS_KEY = "AWS_SECRET_ACCESS_KEY"
# SAP's objectStoreName: an RFC 1123 subdomain (the POST body's pattern).
OBJECT_STORE_NAME = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")


def object_store_of(uri: str) -> str | None:
    """The object store secret an ``ai://`` URI names; None for any other URI."""
    parsed = urlparse(uri)
    return parsed.netloc if parsed.scheme == OBJECT_STORE_SCHEME else None


def flag(value: str | None, default: bool) -> bool:
    """SAP's "0"/"1" string flags (verifyssl, usehttps); "false"/"true" read the same."""
    if value is None or value.strip() == "":
        return default
    return value.strip().lower() not in ("0", "false", "no")


@dataclass(frozen=True)
class S3Access:
    """How to reach one S3 object store: its keys stay out of repr, logs and events."""

    access_key_id: str = field(repr=False)
    secret_access_key: str = field(repr=False)
    endpoint_url: str | None = None
    region: str | None = None
    verify: bool = True

    def scrub(self, text: str) -> str:
        """``text`` with the keys cut out, for error messages built from what boto3 said."""
        for value in (self.secret_access_key, self.access_key_id):
            if value:
                text = text.replace(value, "***")
        return text

    @classmethod
    def of(cls, secret: ObjectStoreSecret) -> S3Access:
        endpoint = secret.endpoint
        if endpoint and "://" not in endpoint:
            # SAP gives a host name; usehttps says which scheme to put in front of it.
            endpoint = f"{'https' if flag(secret.usehttps, True) else 'http'}://{endpoint}"
        return cls(
            access_key_id=secret.data.get(ACCESS_KEY_ID, ""),
            secret_access_key=secret.data.get(SECRET_ACCESS_KEY, ""),
            endpoint_url=endpoint or None,
            region=secret.region or None,
            verify=flag(secret.verifyssl, True),
        )


class _NoCredentials(logging.Filter):
    """botocore logs each request at DEBUG with its headers and canonical form: the Authorization
    header names the access key (``Credential=<key id>/...``) and a session token would be there whole.
    Those parts are cut out of its records, whoever's keys they are."""

    _SECRET_PARTS = re.compile(
        r"(Credential=)[^/\s,&'\"]+"
        r"|('(?:X-Amz-Security-Token|x-amz-security-token)': b?')[^']*"
        r"|(x-amz-security-token:)\S+")

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        scrubbed = self._SECRET_PARTS.sub(lambda m: next(g for g in m.groups() if g) + "***", message)
        if scrubbed != message:
            record.msg, record.args = scrubbed, None
        return True


# Installed once, on import: before any download can log.
_NO_CREDENTIALS = _NoCredentials()
for _name in ("botocore.endpoint", "botocore.auth"):  # the two that log requests
    logging.getLogger(_name).addFilter(_NO_CREDENTIALS)


def download_s3(uri: str, access: S3Access, out_dir: Path) -> None:
    """Every object under an ``s3://bucket/key`` prefix (or the one object at it) into ``out_dir``.

    boto3 gets the keys as arguments: kserve-storage reads them from the process environment,
    where every other download (and every model server this process starts) would see them too.
    """
    import boto3
    from botocore.config import Config

    parsed = urlparse(uri)
    bucket, key = parsed.netloc, unquote(parsed.path).lstrip("/")
    client = boto3.session.Session().client(
        "s3",
        aws_access_key_id=access.access_key_id or None,
        aws_secret_access_key=access.secret_access_key or None,
        endpoint_url=access.endpoint_url,
        region_name=access.region,
        verify=access.verify,
        config=Config(connect_timeout=15, read_timeout=30, retries={"max_attempts": 3, "mode": "standard"}),
    )
    folder = key.rstrip("/") + "/" if key else ""
    fetched = 0
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=key):
        for entry in page.get("Contents", []):
            name = entry["Key"]
            if name == key:
                relative = PurePosixPath(name).name
            elif name.startswith(folder) and not name.endswith("/"):
                relative = name[len(folder):]
            else:  # models/iris2/... under the prefix models/iris: another artifact
                continue
            if any(part in ("..", ".", "") for part in relative.split("/")):
                raise ArtifactNotFound(f"object {name!r} in {redact(uri)} has a path that cannot be a file here")
            target = out_dir / relative
            target.parent.mkdir(parents=True, exist_ok=True)
            client.download_file(bucket, name, str(target))
            fetched += 1
    if not fetched:
        raise ArtifactNotFound(f"no objects at {redact(uri)}")
