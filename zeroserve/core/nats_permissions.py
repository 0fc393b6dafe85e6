"""What each role of a cluster may do on NATS: one NATS user per role (gateway, functions, watcher),
allowed only the subjects that role publishes and reads.

The events a role announces are its own: the functions cannot request a deployment, the gateway
cannot announce an artifact's status or write a dead letter, the watcher cannot send an artifact.
Each role writes only the registries (KV buckets, ``$KV.<bucket>.>``) it changes, reads its
replies only under an inbox prefix of its own (``ZEROSERVE_NATS_INBOX_PREFIX``), and reaches
JetStream's API only for zeroserve's own streams and buckets: it may make and update them (every
role makes sure they exist when it starts) and read them through consumers, never delete or
purge them. ``python -m zeroserve.core.nats_permissions`` writes the configuration the manifests
ship (``make manifests``: manifests/base/nats.conf), with each role's password read from the NATS
pod's environment, where a Kubernetes Secret puts it.
"""

from __future__ import annotations

from dataclasses import dataclass

from zeroserve.core.bus import EVENTS_STREAM, LOGS_STREAM
from zeroserve.core.dead_letters import DEADLETTER_STREAM
from zeroserve.core.nats_auth import NatsUser, render_authorization
from zeroserve.core.store import bucket_name
from zeroserve.events import (
    IN_TYPES,
    ArtifactStatus,
    ConfigurationCreated,
    DeploymentDeleted,
    DeploymentLog,
    DeploymentStatus,
    DeploymentStopped,
    subject_for,
)
from zeroserve.roles import ROLES

# Every registry of zeroserve (core/store.py, templates/executables.py, templates/applications.py,
# webhooks/replays.py). A new one must be listed here, or no role may open it on a cluster.
REGISTRIES = ("artifacts", "deployments", "configurations", "resource_groups", "object_store_secrets", "clients",
              "subscriptions", "deliveries", "templates", "template_repositories", "template_applications")
# Opened by the gateway only, when the first signed webhook comes in.
GATEWAY_REGISTRIES = ("webhook_ids",)


@dataclass(frozen=True)
class RolePermissions:
    """What one role does on NATS, in zeroserve's words; ``publish`` and ``subscribe`` say it in subjects."""

    role: str
    announces: tuple[str, ...]  # event types it publishes
    follows: tuple[str, ...]  # event types it subscribes to directly (not through a consumer)
    reads: tuple[str, ...]  # streams it reads through consumers, besides every bucket
    writes: tuple[str, ...]  # registries it changes
    dead_letters: bool = False

    @property
    def inbox_prefix(self) -> str:
        return f"_INBOX_{self.role}"

    @property
    def buckets(self) -> tuple[str, ...]:
        return REGISTRIES + (GATEWAY_REGISTRIES if self.role == "gateway" else ())

    @property
    def publish(self) -> tuple[str, ...]:
        subjects = [subject_for(event_type, "*") for event_type in self.announces]
        if self.dead_letters:
            subjects.append("zeroserve.*.deadletter.*")
        subjects += [f"$KV.{bucket_name(registry)}.>" for registry in self.writes]
        subjects.append("$JS.API.INFO")  # the account's JetStream, asked at start until a cluster answers
        kv_streams = [f"KV_{bucket_name(registry)}" for registry in self.buckets]
        for stream in (EVENTS_STREAM, LOGS_STREAM, DEADLETTER_STREAM, *kv_streams):
            subjects += _managing(stream)
        for stream in (*self.reads, *kv_streams):
            subjects += _reading(stream)
        return tuple(subjects)

    @property
    def subscribe(self) -> tuple[str, ...]:
        return (*(subject_for(event_type, "*") for event_type in self.follows), f"{self.inbox_prefix}.>")

    def user(self) -> NatsUser:
        """This role's NATS user, its password from the NATS pod's ``NATS_<ROLE>_PASSWORD``."""
        return NatsUser(self.role, password_env=f"NATS_{self.role.upper()}_PASSWORD",
                        publish=self.publish, subscribe=self.subscribe)


def _managing(stream: str) -> list[str]:
    # Made if missing and brought to today's limits at each start (Bus.ensure_streams, Store.open).
    return [f"$JS.API.STREAM.{verb}.{stream}" for verb in ("INFO", "CREATE", "UPDATE")]


def _reading(stream: str) -> list[str]:
    # Messages by sequence or subject (KV gets), consumers (durable or ephemeral, made, asked about, pulled
    # from, removed when done), their acks and the flow control of ordered consumers (KV history).
    return [
        f"$JS.API.STREAM.MSG.GET.{stream}", f"$JS.API.DIRECT.GET.{stream}", f"$JS.API.DIRECT.GET.{stream}.>",
        f"$JS.API.CONSUMER.CREATE.{stream}", f"$JS.API.CONSUMER.CREATE.{stream}.>",
        f"$JS.API.CONSUMER.DURABLE.CREATE.{stream}.>", f"$JS.API.CONSUMER.INFO.{stream}.>",
        f"$JS.API.CONSUMER.DELETE.{stream}.>", f"$JS.API.CONSUMER.MSG.NEXT.{stream}.>",
        f"$JS.ACK.{stream}.>", f"$JS.FC.{stream}.>",
    ]


PERMISSIONS: dict[str, RolePermissions] = {
    # The HTTP API: the commands users send (by API, `POST /v2/events` and webhooks), configurations, and
    # a new deployment's UNKNOWN; it reads every stream (event streams, log queries) and follows a
    # deployment's status and log as they happen; it writes every registry (clients, groups, secrets, ...).
    "gateway": RolePermissions(
        "gateway",
        announces=(*IN_TYPES, ConfigurationCreated.event_type, DeploymentStatus.event_type),
        follows=(DeploymentStatus.event_type, DeploymentLog.event_type),
        reads=(EVENTS_STREAM, LOGS_STREAM, DEADLETTER_STREAM),
        writes=REGISTRIES + GATEWAY_REGISTRIES),
    # The functions: they read the commands and announce what came of them (statuses, control-plane log
    # lines), and give up on an event into a dead letter; they change artifacts, deployments and the
    # configuration a deployment requested by event amounts to.
    "functions": RolePermissions(
        "functions",
        announces=(ArtifactStatus.event_type, DeploymentStatus.event_type, DeploymentLog.event_type),
        follows=(),
        reads=(EVENTS_STREAM,),
        writes=("artifacts", "deployments", "configurations"),
        dead_letters=True),
    # The watcher: statuses and logs from the cluster, a stop and a delete when a ttl has passed, and
    # webhooks out (it reads the events and logs streams, and notes each delivery).
    "watcher": RolePermissions(
        "watcher",
        announces=(DeploymentStatus.event_type, DeploymentLog.event_type, DeploymentStopped.event_type,
                   DeploymentDeleted.event_type),
        follows=(),
        reads=(EVENTS_STREAM, LOGS_STREAM),
        writes=("deployments", "deliveries")),
}
assert set(PERMISSIONS) == set(ROLES), "every role needs its NATS permissions"


def cluster_config() -> str:
    """The nats-server configuration of the manifests: one user per role, nobody else."""
    header = ("# Written by `make manifests` from zeroserve/core/nats_permissions.py: change it there.\n"
              "# One NATS user per role of zeroserve, allowed only the subjects that role uses; each password\n"
              "# comes from the NATS pod's environment (Secret zeroserve-nats, docs/cluster.md).\n")
    return header + render_authorization(PERMISSIONS[role].user() for role in ROLES)


if __name__ == "__main__":
    print(cluster_config(), end="")
