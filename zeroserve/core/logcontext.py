"""Which event and which deployment a log line is about, without handing them to every call.

The runner sets both while a function handles an event; ``ContextFilter`` adds them to every log
record made meanwhile (as ``record.event`` and ``record.deployment``), so any line, ours or a
library's, can be traced back to its event and deployment.
"""

from __future__ import annotations

import logging
from contextvars import ContextVar

event_id: ContextVar[str | None] = ContextVar("event_id", default=None)
deployment_id: ContextVar[str | None] = ContextVar("deployment_id", default=None)


class ContextFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, "event", None) is None:
            record.event = event_id.get()
        if getattr(record, "deployment", None) is None:
            record.deployment = deployment_id.get()
        return True
