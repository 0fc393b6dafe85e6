"""A shared warm pool: K generic replicas per class, started ahead, that a cold deployment takes instead of a fresh one.

A pooled replica has its runtime up (process, CUDA context, libraries) and only loads the model, so the
cold start it serves takes `load_fraction` of a fresh one. The pool refills the replica it gave away
with a fresh start (its class's median cold start). A pool of K replicas is K always-on replicas.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Pool:
    size: int  # replicas per class (CPU and GPU each)
    load_fraction: float = 0.5


def served(time_s: np.ndarray, size: int, refill_s: float) -> np.ndarray:
    """Which of the cold starts (at `time_s`, sorted) find a pooled replica free, first come first served."""
    hit = np.zeros(len(time_s), dtype=bool)
    taken: deque[float] = deque()  # when each replica given away in the last refill_s was taken
    for i, t in enumerate(time_s.tolist()):
        while taken and taken[0] <= t - refill_s:
            taken.popleft()
        if len(taken) < size:
            taken.append(t)
            hit[i] = True
    return hit
