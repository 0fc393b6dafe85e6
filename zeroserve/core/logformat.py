"""How zeroserve's log lines are written: plain text for a terminal (the default), or one JSON object a
line for a log collector (``ZEROSERVE_LOG_FORMAT=json``), with the deployment, event and trace ids
that ``logcontext.ContextFilter`` puts on each record as fields of their own.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any

from pythonjsonlogger.json import JsonFormatter

# What a record carries besides its message (logcontext.ContextFilter), in the order lines show them.
CONTEXT = ("deployment", "event", "trace_id", "span_id")


class TextFormatter(logging.Formatter):
    """Plain lines, with the deployment, event and trace ids a record carries."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)-7s %(name)s: %(message)s", "%H:%M:%S")

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        for key in CONTEXT[:3]:  # a span id says little to a reader of a terminal
            value = getattr(record, key, None)
            if value:
                line += f" {key}={value}"
        return line


class JsonLineFormatter(JsonFormatter):
    """One JSON object a line: time (RFC 3339, UTC), level, logger, message; deployment, event, trace_id
    and span_id where the record has them; exception (its traceback) when there is one; and any
    ``extra`` the call gave."""

    def __init__(self) -> None:
        super().__init__(["asctime", "levelname", "name", "message"], rename_fields={
            "asctime": "time", "levelname": "level", "name": "logger", "exc_info": "exception"})

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:  # noqa: N802 (logging's name)
        return datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")

    def process_log_record(self, log_data: dict[str, Any]) -> dict[str, Any]:
        # Fields of the context that a line is not in are left out, not written as null.
        return {key: value for key, value in log_data.items() if value is not None or key not in CONTEXT}


def formatter(log_format: str) -> logging.Formatter:
    """The formatter of ``Settings.log_format``: "text" or "json"."""
    return JsonLineFormatter() if log_format == "json" else TextFormatter()
