"""The access line's template (ADR-0048) renders exactly what structlog's processor chain does."""

from __future__ import annotations

import logging
import re

import pytest
import structlog

from parley import logs

STAMP = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z")

ACCESS = [
    {"request_id": "0123456789abcdef0123456789abcdef", "method": "POST", "route": "read", "status": 200, "ms": 0.123},
    {"request_id": "client-id_1.2:3", "method": "GET", "route": "unmatched", "status": 404, "ms": 12.5},
    {"request_id": "has space", "method": "POST", "route": "read", "status": 400, "ms": 1.0},
    {"request_id": "quo'te", "method": "POST", "route": "read", "status": 400, "ms": 1e-05},
    {"request_id": 'dq"x', "method": "PUT", "route": "append", "status": 201, "ms": 1234567.891},
    {"request_id": "a=b", "method": "POST", "route": "read", "status": 200, "ms": 0.0},
    {"request_id": "tab\there", "method": "POST", "route": "read", "status": 200, "ms": 2.0},
    {"request_id": "", "method": "POST", "route": "read", "status": 200, "ms": 2.0},
    {"request_id": "ünïcode✓", "method": "POST", "route": "read", "status": 200, "ms": 2.0},
    {"request_id": "{braces}", "method": "POST", "route": "read", "status": 200, "ms": 2.0},
    {"request_id": "x", "method": "POST", "route": "read", "status": True, "ms": 2.0},
    {"request_id": "x", "method": "POST", "route": "read", "status": 200, "ms": float("nan")},
    {"request_id": "x", "method": "POST", "route": "read", "status": 200},  # a field missing
    {"request_id": "x", "method": "POST", "route": "read", "status": 200, "ms": 1.0, "extra": "y"},
]


def _reference(fmt: str) -> logging.Formatter:
    """structlog's formatter exactly as parley builds it, without the template."""
    fast = logs.formatter(fmt)
    return structlog.stdlib.ProcessorFormatter(foreign_pre_chain=fast.foreign_pre_chain, processors=fast.processors)


def _record(name: str, msg: str, extra: dict, level: int = logging.INFO) -> logging.LogRecord:
    record = logging.LogRecord(name, level, __file__, 1, msg, (), None)
    record.__dict__.update(extra)
    return record


@pytest.mark.parametrize("fmt", logs.FORMATS)
@pytest.mark.parametrize("extra", ACCESS, ids=range(len(ACCESS)))
def test_the_access_line_is_the_chain_s_line(fmt, extra):
    fast, reference = logs.formatter(fmt), _reference(fmt)
    got = fast.format(_record("parley.access", "request", extra))
    want = reference.format(_record("parley.access", "request", extra))
    assert STAMP.sub("T", got) == STAMP.sub("T", want)


@pytest.mark.parametrize("fmt", logs.FORMATS)
def test_other_records_take_the_chain(fmt):
    fast, reference = logs.formatter(fmt), _reference(fmt)
    extra = ACCESS[0]
    for name, msg, level in (("parley.access", "other", logging.INFO), ("parley.http", "request", logging.INFO),
                             ("parley.access", "request", logging.WARNING)):
        got = fast.format(_record(name, msg, extra, level))
        want = reference.format(_record(name, msg, extra, level))
        assert STAMP.sub("T", got) == STAMP.sub("T", want)


def test_the_plain_access_line_takes_the_template():
    fast = logs.formatter("console")
    assert fast._access_line(_record("parley.access", "request", ACCESS[0])) is not None
    assert fast._access_line(_record("parley.access", "request", ACCESS[2])) is None  # quoted: the chain
