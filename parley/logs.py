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

import datetime
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
    return _Formatter(fmt, renderer, foreign_pre_chain=stamp, processors=final)


#: The access line (``parley.http.app.account``): its logger, event and fields.
ACCESS_LOGGER, ACCESS_EVENT = "parley.access", "request"
ACCESS_FIELDS = frozenset({"request_id", "method", "route", "status", "ms"})
_PLAIN_RECORD = frozenset(logging.makeLogRecord({}).__dict__)
#: Characters that make the console renderer ``repr`` a string (structlog's ``ConsoleRenderer._repr``).
_QUOTED = frozenset(" \t=\r\n\"'")
_TIME_FORMAT = "%Y-%m-%dT%H:%M:%S.%fZ"


class _Formatter(structlog.stdlib.ProcessorFormatter):
    """structlog's formatter, with the access line rendered from a template (ADR-0048).

    One line per request went through the whole processor chain (~100 us in
    the console format, a tenth of a read page's server CPU). The template is
    made at start-up *by the same renderer* from placeholder values, so the
    layout (columns, padding, key order) is structlog's own; a record is put
    through it only when it is exactly the access line with plain values
    (strings the renderer would not quote, ints, floats), else the chain runs
    as before. ``tests/unit/test_logs_access_line.py`` compares the two.
    """

    def __init__(self, fmt: str, renderer, **kwargs) -> None:
        super().__init__(**kwargs)
        self._json = fmt == "json"
        self._template = None if self._json else _console_template(renderer)

    def format(self, record: logging.LogRecord) -> str:
        if (
            record.name == ACCESS_LOGGER
            and record.msg == ACCESS_EVENT
            and record.levelno == logging.INFO
            and not record.args
            and not record.exc_info
            and not record.stack_info
        ):
            line = self._access_line(record)
            if line is not None:
                return line
        return super().format(record)

    def _access_line(self, record: logging.LogRecord) -> str | None:
        fields = record.__dict__
        extras = [k for k in fields if k not in _PLAIN_RECORD]
        if len(extras) != len(ACCESS_FIELDS) or not ACCESS_FIELDS.issuperset(extras):
            return None
        stamp = datetime.datetime.now(tz=datetime.timezone.utc).strftime(_TIME_FORMAT)
        if self._json:
            event = {"event": ACCESS_EVENT, "level": "info", "logger": ACCESS_LOGGER, "timestamp": stamp}
            for key in extras:
                event[key] = fields[key]
            try:
                return _dumps(event)
            except TypeError:
                return None
        values = {}
        for key in extras:
            value = fields[key]
            if type(value) is str:
                if not value or not _QUOTED.isdisjoint(value):
                    return None
                values[key] = value
            elif type(value) in (int, float):
                values[key] = repr(value)
            else:
                return None
        return self._template.format(timestamp=stamp, **values)


def _console_template(renderer) -> str:
    """The access line as ``renderer`` lays it out, with ``{field}`` where each value goes."""
    marks = {key: f"\x00{key}\x00" for key in (*ACCESS_FIELDS, "timestamp")}
    event = {"event": ACCESS_EVENT, "level": "info", "logger": ACCESS_LOGGER, **marks}
    line = renderer(None, "info", event).replace("{", "{{").replace("}", "}}")
    for key, mark in marks.items():
        assert line.count(mark) == 1, key
        line = line.replace(mark, "{" + key + "}")
    return line


def configure(level: str = "INFO", fmt: str = "console") -> None:
    """Route every logger to stderr in ``fmt``; quiet the chatty third-party ones."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(formatter(fmt))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(getattr(logging, level.upper(), logging.INFO))
    logging.getLogger("hypercorn.error").setLevel(logging.WARNING)
    logging.getLogger("alembic").setLevel(logging.WARNING)
