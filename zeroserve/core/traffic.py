"""What this process answered for each deployment, in 10-second steps over the last hour: requests,
errors and latency (p50, p95), for the console's traffic chart (``GET /v2/lm/deployments/{id}/traffic``).

Prometheus keeps the same figures for the long run (``zeroserve_inference_*``); this is the short view
a user looks at without one, held in memory: per deployment a ring of ``SLOTS`` steps, each step a
count of requests, of errors (answers of status 400 or more) and of latencies in log-spaced bins, so
that recording one request costs a few hundred nanoseconds and a ring never grows. Percentiles are
estimated within a bin (bins are 1.5 times wider each: within about 20 %). A deployment's ring is
dropped when it is deleted, or when it has counted nothing for as long as the ring reaches back.
"""

from __future__ import annotations

import time
from bisect import bisect_right
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

STEP_S = 10
SLOTS = 360  # an hour of steps
# Upper bounds of the latency bins, in seconds: 0.5 ms, 0.75 ms, ... about 43 s; one more bin above.
BOUNDS = tuple(0.0005 * 1.5 ** i for i in range(29))
_NO_LATENCIES = (0,) * (len(BOUNDS) + 1)


@dataclass(frozen=True)
class Point:
    """One step: when it began, requests, errors, and the median and 95th percentile latency (None: no request)."""

    time: datetime
    requests: int
    errors: int
    p50_ms: float | None
    p95_ms: float | None


class Traffic:
    """Each deployment's ring of steps."""

    step_s = STEP_S

    def __init__(self, wall_clock: Callable[[], float] = time.time) -> None:
        # Per deployment, SLOTS steps; a step is [its slot, errors, then a count per latency bin]: a flat list
        # is the cheapest to count into (requests are the bins' sum).
        self._rings: dict[tuple[str, str], list[list[int] | None]] = {}
        self._wall_clock = wall_clock
        self._sync()

    def _sync(self) -> None:
        # The hot path reads perf_counter (its caller has just read it) rather than the wall clock, which
        # costs more there: this offset turns one into the other.
        self._offset = self._wall_clock() - time.perf_counter()

    def record(self, group: str, deployment: str, status: int, seconds: float, ended: float) -> None:
        """Count one answer of ``seconds`` that ended at ``ended`` (``time.perf_counter()``): the hot
        path's, so it does the least work."""
        slot = int(ended + self._offset) // STEP_S
        ring = self._rings.get((group, deployment))
        if ring is None:
            ring = self._new_ring(group, deployment, slot)
        step = ring[slot % SLOTS]
        if step is None or step[0] != slot:
            step = ring[slot % SLOTS] = [slot, 0, *_NO_LATENCIES]
        if status >= 400:
            step[1] += 1
        step[2 + bisect_right(BOUNDS, seconds)] += 1

    def _new_ring(self, group: str, deployment: str, slot: int) -> list[list[int] | None]:
        self._sync()  # now and then: the wall clock may have been set
        # Rarely: drop the rings that counted nothing for an hour (deleted elsewhere, or idle), so they never pile up.
        for key, old in list(self._rings.items()):
            if all(step is None or step[0] <= slot - SLOTS for step in old):
                del self._rings[key]
        ring: list[list[int] | None] = [None] * SLOTS
        self._rings[group, deployment] = ring
        return ring

    def points(self, group: str, deployment: str, minutes: int, now: float | None = None) -> list[Point]:
        """The last ``minutes`` of steps up to ``now`` (the wall clock's), oldest first, the current one
        last, steps without requests included."""
        current = int(self._wall_clock() if now is None else now) // STEP_S
        ring = self._rings.get((group, deployment)) or [None] * SLOTS
        count = min(SLOTS, minutes * 60 // STEP_S)
        found = []
        for slot in range(current - count + 1, current + 1):
            step = ring[slot % SLOTS]
            when = datetime.fromtimestamp(slot * STEP_S, UTC)
            if step is None or step[0] != slot:
                found.append(Point(when, 0, 0, None, None))
            else:
                latencies = step[2:]
                found.append(Point(when, sum(latencies), step[1], _percentile(latencies, 0.5),
                                   _percentile(latencies, 0.95)))
        return found

    def forget(self, group: str, deployment: str) -> None:
        self._rings.pop((group, deployment), None)


def _percentile(bins: list[int], quantile: float) -> float | None:
    """The latency below which ``quantile`` of the step's requests fell, in ms, interpolated within its bin."""
    total = sum(bins)
    if not total:
        return None
    rank = quantile * total
    seen = 0
    for index, count in enumerate(bins):
        if count and seen + count >= rank:
            low = BOUNDS[index - 1] if index else 0.0
            high = BOUNDS[index] if index < len(BOUNDS) else low
            return round((low + (high - low) * (rank - seen) / count) * 1000, 2)
        seen += count
    return round(BOUNDS[-1] * 1000, 2)
