"""Replay protection of inbound webhooks: the webhook-ids already acted on, per sender.

A signed call is believed once. Its id is kept in a JetStream KV bucket for as long as its
timestamp could still pass the time check (twice the tolerance, plus slack), so that every gateway
of a cluster refuses the same replay; after that the time check refuses it on its own.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

from nats.js.api import KeyValueConfig, StorageType
from nats.js.errors import KeyNotFoundError
from nats.js.kv import KeyValue

from zeroserve.core.store import open_bucket
from zeroserve.events import content_id

if TYPE_CHECKING:
    from zeroserve.platform import Platform

SEEN_BUCKET = "zeroserve_webhook_ids"


class SeenIds:
    """The webhook-ids already acted on, for at least as long as a replay could pass the time check."""

    def __init__(self, platform: Platform) -> None:
        self.platform = platform
        # A timestamp passes from tolerance before acceptance until tolerance after: twice that, plus slack.
        self.ttl_s = 2 * platform.settings.webhook_tolerance_s + 60
        self._kv: KeyValue | None = None
        self._lock = asyncio.Lock()

    async def bucket(self) -> KeyValue:
        async with self._lock:
            if self._kv is None:
                js = self.platform.bus.js
                kv = await open_bucket(js, KeyValueConfig(bucket=SEEN_BUCKET, ttl=self.ttl_s, history=1,
                                                          storage=StorageType.FILE,
                                                          replicas=self.platform.settings.nats_replicas))
                status = await kv.status()
                if status.ttl is None or status.ttl < self.ttl_s:  # the tolerance was raised since
                    config = status.stream_info.config
                    config.max_age = self.ttl_s
                    await js.update_stream(config)
                self._kv = kv
            return self._kv

    @staticmethod
    def key(source: str, webhook_id: str) -> str:
        return content_id(source, webhook_id, length=64)

    async def timestamp(self, source: str, webhook_id: str) -> str | None:
        """The timestamp the id was first accepted with, or None when it was not seen."""
        try:
            entry = await (await self.bucket()).get(self.key(source, webhook_id))
        except KeyNotFoundError:
            return None
        return entry.value.decode() if entry.value is not None else None

    async def remember(self, source: str, webhook_id: str, timestamp: str) -> None:
        await (await self.bucket()).put(self.key(source, webhook_id), timestamp.encode())
