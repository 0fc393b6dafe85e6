"""The registries: artifacts and deployments, in JetStream key-value buckets.

A record is a pydantic model stored as JSON under ``<group>.<id>``. Every change is a
compare-and-set on the revision the change was computed from, so two writers never silently
overwrite each other: the loser reads again and re-applies its change. The deployment record is
the projection of the deployment's status events (``deployments.lifecycle.project``) plus the request that
created it, so it can be rebuilt from the events stream.
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, Generic, Literal, TypeVar

from nats.js import JetStreamContext
from nats.js.api import KeyValueConfig, StorageType
from nats.js.errors import BucketNotFoundError, KeyNotFoundError, KeyWrongLastSequenceError
from nats.js.kv import KeyValue
from pydantic import BaseModel, Field

from zeroserve.core.bus import replicas_current, stream_refusal
from zeroserve.events import ArtifactBinding, DeploymentStatus, Label, Metric, ParameterBinding, Status

R = TypeVar("R", bound=BaseModel)


def now() -> datetime:
    return datetime.now(UTC)


class Origin(BaseModel):
    """How an artifact was registered: through the API, by an event, or by a webhook, with what the
    registration said of where the model came from (the run and parameters that produced it)."""

    via: Literal["api", "event", "webhook"]
    source: str
    event_id: str | None = None
    subject: str | None = None
    webhook: str | None = None
    run: str | None = None
    parameters: dict[str, str | int | float | bool] = Field(default_factory=dict)


class Tracked(BaseModel):
    """A name and a value of SAP's tracking API (a tag, a custom info), written with ``PATCH /v2/lm/metrics``."""

    name: str
    value: str


class Artifact(BaseModel):
    id: str
    group: str
    name: str
    kind: str = "model"
    url: str
    scenario_id: str | None = None
    description: str | None = None
    labels: list[Label] = Field(default_factory=list)
    metrics: list[Metric] = Field(default_factory=list)
    # What PATCH /v2/lm/metrics wrote beside the metrics.
    tags: list[Tracked] = Field(default_factory=list)
    custom_info: list[Tracked] = Field(default_factory=list)
    origin: Origin | None = None
    # registered -> staged (the files are in the local model cache) or rejected.
    status: str = "registered"
    reason: str | None = None
    message: str | None = None
    local_path: str | None = None
    created_at: datetime = Field(default_factory=now)
    modified_at: datetime = Field(default_factory=now)


class Deployment(BaseModel):
    id: str
    group: str
    # What was asked for: the latest deployment.requested.
    executable_id: str
    configuration_id: str | None = None
    scenario_id: str | None = None
    parameters: dict[str, str] = Field(default_factory=dict)
    input_artifacts: dict[str, str] = Field(default_factory=dict)
    ttl: str | None = None
    inference_service: dict[str, Any] | None = None
    # Stream sequence of the last requested/stopped event acted on: older redeliveries change nothing.
    sequence: int = 0
    # Where it is: the fold of its status events.
    status: Status = Status.UNKNOWN
    target_status: str | None = "RUNNING"
    reason: str | None = None
    message: str | None = None
    deployment_url: str | None = None
    # Where the backend serves it, when that is not this process (a KServe URL on a cluster).
    backend_url: str | None = None
    running_replicas: int = 0
    min_replicas: int | None = None
    max_replicas: int | None = None
    resource_plan: str | None = None
    # SAP's bookkeeping: CREATE, UPDATE (a stop or a new configuration) or DELETE, and the
    # configuration that served before an update (for a manual rollback if the new one dies).
    last_operation: str | None = None
    latest_running_configuration_id: str | None = None
    created_at: datetime = Field(default_factory=now)
    modified_at: datetime = Field(default_factory=now)
    status_changed_at: datetime = Field(default_factory=now)
    # SAP's submissionTime (handed to the backend: PENDING), startTime (RUNNING) and
    # completionTime (STOPPED or DEAD).
    submitted_at: datetime | None = None
    started_at: datetime | None = None
    completed_at: datetime | None = None

    def status_event(self, **overrides: Any) -> DeploymentStatus:
        """The status event that announces this record as it is now."""
        fields = {name: getattr(self, name) for name in DeploymentStatus.model_fields if hasattr(self, name)}
        return DeploymentStatus(**{**fields, **overrides})


class Configuration(BaseModel):
    """SAP's configuration: an executable (serving template) with its parameter and artifact bindings."""

    id: str
    group: str
    name: str
    executable_id: str
    scenario_id: str
    parameter_bindings: list[ParameterBinding] = Field(default_factory=list)
    input_artifact_bindings: list[ArtifactBinding] = Field(default_factory=list)
    created_at: datetime = Field(default_factory=now)


class ResourceGroup(BaseModel):
    id: str
    labels: list[Label] = Field(default_factory=list)
    created_at: datetime = Field(default_factory=now)


class ObjectStoreSecret(BaseModel):
    """Where ``ai://<name>/<path>`` artifact URLs point: an S3 bucket (with credentials) or a local directory."""

    name: str
    group: str
    type: str
    bucket: str | None = None
    endpoint: str | None = None
    region: str | None = None
    path_prefix: str | None = None
    verifyssl: str | None = None
    usehttps: str | None = None
    # The sensitive part (access keys); never returned by the API, never logged.
    data: dict[str, str] = Field(default_factory=dict, repr=False)
    created_at: datetime = Field(default_factory=now)
    modified_at: datetime = Field(default_factory=now)


class RegisteredClient(BaseModel):
    """An API client: its secret is kept only as a salted scrypt hash."""

    id: str
    secret_hash: str
    groups: list[str]
    name: str | None = None
    created_at: datetime = Field(default_factory=now)


class Subscription(BaseModel):
    """Deliver a group's events of these types to a URL, signed with Standard Webhooks."""

    id: str
    group: str
    url: str
    event_types: list[str]
    # The signing secret (``whsec_...``): kept as is, since every delivery is signed with it.
    secret: str
    description: str | None = None
    created_at: datetime = Field(default_factory=now)


class Delivery(BaseModel):
    """The outcome of one event's delivery to a subscription, after its last attempt."""

    at: datetime
    event_id: str
    event_type: str
    delivered: bool
    # The receiver's last HTTP status, or why no answer came (a refused address, a timeout).
    status: int | None = None
    error: str | None = None
    attempts: int
    duration_ms: int


class Deliveries(BaseModel):
    """A subscription's latest deliveries, newest first, at most ``LAST_DELIVERIES``."""

    deliveries: list[Delivery] = Field(default_factory=list)


LAST_DELIVERIES = 20


class Conflict(Exception):
    """Another writer changed the record between our read and our write."""


class Registry(Generic[R]):
    """One KV bucket of records of one kind."""

    # How many records this process wrote last it remembers (key -> JSON and revision): the next change
    # of one of them is written without reading it first. About 3 kB each, deployments included.
    WRITTEN = 1024

    def __init__(self, js: JetStreamContext, bucket: str, kv: KeyValue, model: type[R]) -> None:
        self.js = js
        self.bucket = bucket
        self.kv = kv
        self.model = model
        self._written: OrderedDict[str, tuple[bytes, int]] = OrderedDict()

    def _remember(self, key: str, data: bytes, revision: int) -> None:
        self._written[key] = (data, revision)
        self._written.move_to_end(key)
        if len(self._written) > self.WRITTEN:
            self._written.popitem(last=False)

    @staticmethod
    def key(group: str, id: str) -> str:
        return f"{group}.{id}"

    async def get(self, group: str, id: str) -> R | None:
        found = await self._get(group, id)
        return found[0] if found else None

    async def _get(self, group: str, id: str) -> tuple[R, int] | None:
        try:
            entry = await self.kv.get(self.key(group, id))
        except KeyNotFoundError:  # also raised for a deleted key
            return None
        if entry.value is None or entry.revision is None:
            return None
        return self.model.model_validate_json(entry.value), entry.revision

    async def put(self, group: str, id: str, record: R) -> None:
        self._written.pop(self.key(group, id), None)
        await self.kv.put(self.key(group, id), record.model_dump_json().encode())

    async def create(self, group: str, id: str, record: R) -> tuple[R, bool]:
        """``record`` stored under a key that holds none (a deleted key counts as none): (it, True); else
        the record that is there, untouched: (that, False)."""
        key, data = self.key(group, id), record.model_dump_json().encode()
        for _ in range(20):
            try:
                revision = await self.kv.create(key, data)  # also over a deleted key
            except KeyWrongLastSequenceError:
                found = await self._get(group, id)
                if found is None:  # deleted in between: try again
                    continue
                return found[0], False
            self._remember(key, data, revision)
            return record, True
        raise Conflict(f"{group}/{id} kept changing under 20 attempts")

    async def update(self, group: str, id: str, change: Callable[[R | None], R | None], attempts: int = 20) -> R | None:
        """Compare-and-set: apply ``change`` to the current record until no one else wrote in between.

        ``change`` gets ``None`` when there is no record; it returns the new record, or ``None``
        to leave things as they are. Exceptions from ``change`` propagate untouched.

        A record this process wrote last is changed without a read first: the compare-and-set proves
        it current. Only a written change counts as that proof: a refusal or "nothing to change"
        computed from it is computed again from a fresh read.
        """
        key = self.key(group, id)
        remembered = self._written.pop(key, None)
        if remembered is not None:
            try:
                updated = change(self.model.model_validate_json(remembered[0]))
            except Exception:  # noqa: BLE001 (judged on a copy that may be old: judged again below, on a read)
                updated = None
            if updated is not None:
                data = updated.model_dump_json().encode()
                try:
                    self._remember(key, data, await self.kv.update(key, data, last=remembered[1]))
                    return updated
                except KeyWrongLastSequenceError:
                    pass  # someone else wrote since: read it
        for _ in range(attempts):
            found = await self._get(group, id)
            current, revision = found if found else (None, 0)
            updated = change(current)
            if updated is None:
                return current
            data = updated.model_dump_json().encode()
            try:
                if revision:
                    written = await self.kv.update(key, data, last=revision)
                else:
                    # create() also succeeds over a deleted key, as a re-created deployment needs.
                    written = await self.kv.create(key, data)
            except KeyWrongLastSequenceError:
                continue
            self._remember(key, data, written)
            return updated
        raise Conflict(f"{group}/{id} kept changing under {attempts} attempts")

    async def delete(self, group: str, id: str) -> None:
        self._written.pop(self.key(group, id), None)
        await self.kv.delete(self.key(group, id))

    async def list(self, group: str | None = None) -> list[R]:
        """Every record, or every record of one group.

        The keys are read from the bucket's stream (its per-subject counts), not with ``kv.keys()``:
        nats-py's keys watcher (2.16) now and then answers "no keys" when its messages arrive
        before it has counted them, and a list must never come back empty by accident.
        """
        prefix = f"$KV.{self.bucket}."
        info = await self.js.stream_info(f"KV_{self.bucket}", subjects_filter=f"{prefix}{group or '*'}.*")
        records = []
        for subject in sorted(info.state.subjects or {}):
            group_, _, id_ = subject[len(prefix):].partition(".")
            record = await self.get(group_, id_)
            if record is not None:  # a deleted key keeps its subject (and a delete marker) in the stream
                records.append(record)
        return records


class Store:
    """The registries zeroserve keeps."""

    # Records that belong to no resource group (clients, resource groups) are kept under this one.
    GLOBAL = "global"

    def __init__(self, js: JetStreamContext, buckets: dict[str, KeyValue], replicas: int = 1) -> None:
        def registry(name: str, model: type[R]) -> Registry[R]:
            return Registry(js, bucket_name(name), buckets[name], model)

        self.artifacts = registry("artifacts", Artifact)
        self.deployments = registry("deployments", Deployment)
        self.configurations = registry("configurations", Configuration)
        self.resource_groups = registry("resource_groups", ResourceGroup)
        self.object_store_secrets = registry("object_store_secrets", ObjectStoreSecret)
        self.clients = registry("clients", RegisteredClient)
        self.subscriptions = registry("subscriptions", Subscription)
        self.deliveries = registry("deliveries", Deliveries)
        self.js = js
        self.replicas = replicas

    async def registry(self, name: str, model: type[R]) -> Registry[R]:
        """A registry whose records are defined beside their domain (``templates/``), its bucket made if new."""
        config = KeyValueConfig(bucket=bucket_name(name), history=5, storage=StorageType.FILE, replicas=self.replicas)
        return Registry(self.js, bucket_name(name), await open_bucket(self.js, config), model)

    @classmethod
    async def open(cls, js: JetStreamContext, replicas: int = 1) -> Store:
        """The registries, their buckets made if new, with ``replicas`` copies each (``ZEROSERVE_NATS_REPLICAS``)."""
        names = ("artifacts", "deployments", "configurations", "resource_groups", "object_store_secrets",
                 "clients", "subscriptions", "deliveries")
        # Side by side: new copies of each bucket (replicas raised) catch up at the same time.
        opened = await asyncio.gather(*(open_bucket(js, KeyValueConfig(bucket=bucket_name(name), history=5,
                                                                      storage=StorageType.FILE, replicas=replicas))
                                        for name in names))
        return cls(js, dict(zip(names, opened, strict=True)), replicas)


def bucket_name(registry: str) -> str:
    return f"zeroserve_{registry}"


async def open_bucket(js: JetStreamContext, config: KeyValueConfig) -> KeyValue:
    """The KV bucket of ``config``, made if new. One that exists keeps its settings but takes the
    config's number of replicas: a bucket is the stream ``KV_<bucket>``, and JetStream adds (or
    removes) copies of a stream in place, keeping its records (returned once new copies caught up)."""
    with stream_refusal(f"KV_{config.bucket}", config.replicas):
        try:
            kv = await js.key_value(config.bucket)
        except BucketNotFoundError:
            return await js.create_key_value(config)
        stream = (await kv.status()).stream_info.config
        had = stream.num_replicas or 1
        if had != config.replicas:
            stream.num_replicas = config.replicas
            await js.update_stream(stream)
    if config.replicas > had:
        await replicas_current(js, f"KV_{config.bucket}", config.replicas)
    return kv
