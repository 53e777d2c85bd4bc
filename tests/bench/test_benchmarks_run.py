"""The benchmark scenarios run end to end (``parley bench <scenario> --quick``, SQLite).

Each scenario starts a real ``parley serve`` subprocess, drives it over
loopback and ends its stdout with one JSON line; the correctness checks in
that line must hold: exactly one ``granted`` per claim race (and the ledger
names the winner), every SSE/WebSocket subscriber got every message exactly
once and in order, no append failed, every scan saw every message.
"""

from __future__ import annotations

import pytest

from tests.bench._run import BENCHMARKS, run_bench

pytestmark = pytest.mark.skipif(not (BENCHMARKS / "http_bench.py").is_file(), reason="no benchmarks/ checkout")


def test_append_quick():
    report = run_bench("append")
    result = report["scenarios"]["append"]
    assert report["checks"]["append.no_errors"] is True
    rows = result["sqlite"]
    for case in ("one_channel_c1", "one_channel_c16", "one_channel_c64", "16_channels_c16"):
        assert rows[case]["ok"] > 0 and rows[case]["errors"] == {}, (case, rows[case])
        assert rows[case]["rate"] > 0 and rows[case]["p99_ms"] >= rows[case]["p50_ms"] > 0
    assert result["ceiling_c16"]["ok"] > 0
    assert rows["ratio_parley_over_ceiling_c16"]["one_channel"] > 0


def test_scan_quick():
    report = run_bench("scan")
    result = report["scenarios"]["scan"]["sqlite"]
    assert report["checks"]["scan.complete_scans"] is True
    assert result["complete"] is True and result["messages"] == 1000
    assert result["msgs_per_s_median"] > 0 and result["ratio_pages_over_ceiling_c1"] > 0


def test_claims_quick_one_grant_per_round():
    report = run_bench("claims")
    result = report["scenarios"]["claims"]["sqlite"]
    assert report["checks"]["claims.one_grant_per_round"] is True
    assert report["checks"]["claims.ledger_agrees"] is True
    assert result["one_grant_per_round"] is True and result["bad_rounds"] == []
    assert result["rounds"] >= 3 and result["clients"] == 16
    assert result["errors"] == {}


def test_fanout_quick_every_subscriber_every_message_once():
    report = run_bench("fanout")
    rows = report["scenarios"]["fanout"]["sqlite"]
    assert report["checks"]["fanout.every_subscriber_every_message_once"] is True
    assert report["checks"]["fanout.streams_released"] is True
    cases = {k: v for k, v in rows.items() if isinstance(v, dict)}
    assert {"sse_1", "sse_16", "ws_1", "ws_16"} <= set(cases)
    assert any(k.startswith("burst_") for k in cases)
    for name, case in cases.items():
        assert case["complete"] is True, (name, case["problems"])
        assert case["deliveries"] == case["messages"] * case["subscribers"], name
