"""The learned idle window of "Serverless in the Wild" (Shahrad et al., USENIX ATC 2020), driven by SimPy.

Each deployment keeps a histogram of its idle times in one-minute bins up to four hours. A controller
wakes every simulated hour (a SimPy process: the natural clock of a periodic autoscaler) and sets each
deployment's windows from its histogram: pre-warm = the 5th percentile's bin, 10% earlier; keep-alive =
up to the 99th percentile's bin, 10% later. Too few idle times (< `min_samples`) or too many beyond the
histogram (> `max_out_of_bounds`) fall back to the fixed window, as the paper does (it forecasts those
with ARIMA; here they keep the fixed window). The requests of an hour are then scored as vectors under
the windows in force when their idle time began: one SimPy event per hour, not per request, keeps
100,000 deployments within minutes on two cores.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import simpy

from simulation.idle_window import Idle, Outcome, outcome
from simulation.warm_pool import Pool
from simulation.workload import Trace

HOUR_S = 3600.0


@dataclass(frozen=True)
class Learning:
    """The learned policy's knobs (the paper's values)."""

    fallback_window_s: float = 60.0
    bin_s: float = 60.0
    bins: int = 240
    head_percentile: float = 5.0
    tail_percentile: float = 99.0
    margin: float = 0.10
    min_samples: int = 10
    max_out_of_bounds: float = 0.5


class Histograms:
    """Every deployment's idle-time histogram and the windows the controller last derived from it."""

    def __init__(self, deployments: int, learning: Learning) -> None:
        self.learning = learning
        self.counts = np.zeros((deployments, learning.bins), dtype=np.int32)
        self.out_of_bounds = np.zeros(deployments, dtype=np.int64)
        self.prewarm_s = np.zeros(deployments)
        self.keep_alive_s = np.full(deployments, learning.fallback_window_s)
        self.fallbacks = 0

    def observe(self, deployment: np.ndarray, idle_s: np.ndarray) -> None:
        bins = (idle_s // self.learning.bin_s).astype(np.int64)
        inside = bins < self.learning.bins
        np.add.at(self.counts, (deployment[inside], bins[inside]), 1)
        np.add.at(self.out_of_bounds, deployment[~inside], 1)

    def decide(self, deployments: np.ndarray) -> None:
        """Derive the windows of the deployments that saw new idle times; count the fallbacks."""
        learn = self.learning
        counts = self.counts[deployments]
        cumulative = np.cumsum(counts, axis=1)
        inside = cumulative[:, -1]
        out = self.out_of_bounds[deployments]
        fallback = (inside < learn.min_samples) | (out > learn.max_out_of_bounds * (inside + out))
        head = np.argmax(cumulative >= learn.head_percentile / 100 * inside[:, None], axis=1)
        tail = np.argmax(cumulative >= learn.tail_percentile / 100 * inside[:, None], axis=1)
        prewarm = head * learn.bin_s * (1 - learn.margin)
        keep_alive = (tail + 1) * learn.bin_s * (1 + learn.margin) - prewarm
        self.prewarm_s[deployments] = np.where(fallback, 0.0, prewarm)
        self.keep_alive_s[deployments] = np.where(fallback, learn.fallback_window_s, keep_alive)
        self.fallbacks += int(fallback.sum())


def learned(trace: Trace, idle: Idle, learning: Learning, pools: tuple[Pool | None, ...] = (None,)) -> list[Outcome]:
    """Replay the trace hour by hour under the controller; the policy's outcome with each warm pool."""
    histograms = Histograms(trace.fleet.deployments, learning)
    n = len(trace.time_s)
    prewarm = np.zeros(n)
    keep_alive = np.zeros(n)
    follows = np.flatnonzero(~idle.first)
    began = _by_hour(trace.time_s[follows - 1], trace.duration_s)  # idle times by the hour they began in
    ended = _by_hour(trace.time_s[follows], trace.duration_s)  # and by the hour they were seen whole
    env = simpy.Environment()

    def controller():
        for hour in range(len(began)):
            starting = follows[began[hour]]
            prewarm[starting] = histograms.prewarm_s[trace.deployment[starting]]
            keep_alive[starting] = histograms.keep_alive_s[trace.deployment[starting]]
            yield env.timeout(HOUR_S)
            seen = follows[ended[hour]]
            histograms.observe(trace.deployment[seen], idle.gap_s[seen])
            histograms.decide(np.unique(trace.deployment[seen]))

    env.process(controller())
    env.run()
    # After a deployment's last request: the windows in force at the end (an upper bound on what was set then).
    last = trace.deployment[idle.last]
    return [
        outcome(
            trace,
            idle,
            "learned",
            prewarm,
            keep_alive,
            histograms.prewarm_s[last],
            histograms.keep_alive_s[last],
            fallbacks=histograms.fallbacks,
            pool=pool,
        )
        for pool in pools
    ]


def _by_hour(time_s: np.ndarray, duration_s: float) -> list[np.ndarray]:
    hours = int(np.ceil(duration_s / HOUR_S))
    hour = np.minimum((time_s // HOUR_S).astype(np.int64), hours - 1)
    order = np.argsort(hour, kind="stable")
    return np.split(order, np.cumsum(np.bincount(hour, minlength=hours))[:-1])
