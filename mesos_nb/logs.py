"""Structured logging for the services: one line per event, ``key=value`` fields.

    2024-05-01T12:00:00.123Z INFO mesos_nb.master task launched task_id=web-1 agent=...-S0

``setup(level)`` configures the root ``mesos_nb`` logger once (``--log-level``, or
``$MESOS_NB_LOG_LEVEL``). ``event(logger, "what", k=v, ...)`` logs an event with fields;
ordinary ``logger.info("...")`` calls work too. Newlines in messages and exception
tracebacks are escaped so that every record stays on one line (grep-able, tail-able).
"""

from __future__ import annotations

import logging
import sys
import time
from typing import Any, TextIO

LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")


def _quote(v: Any) -> str:
    s = str(v)
    if s == "" or any(c in s for c in ' "=\n\t'):
        s = '"' + s.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'
    return s


class LineFormatter(logging.Formatter):
    """ISO-8601 UTC time, level, logger name, message, then ``extra`` fields as ``k=v``."""

    converter = time.gmtime

    def format(self, record: logging.LogRecord) -> str:
        t = time.strftime("%Y-%m-%dT%H:%M:%S", self.converter(record.created))
        msg = record.getMessage()
        fields = getattr(record, "fields", None)
        if fields:
            msg = msg + " " + " ".join(f"{k}={_quote(v)}" for k, v in fields.items())
        if record.exc_info:
            msg += " exc=" + _quote(self.formatException(record.exc_info))
        msg = msg.replace("\r", "\\r").replace("\n", "\\n")
        return f"{t}.{int(record.msecs):03d}Z {record.levelname} {record.name} {msg}"


def parse_level(level: str | int | None) -> int:
    if level is None:
        return logging.INFO
    if isinstance(level, int):
        return level
    name = level.strip().upper()
    if name == "WARN":
        name = "WARNING"
    if name not in LEVELS:
        raise ValueError(f"unknown log level {level!r} (use one of {', '.join(x.lower() for x in LEVELS)})")
    return getattr(logging, name)


_handler: logging.Handler | None = None


def setup(level: str | int | None = "INFO", stream: TextIO | None = None) -> None:
    """Send ``mesos_nb.*`` (and aiohttp's access errors) to ``stream`` (stderr), one line each."""
    global _handler
    lvl = parse_level(level)
    root = logging.getLogger("mesos_nb")
    if _handler is not None:
        root.removeHandler(_handler)
    _handler = logging.StreamHandler(stream or sys.stderr)
    _handler.setFormatter(LineFormatter())
    root.addHandler(_handler)
    root.setLevel(lvl)
    root.propagate = False
    aio = logging.getLogger("aiohttp")
    aio.setLevel(max(lvl, logging.WARNING))
    if _handler not in aio.handlers:
        aio.addHandler(_handler)
    aio.propagate = False


def event(logger: logging.Logger, what: str, level: int = logging.INFO, **fields: Any) -> None:
    """Log one event with structured fields: ``event(log, "task launched", task_id=t)``."""
    if logger.isEnabledFor(level):
        logger.log(level, what, extra={"fields": fields})


__all__ = ["LEVELS", "LineFormatter", "event", "parse_level", "setup"]
