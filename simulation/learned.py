"""The learned idle window of "Serverless in the Wild" (Shahrad et al., USENIX ATC 2020), driven by SimPy.

Each deployment keeps a histogram of its idle times in one-minute bins up to four hours. A controller
wakes every simulated hour (a SimPy process: the natural clock of a periodic autoscaler) and sets each
deployment's windows from its histogram with the autoscaler's own policy, ``zeroserve.serving.idle_window``
(``Learning.window``: pre-warm = the 5th percentile's bin, 10% earlier; keep-alive = up to the 99th
percentile's bin, 10% later; too few idle times or too many beyond the histogram fall back to the fixed
window, as the paper does: it forecasts those with ARIMA, here they keep the fixed window), so what is
simulated is what runs. The requests of an hour are then scored as vectors under the windows in force
when their idle time began: one SimPy event per hour, not per request, keeps 100,000 deployments within
a minute on two cores.
"""

from __future__ import annotations

import numpy as np
import simpy

from simulation.idle_window import Idle, Outcome, outcome
from simulation.warm_pool import Pool
from simulation.workload import Trace
from zeroserve.serving.idle_window import Learning

HOUR_S = 3600.0


class Histograms:
    """Every deployment's idle-time histogram and the windows the controller last derived from it."""

    def __init__(self, deployments: int, learning: Learning, fallback_window_s: float) -> None:
        self.learning = learning
        self.fallback_window_s = fallback_window_s
        self.counts = np.zeros((deployments, learning.bins), dtype=np.int32)
        self.out_of_bounds = np.zeros(deployments, dtype=np.int64)
        self.prewarm_s = np.zeros(deployments)
        self.keep_alive_s = np.full(deployments, fallback_window_s)
        self.fallbacks = 0

    def observe(self, deployment: np.ndarray, idle_s: np.ndarray) -> None:
        bins = (idle_s // self.learning.bin_s).astype(np.int64)
        inside = bins < self.learning.bins
        np.add.at(self.counts, (deployment[inside], bins[inside]), 1)
        np.add.at(self.out_of_bounds, deployment[~inside], 1)

    def decide(self, deployments: np.ndarray) -> None:
        """Derive the windows of the deployments that saw new idle times; count the fallbacks."""
        learn, fallback_s = self.learning, self.fallback_window_s
        # Too few idle times to learn from is the policy's first test and most deployments' answer: settled
        # for them at once (with the policy's own fallback window), the rest each through the policy.
        few = self.counts[deployments].sum(axis=1) < learn.min_samples
        fallback = learn.window((), 0, fallback_s)
        self.prewarm_s[deployments[few]] = fallback.prewarm_s
        self.keep_alive_s[deployments[few]] = fallback.keep_alive_s
        self.fallbacks += int(few.sum())
        rest = deployments[~few]
        for deployment, counts, out in zip(
            rest.tolist(), self.counts[rest].tolist(), self.out_of_bounds[rest].tolist(), strict=True
        ):
            window = learn.window(counts, out, fallback_s)
            self.prewarm_s[deployment] = window.prewarm_s
            self.keep_alive_s[deployment] = window.keep_alive_s
            self.fallbacks += not window.learned


def learned(
    trace: Trace, idle: Idle, learning: Learning, fallback_window_s: float, pools: tuple[Pool | None, ...] = (None,)
) -> list[Outcome]:
    """Replay the trace hour by hour under the controller; the policy's outcome with each warm pool."""
    histograms = Histograms(trace.fleet.deployments, learning, fallback_window_s)
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
