"""What the blocking and the asyncio client share: the gateway URL, the resource group they act in, the
timeout and the token, and how a ``Call`` becomes an HTTP request (its URL, bearer token and
``AI-Resource-Group`` header); sending it is each client's own."""

from __future__ import annotations

import copy
import os
import ssl
import time
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import TYPE_CHECKING, Any, Self

import httpx

from zeroserve.client.calls import Call
from zeroserve.client.credentials import Connection, Token, connection_of
from zeroserve.client.errors import ApiError
from zeroserve.client.operations import Operations
from zeroserve.client.records import Deployment

if TYPE_CHECKING:
    from zeroserve.settings import Settings

DEFAULT_GROUP = "default"
# A 429 or 503 with Retry-After is sent again after the wait it asks, this many times, each wait at most:
RETRIES = 3
MAX_RETRY_WAIT_S = 30.0
# Until a deployment runs, how often wait_until_running asks.
POLL_S = 0.5
SETTLED_OTHERWISE = {"DEAD", "STOPPED", "STOPPING", "COMPLETED"}


def http_options(timeout: float) -> dict[str, Any]:
    """httpx's options for the gateway: proxies (HTTP(S)_PROXY, NO_PROXY) and CA certificates from the
    environment as every HTTP tool reads them: httpx reads SSL_CERT_FILE and SSL_CERT_DIR itself, and
    REQUESTS_CA_BUNDLE (requests' name, which SAP's SDK users set) is read here the same way."""
    bundle = os.environ.get("REQUESTS_CA_BUNDLE")
    options: dict[str, Any] = {"timeout": timeout, "trust_env": True}
    if bundle:
        options["verify"] = ssl.create_default_context(cafile=bundle)
    return options


def retry_after(response: httpx.Response, attempt: int) -> float | None:
    """How long to wait before sending a request again that was answered 429 or 503 with Retry-After
    (seconds or an HTTP date), or None when it is not to be sent again."""
    value = response.headers.get("Retry-After")
    if response.status_code not in (429, 503) or value is None or attempt >= RETRIES:
        return None
    try:
        wait = float(value)
    except ValueError:
        try:
            wait = (parsedate_to_datetime(value) - datetime.now(UTC)).total_seconds()
        except (TypeError, ValueError):
            return None
    return min(max(wait, 0.0), MAX_RETRY_WAIT_S)


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


def running(deployment: Deployment, deadline: float, timeout: float) -> bool:
    """Whether a deployment waited for runs; ApiError when it settled otherwise or the wait is over."""
    if deployment.status == "RUNNING":
        return True
    if deployment.status in SETTLED_OTHERWISE:
        raise ApiError(409, deployment.reason or "NotRunning", f"deployment {deployment.id} is {deployment.status}"
                       + (f": {deployment.status_message}" if deployment.status_message else ""))
    if time.monotonic() >= deadline:
        raise ApiError(408, "Timeout", f"deployment {deployment.id} is still {deployment.status} after {timeout:g} s")
    return False
