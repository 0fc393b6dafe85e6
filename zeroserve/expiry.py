"""(being written)"""

from __future__ import annotations

import asyncio

from zeroserve.platform import Platform


async def enforce_ttl(platform: Platform) -> None:
    await asyncio.Event().wait()
