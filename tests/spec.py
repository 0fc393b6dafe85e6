"""Checks responses against SAP's AI API spec (``tests/data/reference/aicore-openapi-2.42.0.yaml``).

``assert_conforms(response)`` finds the operation by method and path (the spec's paths sit under
the server URL's ``/v2``) and validates the request's parameters and the response's status,
headers and body against it with openapi-core, so a test fails when zeroserve answers something
an AI Core client would not expect.
"""

from __future__ import annotations

import functools
from urllib.parse import parse_qsl

import httpx
from openapi_core import Config, OpenAPI
from openapi_core.datatypes import RequestParameters
from reference import reference_dir
from werkzeug.datastructures import Headers, ImmutableMultiDict

SPEC = reference_dir() / "aicore-openapi-2.42.0.yaml"
# The spec's server is https://api.ai.<region>.ml.hana.ondemand.com/v2: requests are matched as if sent there.
SERVER = "https://api.ai.prod.eu-central-1.aws.ml.hana.ondemand.com"


def _plain_text(body: bytes, charset: str = "utf-8", **_: str) -> int | str:
    # The spec's only text/plain answers are the $count integers; openapi-core would keep "3" a
    # string and then find it is not of type integer, whatever the server sent.
    text = body.decode(charset)
    return int(text) if text.isdigit() else text


@functools.cache
def spec() -> OpenAPI:
    return OpenAPI.from_file_path(str(SPEC), config=Config(extra_media_type_deserializers={"text/plain": _plain_text}))


class _Request:
    def __init__(self, request: httpx.Request) -> None:
        self._request = request
        query = ImmutableMultiDict(parse_qsl(request.url.query.decode(), keep_blank_values=True))
        self.parameters = RequestParameters(query=query, header=Headers(dict(request.headers)), cookie={})

    host_url = SERVER

    @property
    def path(self) -> str:
        return self._request.url.path

    @property
    def method(self) -> str:
        return self._request.method.lower()

    @property
    def body(self) -> bytes | None:
        return self._request.content or None

    @property
    def content_type(self) -> str:
        return self._request.headers.get("content-type", "").lower()


class _Response:
    def __init__(self, response: httpx.Response) -> None:
        self._response = response

    @property
    def status_code(self) -> int:
        return self._response.status_code

    @property
    def content_type(self) -> str:
        return self._response.headers.get("content-type", "").lower()

    @property
    def headers(self) -> Headers:
        return Headers(dict(self._response.headers))

    @property
    def data(self) -> bytes:
        return self._response.content


def assert_conforms(response: httpx.Response) -> httpx.Response:
    """Fail unless ``response`` (and the request that got it) is what the SAP spec says; returns it."""
    try:
        spec().validate_response(_Request(response.request), _Response(response))
    except Exception as error:  # openapi-core's errors carry the detail in __cause__ / schema_errors
        details = [str(error)]
        cause = error.__cause__
        while cause is not None:
            details.append(str(cause))
            for sub in getattr(cause, "schema_errors", ()) or ():
                details.append(f"  - {sub.message} at {list(sub.absolute_path)}")
            cause = cause.__cause__
        raise AssertionError(
            f"{response.request.method} {response.request.url.path} -> {response.status_code} does not conform "
            f"to the SAP spec:\n" + "\n".join(details) + f"\nbody: {response.text[:2000]}"
        ) from None
    return response
