"""Which event, deployment and trace a log line is about, without handing them to every call.

The runner sets the event and the deployment while a function handles an event; ``ContextFilter``
adds them to every log record made meanwhile (as ``record.event`` and ``record.deployment``), and,
with tracing on, the current span's ids (``record.trace_id``, ``record.span_id``), so any line, ours
or a library's, can be traced back to its event, deployment and trace.
"""

from __future__ import annotations

import logging
from contextvars import ContextVar

from zeroserve.core import tracing

event_id: ContextVar[str | None] = ContextVar("event_id", default=None)
deployment_id: ContextVar[str | None] = ContextVar("deployment_id", default=None)


class ContextFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, "event", None) is None:
            record.event = event_id.get()
        if getattr(record, "deployment", None) is None:
            record.deployment = deployment_id.get()
        if tracing.tracer is not None and getattr(record, "trace_id", None) is None:
            ids = tracing.current_ids()
            record.trace_id, record.span_id = ids if ids is not None else (None, None)
        return True
