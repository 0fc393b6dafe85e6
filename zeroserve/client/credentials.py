"""Which gateway to call and as whom: a ``Connection`` from settings or from what a local ``zeroserve up``
wrote into the data directory, and the ``Token`` the client carries, given as is or traded for a client id
and secret at ``/oauth/token`` and renewed shortly before it expires."""

from __future__ import annotations

import json
from dataclasses import dataclass
from time import monotonic
from typing import TYPE_CHECKING
from urllib.parse import urlencode

import httpx

from zeroserve.client.calls import Call
from zeroserve.client.errors import NotConfigured

if TYPE_CHECKING:
    from zeroserve.settings import Settings

# A token is renewed this long before it expires, so a request never carries one that lapses in flight.
REFRESH_MARGIN_S = 60.0


@dataclass(frozen=True)
class Connection:
    """Which gateway to call and as whom."""

    url: str
    token: str | None = None
    client_id: str | None = None
    client_secret: str | None = None


def connection(settings: Settings) -> Connection:
    """The gateway and credentials: from settings (``ZEROSERVE_API_URL``, ``ZEROSERVE_TOKEN`` or
    ``ZEROSERVE_CLIENT_ID`` + ``ZEROSERVE_CLIENT_SECRET``), else what a local ``zeroserve up`` wrote
    into the data directory (``gateway.url``, ``credentials.json``)."""
    url = settings.api_url
    url_file = settings.data_dir / "gateway.url"
    if url is None:
        if not url_file.exists():
            raise NotConfigured(f"zeroserve is not running here (no {url_file}): start it with `zeroserve up`, "
                                "or set ZEROSERVE_API_URL")
        url = url_file.read_text().strip()
    if settings.token is not None:
        return Connection(url, token=settings.token.get_secret_value())
    if settings.client_id and settings.client_secret is not None:
        return Connection(url, client_id=settings.client_id, client_secret=settings.client_secret.get_secret_value())
    credentials = settings.data_dir / "credentials.json"
    try:
        known = json.loads(credentials.read_text())
        return Connection(url, client_id=str(known["client_id"]), client_secret=str(known["client_secret"]))
    except FileNotFoundError:
        raise NotConfigured(f"no credentials for {url}: set ZEROSERVE_TOKEN, or ZEROSERVE_CLIENT_ID and "
                            f"ZEROSERVE_CLIENT_SECRET (no {credentials} of a local `zeroserve up` either)") from None
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise NotConfigured(f"cannot read {credentials}: {error}") from None


def connection_of(settings: Settings | None) -> Connection:
    if settings is None:
        from zeroserve.settings import Settings

        settings = Settings()
    return connection(settings)


class Token:
    """The bearer token: given as is, or got with a client id and secret and renewed before it expires."""

    def __init__(self, token: str | None, client_id: str | None, client_secret: str | None) -> None:
        if token is None and not (client_id and client_secret):
            raise NotConfigured("a token, or a client id and secret, is needed")
        self.value = token
        self.client_id = client_id
        self.client_secret = client_secret
        self.expires_at = float("inf") if token is not None else 0.0

    @property
    def renewable(self) -> bool:
        return self.client_id is not None and self.client_secret is not None

    def stale(self) -> bool:
        return self.value is None or (self.renewable and monotonic() >= self.expires_at)

    def request(self) -> Call[None]:
        assert self.client_id is not None and self.client_secret is not None

        def accept(response: httpx.Response) -> None:
            body = response.json()
            lifetime = float(body.get("expires_in", 3600))
            self.value = str(body["access_token"])
            # Renew at the margin, or halfway for tokens that live less than two margins.
            self.expires_at = monotonic() + max(lifetime - REFRESH_MARGIN_S, lifetime / 2)

        form = urlencode({"grant_type": "client_credentials", "client_id": self.client_id,
                          "client_secret": self.client_secret})
        return Call("POST", "/oauth/token", accept, content=form.encode(), authenticated=False,
                    headers={"Content-Type": "application/x-www-form-urlencoded"})

    def expire(self) -> None:
        if self.renewable:
            self.value = None
