"""A deployment's own choice of how its last replica goes to zero, read from an annotation of its
InferenceService: ``serving.zeroserve.io/idle-window``, ``fixed`` (the platform's ``idle_window_s``
for every deployment, as Knative, KServe and KEDA do) or ``learned`` (a window learned from the
deployment's own idle times: ``zeroserve/serving/idle_window.py``, docs/capacity.md). Empty or absent
is ``fixed``. The shipped serving templates set it from the parameter ``idleWindow``. It acts on this
machine's autoscaler only: on a cluster Knative keeps its own fixed window (docs/cluster.md).
"""

from __future__ import annotations

from typing import Any

from zeroserve.errors import InvalidConfiguration

IDLE_WINDOW = "serving.zeroserve.io/idle-window"
FIXED = "fixed"
LEARNED = "learned"
IDLE_WINDOWS = (FIXED, LEARNED)


def idle_window_of(isvc: dict[str, Any] | None) -> str:
    """``fixed`` or ``learned``; anything else is refused, naming both."""
    annotations = ((isvc or {}).get("metadata") or {}).get("annotations") or {}
    return idle_window_value(annotations.get(IDLE_WINDOW))


def idle_window_value(text: object) -> str:
    if text is None or (isinstance(text, str) and not text.strip()):
        return FIXED
    value = str(text).strip().lower()
    if value not in IDLE_WINDOWS:
        raise InvalidConfiguration(f"{IDLE_WINDOW} (the parameter idleWindow of the shipped templates) must be "
                                   f"{FIXED!r} or {LEARNED!r}, not {text!r}")
    return value
