"""The process roles of zeroserve: which parts of the platform one process runs.

On one machine a process runs every role. On a cluster each role runs in its own pods
(``zeroserve up --role ...``), against a shared NATS and the kserve backend: ``gateway`` (the HTTP
API and inference routing), ``functions`` (the function runner, which KEDA scales to zero while no event waits) and
``watcher`` (statuses and logs from the backend, and ttl expiry, active only while it holds the
leader-election Lease, so that one replica of it works; and outbound webhooks, on every replica,
since the watcher always runs). ``zeroserve.node.Node`` starts what
the roles ask for.
"""

from __future__ import annotations

from collections.abc import Iterable

from zeroserve.settings import Settings

ROLES = ("gateway", "functions", "watcher")


def every_role(roles: set[str]) -> bool:
    """One process that does everything: it restores the backend and needs no Lease."""
    return roles == set(ROLES)


def checked_roles(roles: Iterable[str], settings: Settings) -> set[str]:
    """The roles asked for, refused (SystemExit with the reason) where they cannot run as set up."""
    chosen = set(roles)
    unknown = chosen - set(ROLES)
    if unknown or not chosen:
        raise SystemExit(f"unknown role {', '.join(sorted(unknown))}; roles: {', '.join(ROLES)}")
    if not every_role(chosen):
        if settings.backend == "local":
            raise SystemExit("the local backend runs replicas inside the one zeroserve process: running only "
                             f"{', '.join(sorted(chosen))} needs ZEROSERVE_BACKEND=kserve")
        if not settings.nats_url:
            raise SystemExit("the roles of zeroserve share one NATS: set ZEROSERVE_NATS_URL")
        if not settings.public_url:
            raise SystemExit("deployment URLs start with the URL users reach the gateway at, which a pod cannot "
                             "know: set ZEROSERVE_PUBLIC_URL (e.g. https://zeroserve.example.com)")
        if "gateway" in chosen and settings.token_signing_key is None:
            # Without it each gateway would sign with a key of its own, made in its own data directory: a
            # token one gateway issued would be refused by the next one a load balancer picks.
            raise SystemExit("every gateway of a cluster must sign and check tokens with the same key: set "
                             "ZEROSERVE_TOKEN_SIGNING_KEY (e.g. from `openssl rand -hex 32`) the same in each")
    return chosen
