"""Every log line carries a time, a level, the logger and the event (issue 16 item 8)."""

from __future__ import annotations

import json
import re

import pytest

from tests.support.process import serve, sqlite_url

CONSOLE = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z \[(debug|info|warning|error|critical) *\] \S.* \[[\w.]+\]")


def _exercise(server) -> None:
    with server.client("tok-a") as client:
        client.get("/healthz")
        client.request("TRACE", "/channels")  # a refusal
        client.post("/channels", content=b"{")  # a bad body


def test_json_log_lines_have_timestamp_level_logger_and_event(tmp_path):
    with serve(sqlite_url(tmp_path), tmp_path, PARLEY_LOG_FORMAT="json") as server:
        _exercise(server)
        assert server.terminate() == 0
        lines = server.stderr().splitlines()
    assert len(lines) >= 4
    records = [json.loads(line) for line in lines]
    for record in records:
        assert {"timestamp", "level", "logger", "event"} <= set(record), record
        assert record["timestamp"].endswith("Z")
    requests = [r for r in records if r["event"] == "request"]
    assert [(r["method"], r["status"]) for r in requests] == [("GET", 200), ("TRACE", 405), ("POST", 400)]
    assert {r["logger"] for r in requests} == {"parley.access"}


@pytest.mark.parametrize("flag", [True, False])
def test_console_log_lines_have_timestamp_level_logger_and_event(tmp_path, flag):
    extra = {} if flag else {"PARLEY_LOG_FORMAT": "console"}
    with serve(sqlite_url(tmp_path), tmp_path, **extra) as server:
        _exercise(server)
        assert server.terminate() == 0
        lines = server.stderr().splitlines()
    assert len(lines) >= 4
    for line in lines:
        assert CONSOLE.match(line), line
    assert any("request" in line and "route=healthz" in line and "[parley.access]" in line for line in lines)
