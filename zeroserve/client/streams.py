"""Server-sent event streams: ``SseDecoder`` reads events from lines as the HTML standard's event-stream
parsing says, ``EventStream`` yields them from a blocking ``Client`` and ``AsyncEventStream`` from an
``AsyncClient``; each opens its response on first use and is a context manager that closes it. A stream
the connection drops is opened again with ``Last-Event-ID``, the id of the last event it yielded, so
the server goes on after it: no event missed, none twice (up to RECONNECTS times in a row)."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Iterator
from typing import TYPE_CHECKING, Any, Generic, TypeVar

import httpx

from zeroserve.client.errors import unreachable
from zeroserve.client.records import Event

if TYPE_CHECKING:
    from zeroserve.client.asyncio import AsyncClient
    from zeroserve.client.calls import StreamCall
    from zeroserve.client.sync import Client

T = TypeVar("T")

RECONNECTS = 5  # in a row, without an event in between
RECONNECT_DELAY_S = 0.5  # before the first; doubled each time


def _resumable(error: httpx.TransportError, decoder: SseDecoder, attempts: int) -> bool:
    # A wait for the next event that ran out is the caller's timeout, not a dropped connection.
    return not isinstance(error, httpx.TimeoutException) and decoder.last_id is not None and attempts < RECONNECTS


class SseDecoder:
    """Server-sent events from lines, as the HTML standard's event-stream parsing says."""

    def __init__(self) -> None:
        self._type = ""
        self._data: list[str] = []
        self.last_id: str | None = None

    def feed(self, line: str) -> Event | None:
        if line == "":
            return self._dispatch()
        if line.startswith(":"):  # a comment: keep-alive
            return None
        name, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if name == "event":
            self._type = value
        elif name == "data":
            self._data.append(value)
        elif name == "id" and "\0" not in value:
            self.last_id = value
        return None

    def _dispatch(self) -> Event | None:
        if not self._data:
            self._type = ""
            return None
        text = "\n".join(self._data)
        try:
            data: Any = json.loads(text)
        except ValueError:
            data = text
        event = Event(type=self._type or "message", id=self.last_id, data=data)
        self._type, self._data = "", []
        return event


class EventStream(Generic[T]):
    """A blocking server-sent event stream: iterate it; ``with`` it to open it first and close it after."""

    def __init__(self, client: Client, call: StreamCall[T]) -> None:
        self._client = client
        self._call = call
        self._response: httpx.Response | None = None

    def open(self) -> EventStream[T]:
        if self._response is None:
            self._response = self._client._open(self._call.call, self._call.timeout)
        return self

    def __enter__(self) -> EventStream[T]:
        return self.open()

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        if self._response is not None:
            self._response.close()

    def __iter__(self) -> Iterator[T]:
        decoder = SseDecoder()
        attempts = 0
        while True:
            response = self.open()._response
            assert response is not None
            try:
                for line in response.iter_lines():
                    event = decoder.feed(line)
                    if event is not None:
                        attempts = 0
                        parsed = self._call.parse(event)
                        if parsed is not None:
                            yield parsed
                return
            except httpx.TransportError as error:
                if not _resumable(error, decoder, attempts):
                    raise unreachable(self._client.url, error) from None
            assert decoder.last_id is not None
            self.close()
            time.sleep(RECONNECT_DELAY_S * 2**attempts)
            attempts += 1
            self._response, self._call = None, self._call.resumed(decoder.last_id)


class AsyncEventStream(Generic[T]):
    """A server-sent event stream for ``async for``; ``async with`` it to open it first and close it after."""

    def __init__(self, client: AsyncClient, call: StreamCall[T]) -> None:
        self._client = client
        self._call = call
        self._response: httpx.Response | None = None

    async def open(self) -> AsyncEventStream[T]:
        if self._response is None:
            self._response = await self._client._open(self._call.call, self._call.timeout)
        return self

    async def __aenter__(self) -> AsyncEventStream[T]:
        return await self.open()

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        if self._response is not None:
            await self._response.aclose()

    async def __aiter__(self) -> AsyncIterator[T]:
        decoder = SseDecoder()
        attempts = 0
        while True:
            response = (await self.open())._response
            assert response is not None
            try:
                async for line in response.aiter_lines():
                    event = decoder.feed(line)
                    if event is not None:
                        attempts = 0
                        parsed = self._call.parse(event)
                        if parsed is not None:
                            yield parsed
                return
            except httpx.TransportError as error:
                if not _resumable(error, decoder, attempts):
                    raise unreachable(self._client.url, error) from None
            assert decoder.last_id is not None
            await self.close()
            await asyncio.sleep(RECONNECT_DELAY_S * 2**attempts)
            attempts += 1
            self._response, self._call = None, self._call.resumed(decoder.last_id)
