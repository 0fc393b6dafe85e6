"""The blocking client, ``Client``: every operation of ``Operations`` sent with ``httpx.Client`` and answered
at once, its token got or renewed under a thread lock, and a 401 answered by renewing the token once."""

from __future__ import annotations

import threading
import time
from typing import Any, TypeVar

import httpx

from zeroserve.client.calls import Call, StreamCall
from zeroserve.client.errors import ApiError, error_of, unreachable
from zeroserve.client.records import Deployment
from zeroserve.client.streams import EventStream
from zeroserve.client.transport import DEFAULT_GROUP, POLL_S, Transport, http_options, retry_after, running

T = TypeVar("T")


class Client(Transport):
    """The blocking client: ``Client.local()`` for the zeroserve this machine runs, or a URL and credentials.

    >>> with Client.local() as zs:
    ...     for deployment in zs.deployments():
    ...         print(deployment.id, deployment.status)
    """

    def __init__(
        self, url: str, *, token: str | None = None, client_id: str | None = None, client_secret: str | None = None,
        group: str = DEFAULT_GROUP, timeout: float = 30.0, http: httpx.Client | None = None,
    ) -> None:
        super().__init__(url, token=token, client_id=client_id, client_secret=client_secret, group=group,
                         timeout=timeout)
        self._http = http or httpx.Client(**http_options(timeout))
        self._lock = threading.Lock()

    def token(self) -> str:
        """A valid bearer token (got or renewed if needed), e.g. for curl."""
        with self._lock:
            if self._token.stale():
                self._execute(self._token.request())
            assert self._token.value is not None
            return self._token.value

    def _execute(self, call: Call[T], timeout: float | None = None) -> T:
        attempt = 0
        while True:
            try:
                response = self._http.send(self._request(self._http, call, timeout))
            except httpx.TransportError as error:
                raise unreachable(self.url, error) from None
            if (wait := retry_after(response, attempt)) is None:
                break
            time.sleep(wait)
            attempt += 1
        if not response.is_success:
            raise error_of(response)
        return call.parse(response)

    def _send(self, call: Call[T]) -> T:
        if call.authenticated:
            self.token()
        try:
            return self._execute(call)
        except ApiError as error:
            if error.status == 401 and self._token.renewable:
                self._token.expire()
                self.token()
                return self._execute(call)
            raise

    def _open(self, call: Call[Any], timeout: float | None) -> httpx.Response:
        self.token()
        request = self._request(self._http, call, httpx.Timeout(self.timeout, read=timeout))
        try:
            response = self._http.send(request, stream=True)
        except httpx.TransportError as error:
            raise unreachable(self.url, error) from None
        if not response.is_success:
            response.read()
            response.close()
            raise error_of(response)
        return response

    def _stream(self, call: StreamCall[T]) -> EventStream[T]:
        return EventStream(self, call)

    def wait_until_running(self, deployment_id: str, timeout: float = 300.0) -> Deployment:
        """The deployment once RUNNING; ApiError when it settles otherwise (DEAD, STOPPED: its reason) or
        ``timeout`` seconds pass first."""
        deadline = time.monotonic() + timeout
        while True:
            deployment = self.deployment(deployment_id)
            if running(deployment, deadline, timeout):
                return deployment
            time.sleep(POLL_S)

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
