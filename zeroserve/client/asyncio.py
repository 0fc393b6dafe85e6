"""The asyncio client, ``AsyncClient``: the same operations as ``Client``, sent with ``httpx.AsyncClient``
and awaited, its token got or renewed under an asyncio lock, and a 401 answered by renewing the token once."""

from __future__ import annotations

import asyncio
import time
from typing import Any, TypeVar

import httpx

from zeroserve.client.calls import Call, StreamCall
from zeroserve.client.errors import ApiError, error_of, unreachable
from zeroserve.client.records import Deployment
from zeroserve.client.streams import AsyncEventStream
from zeroserve.client.transport import DEFAULT_GROUP, POLL_S, Transport, http_options, retry_after, running

T = TypeVar("T")


class AsyncClient(Transport):
    """The asyncio client: the same operations as ``Client``, awaited.

    >>> async with AsyncClient.local() as zs:
    ...     deployment = await zs.deployment("iris")
    """

    def __init__(
        self, url: str, *, token: str | None = None, client_id: str | None = None, client_secret: str | None = None,
        group: str = DEFAULT_GROUP, timeout: float = 30.0, http: httpx.AsyncClient | None = None,
    ) -> None:
        super().__init__(url, token=token, client_id=client_id, client_secret=client_secret, group=group,
                         timeout=timeout)
        self._http = http or httpx.AsyncClient(**http_options(timeout))
        self._lock: asyncio.Lock | None = None

    async def token(self) -> str:
        """A valid bearer token (got or renewed if needed)."""
        # Created here, not in __init__: a lock belongs to the loop that first uses it.
        if self._lock is None:
            self._lock = asyncio.Lock()
        async with self._lock:
            if self._token.stale():
                await self._execute(self._token.request())
            assert self._token.value is not None
            return self._token.value

    async def _execute(self, call: Call[T], timeout: float | None = None) -> T:
        attempt = 0
        while True:
            try:
                response = await self._http.send(self._request(self._http, call, timeout))
            except httpx.TransportError as error:
                raise unreachable(self.url, error) from None
            if (wait := retry_after(response, attempt)) is None:
                break
            await asyncio.sleep(wait)
            attempt += 1
        if not response.is_success:
            raise error_of(response)
        return call.parse(response)

    async def _send(self, call: Call[T]) -> T:
        if call.authenticated:
            await self.token()
        try:
            return await self._execute(call)
        except ApiError as error:
            if error.status == 401 and self._token.renewable:
                self._token.expire()
                await self.token()
                return await self._execute(call)
            raise

    async def _open(self, call: Call[Any], timeout: float | None) -> httpx.Response:
        await self.token()
        request = self._request(self._http, call, httpx.Timeout(self.timeout, read=timeout))
        try:
            response = await self._http.send(request, stream=True)
        except httpx.TransportError as error:
            raise unreachable(self.url, error) from None
        if not response.is_success:
            await response.aread()
            await response.aclose()
            raise error_of(response)
        return response

    def _stream(self, call: StreamCall[T]) -> AsyncEventStream[T]:
        return AsyncEventStream(self, call)

    async def wait_until_running(self, deployment_id: str, timeout: float = 300.0) -> Deployment:
        """The deployment once RUNNING; ApiError when it settles otherwise (DEAD, STOPPED: its reason) or
        ``timeout`` seconds pass first."""
        deadline = time.monotonic() + timeout
        while True:
            deployment = await self.deployment(deployment_id)
            if running(deployment, deadline, timeout):
                return deployment
            await asyncio.sleep(POLL_S)

    async def aclose(self) -> None:
        await self._http.aclose()

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()
