"""Webhook signatures the Standard Webhooks way (https://www.standardwebhooks.com), in both directions.

An HMAC-SHA256 over ``<webhook-id>.<webhook-timestamp>.<body>``, sent as ``webhook-signature:
v1,<base64>``, with a secret written ``whsec_<base64>``: ``sign`` and ``verify`` wrap the reference
library, ``verify`` with a time window that is a setting; the dispatcher signs what it delivers to
subscribers, the inbound routes (``gateway/webhooks.py``) verify what senders post.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import secrets
import time
from datetime import UTC, datetime

from standardwebhooks import Webhook

from zeroserve.errors import ZeroserveError

SECRET_PREFIX = "whsec_"


class InvalidSignature(ZeroserveError):
    reason = "InvalidSignature"



def new_secret() -> str:
    """A signing secret as Standard Webhooks writes it: ``whsec_`` + base64 of 32 random bytes."""
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(32)).decode()


def sign(secret: str | bytes, webhook_id: str, timestamp: int, body: bytes) -> str:
    """The ``webhook-signature`` header value for a body sent at ``timestamp`` (Unix seconds).

    ``secret`` is a ``whsec_`` string, or the raw key bytes (as MLflow uses its secret).
    """
    return Webhook(secret).sign(webhook_id, datetime.fromtimestamp(timestamp, UTC), body.decode())


def verify(
    secret: str | bytes, webhook_id: str | None, timestamp: str | None, signature: str | None, body: bytes,
    tolerance_s: float, now: float | None = None,
) -> int:
    """Check a signed webhook; returns its timestamp, raises ``InvalidSignature`` saying what is wrong.

    The library's own ``Webhook.verify`` has a fixed five-minute window, and the window here is a
    setting, so the timestamp is checked here and the library computes the expected signature.
    """
    missing = [name for name, value in (("webhook-id", webhook_id), ("webhook-timestamp", timestamp),
                                        ("webhook-signature", signature)) if not value]
    if missing:
        raise InvalidSignature(f"missing header(s): {', '.join(missing)}", reason="MissingSignature")
    assert webhook_id and timestamp and signature
    if not timestamp.isdigit():
        raise InvalidSignature(f"webhook-timestamp must be Unix seconds, not {timestamp[:40]!r}",
                               reason="InvalidTimestamp")
    sent = int(timestamp)
    skew = (time.time() if now is None else now) - sent
    if abs(skew) > tolerance_s:
        raise InvalidSignature(
            f"webhook-timestamp is {abs(skew):.0f} s in the {'past' if skew > 0 else 'future'}: "
            f"outside the {tolerance_s:.0f} s window (a replay, or a clock that is off)", reason="StaleTimestamp")
    try:
        expected = base64.b64decode(sign(secret, webhook_id, sent, body).split(",", 1)[1])
    except UnicodeDecodeError:
        raise InvalidSignature("the body is not UTF-8 text", reason="InvalidBody") from None
    for candidate in signature.split():
        version, _, encoded = candidate.partition(",")
        if version != "v1":
            continue
        try:
            given = base64.b64decode(encoded, validate=True)
        except (binascii.Error, ValueError):
            continue
        if hmac.compare_digest(given, expected):
            return sent
    raise InvalidSignature("no webhook-signature matches the body with this source's secret",
                           reason="SignatureMismatch")
