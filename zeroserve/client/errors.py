"""The client's failures: ``ApiError`` for whatever the API answered no to or could not be reached for (the
HTTP status, SAP's error code and the message, read from SAP's or OAuth's error body), and
``NotConfigured`` when nothing says which gateway to call or as whom."""

from __future__ import annotations

import httpx

from zeroserve.errors import ZeroserveError


class ApiError(ZeroserveError):
    """The API said no, or could not be reached: the HTTP status (0 when there was no answer), SAP's
    error code (``NotFound``, ``DeploymentNotRunning``, ``invalid_client``, ...) and the message."""

    def __init__(self, status: int, code: str, message: str, *, request_id: str | None = None) -> None:
        super().__init__(message, reason=code)
        self.status = status
        self.code = code
        self.request_id = request_id

    def __str__(self) -> str:
        where = f"HTTP {self.status} " if self.status else ""
        return f"{where}{self.code}: {self.message}"


class NotConfigured(ZeroserveError):
    """Nothing says which gateway to call or with which credentials."""

    reason = "NotConfigured"


def error_of(response: httpx.Response) -> ApiError:
    request_id = response.headers.get("x-request-id")
    try:
        body = response.json()
    except ValueError:
        body = None
    if isinstance(body, dict):
        error = body.get("error")
        if isinstance(error, dict) and "code" in error:  # SAP's {"error": {"code", "message"}}
            return ApiError(response.status_code, str(error["code"]), str(error.get("message", "")),
                            request_id=error.get("requestId") or request_id)
        if isinstance(error, str):  # OAuth's {"error", "error_description"} (RFC 6749 section 5.2)
            return ApiError(response.status_code, error, str(body.get("error_description", error)),
                            request_id=request_id)
    text = response.text.strip()[:300] or response.reason_phrase
    return ApiError(response.status_code, f"HTTP{response.status_code}", text, request_id=request_id)


def unreachable(url: str, error: httpx.TransportError) -> ApiError:
    if isinstance(error, httpx.TimeoutException):
        return ApiError(0, "Timeout", f"{url} did not answer in time ({type(error).__name__})")
    detail = str(error) or type(error).__name__
    return ApiError(0, "Unreachable", f"cannot reach {url}: {detail}")

