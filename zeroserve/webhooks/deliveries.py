"""Each subscription's last deliveries, kept in the store for ``GET /v2/subscriptions`` to show.

The dispatcher notes each delivery's outcome here, in memory (a bounded deque a subscription: no I/O on
the delivery path); ``run`` writes what was noted every ``FLUSH_INTERVAL_S`` as one compare-and-set per
subscription that had deliveries, merged with what is stored, so several watcher replicas keep one list.
"""

from __future__ import annotations

import asyncio
import collections
import logging
from collections.abc import Callable
from datetime import UTC, datetime

import anyio

from zeroserve.core.store import LAST_DELIVERIES, Deliveries, Delivery, Registry
from zeroserve.redaction import redact

log = logging.getLogger(__name__)

FLUSH_INTERVAL_S = 0.5
# An error text is the receiver's business, not a place for a page of it.
ERROR_LENGTH = 300


class DeliveryLog:
    """Outcomes noted by the dispatcher, written to the store in batches."""

    def __init__(self, registry: Registry[Deliveries], exists: Callable[[str, str], bool] = lambda *_: True) -> None:
        self.registry = registry
        # Whether a subscription still exists: a deleted one's outcomes noted meanwhile are not written back.
        self.exists = exists
        self._noted: dict[tuple[str, str], collections.deque[Delivery]] = {}

    def note(self, group: str, subscription_id: str, *, event_id: str, event_type: str, delivered: bool,
             status: int | None, error: str | None, attempts: int, started: float, ended: float) -> None:
        delivery = Delivery(at=datetime.now(UTC), event_id=event_id, event_type=event_type, delivered=delivered,
                            status=status, error=redact(error)[:ERROR_LENGTH] if error else None, attempts=attempts,
                            duration_ms=round((ended - started) * 1000))
        self._noted.setdefault((group, subscription_id), collections.deque(maxlen=LAST_DELIVERIES)).append(delivery)

    async def run(self) -> None:
        """Flush every ``FLUSH_INTERVAL_S`` until cancelled, and once more then."""
        try:
            while True:
                await asyncio.sleep(FLUSH_INTERVAL_S)
                await self.flush()
        finally:
            with anyio.CancelScope(shield=True):
                await self.flush()

    async def flush(self) -> None:
        noted, self._noted = self._noted, {}
        for (group, subscription_id), new in noted.items():
            if not self.exists(group, subscription_id):
                continue
            def merged(current: Deliveries | None, new: collections.deque[Delivery] = new) -> Deliveries:
                kept = [*reversed(new), *(current.deliveries if current else [])]
                kept.sort(key=lambda delivery: delivery.at, reverse=True)
                return Deliveries(deliveries=kept[:LAST_DELIVERIES])
            try:
                await self.registry.update(group, subscription_id, merged)
            except asyncio.CancelledError:
                raise
            except Exception as error:  # NATS away: these outcomes are lost, the deliveries were not
                log.warning("webhooks out: could not record the deliveries of subscription %s: %s",
                            subscription_id, error)
