"""The last cold starts of each deployment on this machine, where each went by phase: what the
console's cold-start chart shows (``GET /v2/lm/deployments/{id}/coldStarts``) and what the
``zeroserve_cold_start_phase_seconds`` histogram counts. One entry per replica that started for a
waiting request, recorded by the activator once the first answer began; the last ``KEPT`` of each
deployment are kept, in memory, and dropped with the deployment.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from zeroserve.core import metrics

KEPT = 50


@dataclass(frozen=True)
class ColdStart:
    """One replica's cold start: when the request that waited for it arrived, how long it took until the
    answer began, and that time by phase (queued, replica-start, model-load, ready, forward), in seconds."""

    replica: str
    started_at: datetime
    total_s: float
    phases: dict[str, float]


class ColdStarts:
    """Each deployment's last ``KEPT`` cold starts, newest first."""

    def __init__(self) -> None:
        self._kept: dict[tuple[str, str], deque[ColdStart]] = {}

    def record(self, group: str, deployment: str, replica: str, phases: dict[str, float], total_s: float) -> None:
        started_at = datetime.now(UTC) - timedelta(seconds=total_s)
        kept = self._kept.setdefault((group, deployment), deque(maxlen=KEPT))
        kept.appendleft(ColdStart(replica=replica, started_at=started_at, total_s=total_s, phases=dict(phases)))
        for phase, seconds in phases.items():
            metrics.cold_start_phase_seconds.labels(group, deployment, phase).observe(seconds)

    def of(self, group: str, deployment: str) -> list[ColdStart]:
        return list(self._kept.get((group, deployment), ()))

    def forget(self, group: str, deployment: str) -> None:
        self._kept.pop((group, deployment), None)
