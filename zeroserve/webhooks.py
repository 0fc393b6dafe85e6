"""(being written)"""

from __future__ import annotations

import asyncio

from zeroserve.platform import Platform


class Dispatcher:
    def __init__(self, platform: Platform) -> None:
        self.platform = platform

    async def run(self) -> None:
        await asyncio.Event().wait()
