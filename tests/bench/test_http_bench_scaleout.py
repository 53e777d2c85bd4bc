"""The multi-process benchmark scenarios run end to end on Postgres (``--quick``).

``parley bench scaleout``: ``parley serve`` and ``parley serve --workers 2``, each
on a fresh schema, under the ``append`` closed loop; after every case the
channels read back hold exactly the msg_ids acknowledged 201 (none missing,
none duplicated). ``parley bench fanout2``: two ``parley serve`` processes on one
schema, appends to A and SSE/WebSocket subscribers on B; every subscriber got
every message exactly once, in cursor order. Timing is not asserted.
"""

from __future__ import annotations

import pytest

from tests.bench._run import BENCHMARKS, bench_process, run_bench
from tests.conftest import _skip_or_fail_without_postgres, postgres_base_url


pytestmark = pytest.mark.skipif(not (BENCHMARKS / "http_bench.py").is_file(), reason="no benchmarks/ checkout")


def run_postgres(scenario: str) -> dict:
    _skip_or_fail_without_postgres()
    return run_bench(scenario, "--postgres-url", postgres_base_url(), backend="postgres")


@pytest.mark.postgres
def test_scaleout_quick_readback_equals_acks():
    report = run_postgres("scaleout")
    result = report["scenarios"]["scaleout"]
    assert report["checks"]["scaleout.no_unexpected_errors"] is True
    assert report["checks"]["scaleout.readback_equals_acks"] is True
    for workers in (1, 2):
        rows = result[f"workers{workers}"]
        assert {"16_channels_c16", "one_channel_c16"} <= set(rows)
        for case, row in rows.items():
            rb = row["readback"]
            assert rb["ok"] is True, (workers, case, rb)
            assert rb["acked_201"] > 0 and rb["read_back"] == rb["acked_201"] == rb["distinct_read"], (workers, case, rb)
            assert rb["missing"] == rb["duplicated"] == rb["unacknowledged_present"] == 0
            assert row["unexpected_errors"] == {}, (workers, case)  # 503 "busy" (nothing committed) may occur
            if workers == 1:
                assert row["busy_503"] == 0 and row["errors"] == {}, (case, row["errors"])
            assert row["ok"] > 0
            assert len(row["worker_cpu_pct"]) == workers
    assert set(result["ratio_workers2_over_workers1"]) == set(result["workers1"])


@pytest.mark.postgres
def test_fanout2_quick_every_subscriber_every_message_once():
    report = run_postgres("fanout2")
    rows = report["scenarios"]["fanout2"]["postgres"]
    assert report["checks"]["fanout2.every_subscriber_every_message_once"] is True
    assert report["checks"]["fanout2.streams_released"] is True
    cases = {k: v for k, v in rows.items() if isinstance(v, dict) and "complete" in v}
    assert {"sse_1", "sse_16", "ws_1", "ws_16"} <= set(cases)
    assert any(k.startswith("burst_") for k in cases)
    for name, case in cases.items():
        assert case["complete"] is True, (name, case["problems"])
        assert case["deliveries"] == case["messages"] * case["subscribers"], name
        assert case["channel_visible_on_subscriber_side_ms"] is not None
    assert rows["open_streams_after"] == {"a": 0, "b": 0}


@pytest.mark.parametrize("scenario", ["scaleout", "fanout2"])
def test_multiprocess_scenarios_refuse_sqlite(scenario):
    done, report = bench_process(scenario, "--backend", "sqlite")
    assert done.returncode == 2, done.stdout + done.stderr
    assert "needs Postgres" in done.stderr
    assert report is None
