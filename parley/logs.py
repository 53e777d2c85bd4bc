"""One log format for every logger in the process (structlog over stdlib logging).

parley, Hypercorn and Alembic all log through the standard library; this
module gives the root logger one handler whose structlog ``ProcessorFormatter``
stamps every record with the same fields, whoever emitted it:

* ``timestamp`` (ISO 8601, UTC), ``level``, ``logger``, ``event`` (the message);
* the ``extra={...}`` fields of the call (the access log's request id, route,
  status and duration);
* ``exception``, the formatted traceback, when the record carries one: one
  JSON field, never loose lines on stderr.

``json`` renders one JSON object per line (for log shippers); ``console``
renders ``2026-12-01T21:45:00.123Z [info     ] request  [parley.access] route=healthz …``
for a person at a terminal. The admin audit lines are not logs: their exact
JSON shape is part of the channel contract, so they bypass this.
"""

from __future__ import annotations

import logging
import sys

import orjson
import structlog

FORMATS = ("console", "json")
LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")


def _dumps(event: dict, **_kw) -> str:
    return orjson.dumps(event, default=str).decode()


def formatter(fmt: str) -> logging.Formatter:
    if fmt not in FORMATS:
        raise ValueError(f"log format must be one of {', '.join(FORMATS)}")
    renderer = (
        structlog.processors.JSONRenderer(serializer=_dumps)
        if fmt == "json"
        else structlog.dev.ConsoleRenderer(colors=False, pad_event=24)
    )
    stamp = [
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="%Y-%m-%dT%H:%M:%S.%fZ", utc=True),
        structlog.stdlib.ExtraAdder(),
    ]
    final = [structlog.stdlib.ProcessorFormatter.remove_processors_meta]
    if fmt == "json":
        final.append(structlog.processors.format_exc_info)
    final.append(renderer)
    return structlog.stdlib.ProcessorFormatter(foreign_pre_chain=stamp, processors=final)


def configure(level: str = "INFO", fmt: str = "console") -> None:
    """Route every logger to stderr in ``fmt``; quiet the chatty third-party ones."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(formatter(fmt))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(getattr(logging, level.upper(), logging.INFO))
    logging.getLogger("hypercorn.error").setLevel(logging.WARNING)
    logging.getLogger("alembic").setLevel(logging.WARNING)
