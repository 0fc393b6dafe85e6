"""What the blocking and the asyncio client share: the gateway URL, the resource group they act in, the
timeout and the token, and how a ``Call`` becomes an HTTP request (its URL, bearer token and
``AI-Resource-Group`` header); sending it is each client's own."""

from __future__ import annotations

import copy
from typing import TYPE_CHECKING, Any, Self

import httpx

from zeroserve.client.calls import Call
from zeroserve.client.credentials import Connection, Token, connection_of
from zeroserve.client.operations import Operations

if TYPE_CHECKING:
    from zeroserve.settings import Settings

DEFAULT_GROUP = "default"


class Transport(Operations):
    """The half of ``Client`` and ``AsyncClient`` that does not depend on how a request is sent."""

    def __init__(
        self, url: str, *, token: str | None = None, client_id: str | None = None, client_secret: str | None = None,
        group: str = DEFAULT_GROUP, timeout: float = 30.0,
    ) -> None:
        self.url = url.rstrip("/")
        self.group = group
        self.timeout = timeout
        self._token = Token(token, client_id, client_secret)

    @classmethod
    def local(
        cls, settings: Settings | None = None, *, group: str = DEFAULT_GROUP, connection: Connection | None = None,
        timeout: float = 30.0,
    ) -> Self:
        """A client configured from settings / the environment, else the local ``zeroserve up``."""
        found = connection or connection_of(settings)
        return cls(found.url, token=found.token, client_id=found.client_id, client_secret=found.client_secret,
                   group=group, timeout=timeout)

    def in_group(self, group: str) -> Self:
        """The same client (connection and token) acting in another resource group."""
        other = copy.copy(self)
        other.group = group
        return other

    def _request(self, http: httpx.Client | httpx.AsyncClient, call: Call[Any], timeout: Any = None) -> httpx.Request:
        headers = dict(call.headers)
        if call.authenticated:
            assert self._token.value is not None
            headers["Authorization"] = f"Bearer {self._token.value}"
        if call.group is not None:
            headers["AI-Resource-Group"] = call.group
        url = call.path if call.path.startswith(("http://", "https://")) else f"{self.url}{call.path}"
        extensions = {"timeout": httpx.Timeout(timeout).as_dict()} if timeout is not None else {}
        return http.build_request(call.method, url, params=call.params, json=call.json, content=call.content,
                                  headers=headers, extensions=extensions)
