"""The two idle-window policies and what each costs on a trace: cold starts, added latency, replica-seconds.

One replica per deployment at most (scale 0 <-> 1): after a request the replica stays `keep_alive_s`;
with a `prewarm_s` > 0 it is unloaded at once instead and started again `prewarm_s` after the request,
then kept `keep_alive_s` (the shape of "Serverless in the Wild", Shahrad et al., USENIX ATC 2020). A
request is cold when the idle time before it falls outside (prewarm_s, prewarm_s + keep_alive_s], and
every deployment's first request is cold.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from simulation.warm_pool import Pool, served
from simulation.workload import Trace


@dataclass(frozen=True)
class Outcome:
    """What one policy cost on one trace, next to always-on serving (one replica per deployment throughout)."""

    policy: str
    requests: int
    cold_starts: int
    added_latency_mean_s: float
    replica_s: float
    always_on_replica_s: float
    gpu_hours: float
    always_on_gpu_hours: float
    fallbacks: int = 0  # learned policy: hourly decisions that fell back to the fixed window
    pool_size: int = 0  # warm replicas per class
    pool_hits: int = 0  # cold starts served by the warm pool

    @property
    def cold_start_rate(self) -> float:
        return self.cold_starts / max(self.requests, 1)

    def row(self) -> dict:
        return asdict(self) | {"cold_start_rate": self.cold_start_rate}


@dataclass(frozen=True)
class Idle:
    """The idle times of a trace: the gap before each request (inf before a deployment's first) and after its last."""

    gap_s: np.ndarray
    first: np.ndarray
    last: np.ndarray  # index of each deployment's last request (deployments with any)
    tail_s: np.ndarray  # from that request to the end of the run

    @classmethod
    def of(cls, trace: Trace) -> Idle:
        first = np.ones(len(trace.time_s), dtype=bool)
        first[1:] = trace.deployment[1:] != trace.deployment[:-1]
        gap = np.full(len(trace.time_s), np.inf)
        gap[1:] = np.diff(trace.time_s)
        gap[first] = np.inf
        last = np.flatnonzero(np.append(first[1:], True))
        return cls(gap, first, last, trace.duration_s - trace.time_s[last])


def warm_seconds(idle_s: np.ndarray, prewarm_s: np.ndarray | float, keep_alive_s: np.ndarray | float) -> np.ndarray:
    """Seconds a replica is up during an idle time of `idle_s` (pre-warm loads are not counted)."""
    return np.clip(np.minimum(idle_s, 1e18) - prewarm_s, 0.0, keep_alive_s)


def outcome(
    trace: Trace,
    idle: Idle,
    name: str,
    prewarm_s: np.ndarray | float,
    keep_alive_s: np.ndarray | float,
    tail_prewarm_s: np.ndarray | float,
    tail_keep_alive_s: np.ndarray | float,
    fallbacks: int = 0,
    pool: Pool | None = None,
) -> Outcome:
    """Count a policy's cold starts and replica-seconds; the per-request arrays say the window in force then."""
    cold = (idle.gap_s <= prewarm_s) | (idle.gap_s > np.add(prewarm_s, keep_alive_s)) | idle.first
    gpu_request = trace.gpu[trace.deployment]
    wait = np.where(cold, trace.cold_start_s, 0.0)
    pooled = np.zeros(len(cold), dtype=bool) if pool is None else _pooled(trace, cold, gpu_request, pool)
    if pool is not None:
        wait = np.where(pooled, wait * pool.load_fraction, wait)
    # A replica is up while it loads (the cold start), during its warm time between requests, and after the last.
    up = np.where(idle.first, 0.0, warm_seconds(idle.gap_s, prewarm_s, keep_alive_s)) + wait
    tail = warm_seconds(idle.tail_s, tail_prewarm_s, tail_keep_alive_s)
    duration = trace.duration_s
    size = 0 if pool is None else pool.size
    return Outcome(
        policy=name if not size else f"{name} + pool {size}",
        requests=len(cold),
        cold_starts=int(cold.sum()),
        added_latency_mean_s=float(wait.sum() / max(len(cold), 1)),
        replica_s=float(up.sum() + tail.sum() + 2 * size * duration),
        always_on_replica_s=trace.fleet.deployments * duration,
        gpu_hours=float(
            (up[gpu_request].sum() + tail[trace.gpu[trace.deployment[idle.last]]].sum() + size * duration) / 3600
        ),
        always_on_gpu_hours=float(trace.gpu.sum() * duration / 3600),
        fallbacks=fallbacks,
        pool_size=size,
        pool_hits=int(pooled.sum()),
    )


def _pooled(trace: Trace, cold: np.ndarray, gpu_request: np.ndarray, pool: Pool) -> np.ndarray:
    """Which cold starts a pool serves: each class its own pool, refilled in its median cold start."""
    pooled = np.zeros(len(cold), dtype=bool)
    fleet = trace.fleet
    for gpu, refill_s in ((False, fleet.cpu_cold_start_median_s), (True, fleet.gpu_cold_start_median_s)):
        index = np.flatnonzero(cold & (gpu_request == gpu))
        index = index[np.argsort(trace.time_s[index], kind="stable")]
        pooled[index] = served(trace.time_s[index], pool.size, refill_s)
    return pooled


def fixed(trace: Trace, idle: Idle, window_s: float, pool: Pool | None = None) -> Outcome:
    """Knative's and KServe's policy (and zeroserve's `idle_window_s`): the same window for every deployment."""
    return outcome(trace, idle, f"fixed {window_s:g} s", 0.0, window_s, 0.0, window_s, pool=pool)
