"""A deployment's own bounds on its inference requests, read from annotations of its InferenceService:

- ``serving.zeroserve.io/request-timeout``: seconds the model server may stay silent, before its
  answer starts and between two parts of it (a stream that keeps writing may last as long as it
  writes), e.g. ``"600"`` for a long generation;
- ``serving.zeroserve.io/max-request-body``: the largest request body, in bytes or with a binary
  suffix (``"512Ki"``, ``"100Mi"``, ``"1Gi"``).

Empty or absent, each is the platform's setting (``request_timeout_s``, ``max_request_body``). The
shipped serving templates set them from the parameters ``requestTimeout`` and ``maxRequestBody``.
The gateway enforces both, for replicas on this machine and for InferenceServices on a cluster.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any

from zeroserve.errors import InvalidConfiguration

REQUEST_TIMEOUT = "serving.zeroserve.io/request-timeout"
MAX_REQUEST_BODY = "serving.zeroserve.io/max-request-body"
_SIZE = re.compile(r"^\s*(\d+)\s*(Ki|Mi|Gi|Ti)?\s*$")
_UNITS = {None: 1, "Ki": 1 << 10, "Mi": 1 << 20, "Gi": 1 << 30, "Ti": 1 << 40}
# A day: a bound a request can reach only by mistake, not a limit on long generations.
_LONGEST_TIMEOUT_S = 86_400.0


@dataclass(frozen=True)
class RequestLimits:
    """What one deployment's requests may take: None where the platform's setting applies."""

    timeout_s: float | None = None
    max_body: int | None = None

    @classmethod
    def from_inference_service(cls, isvc: dict[str, Any] | None) -> RequestLimits:
        annotations = ((isvc or {}).get("metadata") or {}).get("annotations") or {}
        return cls(timeout_s=timeout_of(annotations.get(REQUEST_TIMEOUT)),
                   max_body=size_of(annotations.get(MAX_REQUEST_BODY)))


def timeout_of(text: object) -> float | None:
    if text is None or (isinstance(text, str) and not text.strip()):
        return None
    try:
        seconds = float(str(text))
    except ValueError:
        seconds = math.nan
    if not 0 < seconds <= _LONGEST_TIMEOUT_S:  # NaN fails this too
        raise InvalidConfiguration(f"{REQUEST_TIMEOUT} must be a number of seconds between 0 and "
                                   f"{_LONGEST_TIMEOUT_S:g}, not {text!r}")
    return seconds


def size_of(text: object) -> int | None:
    if text is None or (isinstance(text, str) and not text.strip()):
        return None
    found = _SIZE.match(str(text))
    if found is None or int(found[1]) == 0:
        raise InvalidConfiguration(f"{MAX_REQUEST_BODY} must be a positive number of bytes, optionally with "
                                   f"Ki, Mi, Gi or Ti (e.g. 100Mi), not {text!r}")
    return int(found[1]) * _UNITS[found[2]]
