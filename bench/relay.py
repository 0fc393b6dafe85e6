"""The floor of any proxy here: a bare TCP relay, bytes passed between caller and model server with
no HTTP parsed, no token checked, nothing counted. It runs on the gateway's event loop, in the
gateway's process, so that what it adds to a request is what one more hop costs on this machine
(the kernel's loopback, one more process woken, the loop's turn), and what the gateway adds beyond
it is the gateway's own work.
"""

from __future__ import annotations

import asyncio
from typing import Any


class _Side(asyncio.Protocol):
    """One end of a relayed connection: what it receives goes out of the other end."""

    def __init__(self) -> None:
        self.transport: Any = None  # uvloop's transports are not asyncio.Transport instances
        self.peer: _Side | None = None
        self.pending: list[bytes] = []

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        if self.peer is not None and self.peer.transport is not None:
            self.peer.transport.write(data)
        else:
            self.pending.append(data)

    def connection_lost(self, exc: Exception | None) -> None:
        if self.peer is not None and self.peer.transport is not None:
            self.peer.transport.close()


async def start_relay(host: str, port: int) -> tuple[asyncio.Server, int]:
    """A relay to ``host:port`` on a free loopback port: the server, and its port."""
    loop = asyncio.get_running_loop()
    connecting: set[asyncio.Task[None]] = set()

    def accepted() -> _Side:
        caller = _Side()

        async def connect() -> None:
            _, upstream = await loop.create_connection(_Side, host, port)
            upstream.peer, caller.peer = caller, upstream
            for data in caller.pending:
                upstream.transport.write(data)
            caller.pending.clear()

        task = loop.create_task(connect())
        connecting.add(task)
        task.add_done_callback(connecting.discard)
        return caller

    server = await loop.create_server(accepted, "127.0.0.1", 0)
    return server, server.sockets[0].getsockname()[1]
