"""How long a deployment's last replica stays after its last request: the platform's fixed idle window
(``idle_window_s``, as Knative, KServe and KEDA keep one), or a window learned from the deployment's own
idle times, after "Serverless in the Wild" (Shahrad et al., USENIX ATC 2020). The learned policy keeps a
histogram of the deployment's idle times in one-minute bins up to four hours; its pre-warm is the 5th
percentile's bin, 10% earlier (the replica is stopped at once and started again that long after the
last request), and its keep-alive runs to the end of the 99th percentile's bin, 10% later. With fewer
than ``min_samples`` idle times, or more than ``max_out_of_bounds`` of them past the histogram, it falls
back to the fixed window, as the paper does (its ARIMA forecast for the second case, and its check that
a histogram is representative by the coefficient of variation of its bin counts, are not made here).
``make simulate`` (``simulation/learned.py``) decides with this same ``Learning.window``, so what
docs/capacity.md measures is what the autoscaler runs.
"""

from __future__ import annotations

from array import array
from bisect import bisect_left
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import accumulate


@dataclass(frozen=True)
class Window:
    """After a deployment's last request: no replica wanted for ``prewarm_s``, then one for ``keep_alive_s``."""

    prewarm_s: float
    keep_alive_s: float
    learned: bool = False

    def wants_replica(self, idle_s: float) -> bool:
        """Whether a replica should be up ``idle_s`` after the last request ended."""
        if self.prewarm_s <= 0:
            return idle_s <= self.keep_alive_s
        return self.prewarm_s < idle_s <= self.prewarm_s + self.keep_alive_s


@dataclass(frozen=True)
class Learning:
    """The learned policy's knobs: the paper's values."""

    bin_s: float = 60.0
    bins: int = 240  # four hours of one-minute bins
    head_percentile: float = 5.0
    tail_percentile: float = 99.0
    margin: float = 0.10
    min_samples: int = 10
    max_out_of_bounds: float = 0.5

    def window(self, counts: Sequence[int], out_of_bounds: int, fallback_s: float) -> Window:
        """The window a histogram of idle times (``counts`` per bin, ``out_of_bounds`` past the last) says."""
        inside = sum(counts)
        if inside < self.min_samples or out_of_bounds > self.max_out_of_bounds * (inside + out_of_bounds):
            return Window(0.0, fallback_s)
        cumulative = list(accumulate(counts))
        # A percentile's bin: the first whose cumulative count reaches that share of the idle times.
        head = bisect_left(cumulative, self.head_percentile / 100 * inside)
        tail = bisect_left(cumulative, self.tail_percentile / 100 * inside)
        prewarm = head * self.bin_s * (1 - self.margin)
        return Window(prewarm, (tail + 1) * self.bin_s * (1 + self.margin) - prewarm, learned=True)


class IdleTimes:
    """One deployment's idle times: the histogram (a few hundred counters: bounded, whatever the traffic),
    its requests in flight, and since when it is idle."""

    __slots__ = ("counts", "in_flight", "out_of_bounds", "prewarmed_for", "since", "_window")

    def __init__(self, learning: Learning) -> None:
        self.counts = array("I", bytes(4 * learning.bins))
        self.out_of_bounds = 0
        self.in_flight = 0
        self.since: float | None = None  # when its last request ended (None: one is in flight, or none came yet)
        self.prewarmed_for: float | None = None  # the idle time (its ``since``) a pre-warm was started for
        self._window: Window | None = None

    def began(self, now: float, learning: Learning) -> None:
        """A request arrived: the idle time it ends is counted."""
        if self.in_flight == 0 and self.since is not None:
            self.observe(now - self.since, learning)
        self.in_flight += 1
        self.since = None

    def ended(self, now: float) -> None:
        self.in_flight -= 1
        if self.in_flight == 0:
            self.since = now

    def observe(self, idle_s: float, learning: Learning) -> None:
        index = int(max(idle_s, 0.0) // learning.bin_s)
        if index < len(self.counts):
            self.counts[index] = min(self.counts[index] + 1, 0xFFFFFFFF)
        else:
            self.out_of_bounds += 1
        self._window = None

    def window(self, learning: Learning, fallback_s: float) -> Window:
        """The window in force, derived again only after a new idle time."""
        if self._window is None or (not self._window.learned and self._window.keep_alive_s != fallback_s):
            self._window = learning.window(self.counts, self.out_of_bounds, fallback_s)
        return self._window
