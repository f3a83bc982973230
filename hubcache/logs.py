"""Structured log lines: a stable event name, then the record's fields as key=value."""

from __future__ import annotations

import json
import logging
import sys

_STANDARD = set(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime"}


class EventFormatter(logging.Formatter):
    """``2026-11-21T10:00:00 INFO hubcache.fetch.done key=… bytes=… seconds=…``"""

    def format(self, record: logging.LogRecord) -> str:
        fields = {k: v for k, v in vars(record).items() if k not in _STANDARD}
        text = " ".join(f"{k}={json.dumps(v, default=str)}" for k, v in fields.items())
        when = self.formatTime(record, "%Y-%m-%dT%H:%M:%S")
        line = f"{when} {record.levelname} {record.getMessage()}"
        line = f"{line} {text}" if text else line
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        return line


def configure(level: int = logging.INFO) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(EventFormatter())
    root = logging.getLogger("hubcache")
    root.handlers[:] = [handler]
    root.setLevel(level)
    root.propagate = False
