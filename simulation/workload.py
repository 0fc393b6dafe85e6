"""The simulated fleet: deployments with Zipf-distributed, diurnal Poisson traffic and a cold-start class each.

Every arrival of the whole run is drawn up front with numpy from one seeded generator, so the same seed
gives the same requests for every policy: the policies are compared on the same trace, as issue 16 asks.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

DAY_S = 86_400.0
# Three regions a third of a day apart: the fleet's traffic peaks three times a day, each deployment once.
REGION_PHASES = np.array([0.0, 2 * np.pi / 3, 4 * np.pi / 3])
PERIODS_S = np.array([300.0, 600.0, 900.0, 1800.0, 3600.0, 7200.0])


@dataclass(frozen=True)
class Fleet:
    """What a run simulates: the knobs of the workload."""

    deployments: int = 100_000
    days: float = 3.0
    requests_per_deployment_day: float = 26.0  # the fleet's mean: 100,000 deployments make 30 requests/s
    zipf_s: float = 1.0  # rate of the k-th most popular deployment ~ 1 / k**s
    diurnal_amplitude: float = 0.8  # rate(t) = mean * (1 + a * sin(2 pi t / day + phase))
    gpu_fraction: float = 0.2
    # Timer-driven deployments (batch scoring, scheduled retraining checks): a request every period, a few
    # seconds late or early, all day. Azure's study found such regular callers common; their idle times
    # are what a histogram can learn and a Poisson caller's are not.
    periodic_fraction: float = 0.1
    periodic_jitter_s: float = 2.0
    cpu_cold_start_median_s: float = 0.14  # the local p50 of a CPU model (docs/benchmarks.md)
    gpu_cold_start_median_s: float = 8.0  # an LLM's weights onto a GPU: seconds
    cold_start_sigma: float = 0.5  # both classes: lognormal around their median


@dataclass(frozen=True)
class Trace:
    """Each deployment's requests in time order, flattened: deployment ids, times, and each one's cold start."""

    fleet: Fleet
    deployment: np.ndarray  # int, sorted
    time_s: np.ndarray  # float, sorted within a deployment
    cold_start_s: np.ndarray  # what this request waits if it finds no replica
    gpu: np.ndarray  # bool per deployment

    @property
    def duration_s(self) -> float:
        return self.fleet.days * DAY_S


def draw(fleet: Fleet, seed: int) -> Trace:
    """The trace of one run: Poisson counts per deployment, arrival times thinned to the diurnal curve."""
    rng = np.random.default_rng(seed)
    duration = fleet.days * DAY_S
    ranks = np.arange(1, fleet.deployments + 1, dtype=float)
    weights = ranks**-fleet.zipf_s
    rates = fleet.requests_per_deployment_day * fleet.deployments / DAY_S * weights / weights.sum()
    phases = REGION_PHASES[rng.integers(0, len(REGION_PHASES), fleet.deployments)]
    gpu = rng.random(fleet.deployments) < fleet.gpu_fraction
    # Whole days integrate the sinusoid to its mean, so the count is Poisson(mean rate x duration).
    periodic = rng.random(fleet.deployments) < fleet.periodic_fraction
    counts = np.where(periodic, 0, rng.poisson(rates * duration))
    deployment = np.repeat(np.arange(fleet.deployments), counts)
    time_s = _diurnal_times(rng, phases[deployment], duration, fleet.diurnal_amplitude)
    timed, timed_s = _periodic_times(rng, np.flatnonzero(periodic), duration, fleet.periodic_jitter_s)
    deployment, time_s = np.concatenate([deployment, timed]), np.concatenate([time_s, timed_s])
    order = np.lexsort((time_s, deployment))
    deployment, time_s = deployment[order], time_s[order]
    median = np.where(gpu[deployment], fleet.gpu_cold_start_median_s, fleet.cpu_cold_start_median_s)
    cold_start_s = median * rng.lognormal(0.0, fleet.cold_start_sigma, len(deployment))
    return Trace(fleet, deployment, time_s, cold_start_s, gpu)


def _periodic_times(
    rng: np.random.Generator, deployments: np.ndarray, duration: float, jitter_s: float
) -> tuple[np.ndarray, np.ndarray]:
    """A request every period (one of PERIODS_S), from a random offset, each a little early or late."""
    period = rng.choice(PERIODS_S, len(deployments))
    offset = rng.uniform(0.0, period)
    counts = ((duration - offset) // period).astype(np.int64) + 1
    deployment = np.repeat(deployments, counts)
    step = np.arange(counts.sum()) - np.repeat(np.cumsum(counts) - counts, counts)
    times = np.repeat(offset, counts) + step * np.repeat(period, counts) + rng.normal(0.0, jitter_s, counts.sum())
    return deployment, np.clip(times, 0.0, duration)


def _diurnal_times(rng: np.random.Generator, phase: np.ndarray, duration: float, amplitude: float) -> np.ndarray:
    """Uniform times kept with probability rate(t) / peak rate (thinning), redrawn until all are kept."""
    times = np.empty(len(phase))
    todo = np.arange(len(phase))
    while len(todo):
        t = rng.uniform(0.0, duration, len(todo))
        keep = rng.random(len(todo)) * (1 + amplitude) < 1 + amplitude * np.sin(2 * np.pi * t / DAY_S + phase[todo])
        times[todo[keep]] = t[keep]
        todo = todo[~keep]
    return times
