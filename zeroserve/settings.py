"""Every knob of zeroserve, in one place.

Each field has a default that works on one machine and an environment variable
``ZEROSERVE_<FIELD>`` (lists and mappings as JSON). Nothing else in zeroserve reads the
environment: components receive a ``Settings`` object.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Literal

from pydantic import (
    AliasChoices,
    BaseModel,
    BeforeValidator,
    Field,
    IPvAnyNetwork,
    SecretStr,
    ValidationInfo,
    field_validator,
)
from pydantic_settings import BaseSettings, SettingsConfigDict

# The functions, serving templates and resource plans ship inside the package (pyproject.toml's
# package data): the defaults below work from a wheel in site-packages as from a checkout.
PACKAGE_ROOT = Path(__file__).resolve().parent

_SIZE = re.compile(r"^\s*(\d+)\s*(Ki|Mi|Gi|Ti)?\s*$")
_UNITS = {None: 1, "Ki": 1 << 10, "Mi": 1 << 20, "Gi": 1 << 30, "Ti": 1 << 40}


def _bytes(value: object) -> object:
    """A number of bytes, or one with a binary suffix as Kubernetes writes them ("50Gi", "500Mi")."""
    if isinstance(value, str) and (found := _SIZE.match(value)) is not None:
        return int(found[1]) * _UNITS[found[2]]
    return value  # pydantic says what is wrong with anything else


class WebhookSource(BaseModel):
    """One sender allowed to call ``POST /v2/webhooks/<name>``, and what its calls become."""

    kind: Literal["s3", "mlflow", "generic", "git"]
    # The Standard Webhooks secret shared with the sender (``whsec_`` + base64).
    secret: SecretStr
    # The resource group its events go to.
    group: str = "default"
    # generic: the event type the body becomes the data of, e.g. "io.zeroserve.deployment.requested".
    event_type: str | None = None
    # s3: the URL prefix an object key is appended to when the notification has no bucket URL of its own.
    url_prefix: str | None = None
    # mlflow: what setting an alias deploys, e.g. {"champion": {"deployment": "iris", "executable": "sklearn"}}.
    aliases: dict[str, dict[str, str]] = Field(default_factory=dict)
    # git: the template applications a push refreshes; empty: those of the repository the push names.
    applications: list[str] = Field(default_factory=list)


class Settings(BaseSettings):
    # protected_namespaces: older pydantic-settings (2.3, the floor in pyproject.toml) also protect
    # "model_", and warn about model_cache_max_bytes on every command.
    model_config = SettingsConfigDict(env_prefix="ZEROSERVE_", extra="ignore", protected_namespaces=("settings_",))

    # Where the embedded nats-server keeps JetStream, the model cache and the demo model live.
    data_dir: Path = Path(".zeroserve")
    # An external NATS (cluster) to use instead of starting the embedded nats-server: one URL, or the
    # servers of a cluster comma-separated (nats://nats-0:4222,nats://nats-1:4222,...), so that zeroserve
    # reconnects to another when the one it uses goes (docs/cluster.md). It may carry a user
    # and password (nats://user:password@host:4222); logs show it redacted. Unset, `zeroserve up` starts
    # its own nats-server, which lets in only the user and password it made at its first start
    # (data_dir/nats/credentials.json, mode 0600; docs/cluster.md).
    nats_url: str | None = None
    # The user and password zeroserve connects to an external NATS with (on a cluster, one user per role,
    # the password from a Secret); None: the URL's, or none.
    nats_user: str | None = None
    nats_password: SecretStr | None = None
    # Where NATS sends this process its replies (request answers, consumers' deliveries): a prefix of its
    # own lets a role's NATS user read its own replies only (manifests/base/nats.conf). None: "_INBOX".
    nats_inbox_prefix: str | None = None
    # How many copies of each stream and KV bucket JetStream keeps: 1 on one server; 3 on a cluster of
    # three or more (the ha overlay), so that one server may fail with nothing lost. Streams and buckets
    # made with another count are changed to this one at start.
    nats_replicas: int = Field(default=1, ge=1, le=5)

    gateway_host: str = "127.0.0.1"
    gateway_port: int = 8700
    # The URL users reach the gateway at; deployment URLs start with it. Defaults to host:port on one
    # machine; required on a cluster (a pod's bind address, 0.0.0.0, is no URL anyone can call).
    public_url: str | None = None
    # A port where every role of this process serves Prometheus /metrics without a token, for a
    # cluster's scraper (the manifests set 9090 and annotate the pods); None: only the gateway's /metrics.
    metrics_port: int | None = None

    functions_dir: Path = PACKAGE_ROOT / "functions"
    templates_dir: Path = PACKAGE_ROOT / "templates" / "builtin"
    resource_plans_file: Path = PACKAGE_ROOT / "templates" / "resource-plans.yaml"
    # Per-plan overrides of the published figures, e.g. {"starter": {"memory": "2Gi"}}.
    resource_plans: dict[str, dict[str, object]] = Field(default_factory=dict)
    # Node label and taint that GPU plans select and tolerate on a cluster.
    gpu_node_label: str = "nvidia.com/gpu.product"
    gpu_taint_key: str = "nvidia.com/gpu"

    # The model cache's bound (bytes, or "50Gi", "500Mi"): staging an artifact evicts the least recently
    # used ones no deployment uses until it fits; an artifact larger than the bound is refused.
    model_cache_max_bytes: Annotated[int, BeforeValidator(_bytes), Field(gt=0)] = 50 << 30

    # file:// artifact URIs must resolve inside one of these directories (defaults to data_dir).
    file_roots: list[Path] = Field(default_factory=list)

    # The runner: how many events run at once, how often a failing one is tried, and the waits. 64, not
    # 16: a function mostly waits (on KV, on the backend), and larger batches mean fewer pull requests
    # (10,000 deployments to RUNNING: 41.6 s at 16, 31.9 and 34.2 s at 64; docs/benchmarks.md).
    runner_concurrency: int = 64
    max_deliver: int = 5
    retry_backoff_s: list[float] = Field(default_factory=lambda: [0.2, 0.5, 1.0, 2.0, 4.0])
    ack_wait_s: float = 30.0
    dedupe_window_s: float = 120.0
    # Logs are kept after replicas are gone, within these limits.
    log_max_age_s: float = 7 * 24 * 3600
    log_max_bytes: int = 256 * 1024 * 1024

    # Where deployments run: "local" (replicas as processes on this machine) or "kserve" (KServe
    # InferenceServices on a Kubernetes cluster; see docs/cluster.md).
    backend: Literal["local", "kserve"] = "local"

    # The kserve backend. The cluster is reached with this kubeconfig, or, unset, the pod's service
    # account (in-cluster) and else ~/.kube/config.
    kubeconfig: Path | None = None
    # The namespaces of resource groups to watch; empty: every namespace (needs cluster-wide rights).
    kserve_namespaces: list[str] = Field(default_factory=list)
    # A deployment that stays PENDING (unschedulable, image not pulled, ...) this long is DEAD.
    kserve_pending_deadline_s: float = 600.0
    # How long a stop waits for KServe to confirm it (the Stopped condition) before it returns anyway.
    kserve_stop_timeout_s: float = 60.0
    # How often the predictor pods' logs are read into deployment.log events.
    kserve_log_poll_s: float = 5.0
    # The Prometheus that scrapes zeroserve's gateway (e.g. http://prometheus-operated.monitoring:9090):
    # KEDA reads a deployment's requests there to scale a KServe Standard-mode deployment from and to
    # zero. Unset, a Standard deployment keeps at least one replica (docs/cluster.md).
    kserve_prometheus_url: str | None = Field(default=None, pattern=r"^https?://[^\s\"'{}]+$")
    # The watcher of a cluster: only the holder of this Lease watches, so statuses are written once.
    lease_name: str = "zeroserve-watcher"
    lease_namespace: str = "zeroserve"
    lease_duration_s: float = 15.0
    # This process's name as a Lease holder (the pod name on a cluster; the host name otherwise).
    pod_name: str | None = None

    # The local backend.
    idle_window_s: float = 60.0
    # CPU replicas start as forks of a process that has imported kserve (~0.1 s, not ~1.5 s); it
    # costs that process's memory (about 250 MB resident, shared with its forks) while zeroserve runs.
    fork_server: bool = True
    # A replica's line per request (uvicorn's access log) as deployment.log events. Off: at a high
    # request rate each line would cost the gateway a NATS publish (docs/benchmarks.md).
    replica_access_log: bool = False
    replica_ready_timeout_s: float = 60.0
    # A replica runs on its plan's CPU (as many cores) and is stopped past its plan's memory
    # (serving/bounds.py, docs/models.md). Off: every replica may use the whole machine.
    replica_limits: bool = True
    # A deployment whose replicas never get ready this many starts in a row (timed out or killed;
    # replicas started together count once) is DEAD (reason ReplicaNeverReady); one slow start only
    # fails the requests that waited for it.
    replica_start_attempts: int = 3
    activator_queue_limit: int = 100
    # How long a model server may stay silent, before its answer starts and between two parts of it
    # (a stream that keeps writing lasts as long as it writes); a deployment may set its own
    # (templates/limits.py).
    request_timeout_s: float = 60.0
    # The largest inference request body, in bytes (100 MiB): larger ones are refused with 413 before
    # they are read. A deployment may set its own (templates/limits.py).
    max_request_body: int = 100 * 1024 * 1024
    # GPUs the local backend may hand out, as CUDA indices; None = detect with NVML / nvidia-smi.
    gpus: list[int] | None = None

    # The API's bearer tokens: HS256-signed with this key, at least 32 characters. Every gateway of a
    # cluster needs the same one (`zeroserve up --role gateway` refuses to start without it); None, on
    # one machine: a key generated once and kept in data_dir/token.key.
    token_signing_key: SecretStr | None = None
    token_ttl_s: float = 12 * 3600
    # Tokens verified once are remembered until they expire, up to this many (least recently used go).
    token_cache_size: int = 4096
    # Failed logins at /oauth/token: a client id or a source address that fails this many times in
    # the window (opened by its first failure) is answered 429 until the window closes.
    login_failure_limit: int = 10
    login_failure_window_s: float = 60.0
    # A 429 is sent after this pause (at most its Retry-After): a caller that ignores Retry-After
    # gets one answer per pause and connection, not as many as the gateway can write.
    login_slow_down_s: float = 1.0
    # Threads that hash client secrets (scrypt, ~50-200 ms each): the most cores logins can take at once.
    login_hashing_threads: int = 1

    # Webhooks in: the senders allowed, by the name in their URL.
    webhooks: dict[str, WebhookSource] = Field(default_factory=dict)
    # A webhook whose timestamp is further than this from now is refused (replay window).
    webhook_tolerance_s: float = 300.0
    # Webhooks out: attempts per delivery, the waits between them, and how long one may take.
    webhook_delivery_attempts: int = 5
    webhook_delivery_backoff_s: list[float] = Field(default_factory=lambda: [1.0, 5.0, 30.0, 120.0])
    webhook_delivery_timeout_s: float = 10.0
    # Networks that are not public (loopback, private, link-local, ...) which webhooks out may still go
    # to, e.g. ["127.0.0.0/8", "::1/128"] for a receiver on this machine. Empty by default, on one machine
    # as on a cluster: a subscriber must not make zeroserve call 169.254.169.254, a service behind the
    # firewall or a sidecar's admin port; see zeroserve/webhooks/targets.py.
    webhook_allowed_networks: list[IPvAnyNetwork] = Field(default_factory=list)

    # How long one git command of a template sync may take (docs/templates.md).
    template_sync_timeout_s: float = 120.0

    # How often deployments with a ttl are checked for expiry.
    ttl_check_interval_s: float = 10.0

    # Log lines as plain text (the default) or one JSON object each (docs/observability.md).
    log_format: Literal["text", "json"] = "text"
    # Traces (core/tracing.py, docs/observability.md), read from OpenTelemetry's standard variables, not
    # ZEROSERVE_*: off unless OTEL_TRACES_EXPORTER names an exporter (otlp, console; comma-separated)
    # or an OTLP endpoint is set (then otlp); OTEL_SDK_DISABLED=true turns them off whatever else says.
    # The OTLP exporter reads its own OTEL_EXPORTER_OTLP_* variables (headers, timeout, certificates).
    otel_sdk_disabled: bool = Field(default=False, validation_alias="OTEL_SDK_DISABLED")
    otel_traces_exporter: str | None = Field(default=None, validation_alias="OTEL_TRACES_EXPORTER")
    otel_exporter_otlp_endpoint: str | None = Field(default=None, validation_alias=AliasChoices(
        "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_EXPORTER_OTLP_ENDPOINT"))
    otel_service_name: str = Field(default="zeroserve", validation_alias="OTEL_SERVICE_NAME")

    # The client side (the CLI and zeroserve.client): which gateway to call and as whom. Unset, they
    # use the gateway.url and credentials.json a local `zeroserve up` writes into data_dir.
    api_url: str | None = None
    # A bearer token to use as is, or a client id and secret to get (and renew) tokens with.
    token: SecretStr | None = None
    client_id: str | None = None
    client_secret: SecretStr | None = None
    # The resource group CLI commands act in when --group is not given.
    resource_group: str = "default"
    # The CLI's profile: a name in the per-user config file (zeroserve/cli/profiles.py, docs/cli.md).
    profile: str | None = None
    # XDG's base directory of per-user configuration (unset: ~/.config): the CLI's config file is
    # $XDG_CONFIG_HOME/zeroserve/config.yaml.
    xdg_config_home: Path | None = Field(default=None, validation_alias="XDG_CONFIG_HOME")
    # The largest model one upload may bring (bytes, or "10Gi"): larger uploads are refused with 413.
    upload_max_bytes: Annotated[int, BeforeValidator(_bytes), Field(gt=0)] = 20 << 30

    @field_validator("nats_password")
    @classmethod
    def _password_of_a_user(cls, value: SecretStr | None, info: ValidationInfo) -> SecretStr | None:
        if value is not None and info.data.get("nats_user") is None:
            raise ValueError("a NATS password needs its user: set ZEROSERVE_NATS_USER too")
        return value

    @field_validator("nats_inbox_prefix")
    @classmethod
    def _one_subject_prefix(cls, value: str | None) -> str | None:
        if value is not None and not re.fullmatch(r"[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*", value):
            raise ValueError("must be subject tokens (letters, digits, - and _) joined by dots, without wildcards")
        return value

    @field_validator("otel_traces_exporter")
    @classmethod
    def _known_exporters(cls, value: str | None) -> str | None:
        unknown = set(_exporter_names(value)) - {"otlp", "console", "none"}
        if unknown:
            raise ValueError(f"unknown trace exporter {', '.join(sorted(unknown))}: otlp, console or none")
        return value

    @property
    def tracing_exporters(self) -> list[str]:
        """The span exporters tracing is on with; none: tracing is off."""
        if self.otel_sdk_disabled:
            return []
        names = _exporter_names(self.otel_traces_exporter)
        if not names and self.otel_exporter_otlp_endpoint:
            return ["otlp"]
        return [name for name in dict.fromkeys(names) if name != "none"] if "none" not in names else []

    @property
    def model_cache_dir(self) -> Path:
        return self.data_dir / "models"

    @property
    def nats_dir(self) -> Path:
        return self.data_dir / "nats"

    @property
    def allowed_file_roots(self) -> list[Path]:
        return [root.resolve() for root in (self.file_roots or [self.data_dir])]

    @property
    def uploads_dir(self) -> Path:
        """Where models uploaded through the API lie, one directory per resource group (gateway/uploads.py)."""
        return self.data_dir / "uploads"

    @property
    def gateway_url(self) -> str:
        return (self.public_url or f"http://{self.gateway_host}:{self.gateway_port}").rstrip("/")


def _exporter_names(value: str | None) -> list[str]:
    return [name.strip().lower() for name in (value or "").split(",") if name.strip()]
