"""The state and session benchmarks run end to end (``parley bench <scenario> --quick``, SQLite).

Each scenario runs through the ``parley bench`` front door, starts real
``parley serve`` subprocesses where it needs them, and ends its stdout with
one JSON line whose correctness checks must hold:

* activation: the channel read back after a cold activation (with and without
  a snapshot) equals what was written, and the server saved a snapshot of the
  whole stream when it passivated the channel at shutdown;
* replay: every channel stream folded from the journal equals what the
  generator wrote, and ``tools.replay`` (``parley journal replay``) agrees,
  with one worker and with two;
* restart: after a restart the directory lists every channel with its head;
* memory: every append was acknowledged, every actor passivated, and the
  replayed streams equal the live state the actors snapshotted at passivation;
* sessions: every turn finished, the token rotated on each, every session
  received every message of its channel exactly once in cursor order, and
  every waiting session was woken with the appended message.
"""

from __future__ import annotations

import pytest

from tests.bench._run import BENCHMARKS, run_bench

pytestmark = pytest.mark.skipif(
    not (BENCHMARKS / "state_bench.py").is_file() or not (BENCHMARKS / "session_bench.py").is_file(),
    reason="no benchmarks/ checkout",
)


def test_activation_quick_reads_back_what_was_written():
    report = run_bench("activation")
    result = report["scenarios"]["activation"]["sqlite"]
    assert result["checks"] == {"read_back_equals_written": True, "snapshot_saved_at_passivation": True}
    for case in ("no_snapshot", "snapshot"):
        c = result[case]
        assert c["all_equal"] is True and c["messages"] == result["messages"] == 1000
        assert c["cold_ms"] > 0 and c["warm_median_ms"] > 0
    assert result["snapshot_seq"] == result["expected_seq"] == 1001
    assert result["breakdown_no_snapshot"]["tail_events"] == 1001
    assert result["breakdown_snapshot"]["tail_events"] == 0


def test_replay_quick_folds_every_stream_to_the_written_state():
    report = run_bench("replay")
    result = report["scenarios"]["replay"]["sqlite"]
    assert result["checks"] == {
        "direct_fold_equals_written": True,
        "tools_replay_ok": True,
        "tools_replay_workers2_equals_workers1": True,
    }
    events = result["journal"]["events"]
    assert events == 20_000
    assert result["direct"]["equal"] is True and result["direct"]["mismatches"] == []
    assert result["direct"]["events"] == result["read_only"]["events"] == result["tools_replay"]["events"] == events
    assert result["tools_replay_workers2"]["events"] == events and result["tools_replay_workers2"]["workers"] == 2
    assert result["direct"]["streams"] == result["tools_replay"]["streams"] == result["tools_replay_workers2"]["streams"] == 20
    assert result["direct"]["events_per_s"] > 0 and result["tools_replay"]["events_per_s"] > 0


def test_restart_quick_directory_is_complete():
    report = run_bench("restart")
    result = report["scenarios"]["restart"]["sqlite"]
    assert result["checks"] == {"directory_lists_every_channel_with_its_head": True}
    assert result["full"]["ready_s"] > 0 and result["empty"]["ready_s"] > 0
    assert result["full"]["banner_s"] <= result["full"]["ready_s"]
    assert set(result["read_models"]) >= {"channel_index_ms", "open_sessions_ms"}


def test_memory_quick_passivation_snapshots_equal_replay():
    report = run_bench("memory")
    result = report["scenarios"]["memory"]["sqlite"]
    assert all(result["checks"].values()), result["checks"]
    assert result["acked"] == result["messages"] + result["more_messages"] == 2400
    assert result["replay"]["snapshots_compared"] == result["replay"]["snapshots_matching"] == result["channels"]
    rss = result["rss"]
    for point in ("start", "after_writes", "after_writes_passivated", "restart_ready", "p2_read1", "p2_read2_passivated"):
        assert rss[point]["VmRSS"] > 0
    assert rss["after_writes_active"] == rss["p2_read1_active"] == result["channels"]
    assert rss["after_writes_passivated_active"] == rss["p2_read2_passivated_active"] == 0


def test_sessions_quick_every_turn_and_wakeup_is_correct():
    report = run_bench("sessions")
    result = report["scenarios"]["sessions"]["sqlite"]
    assert report["checks"] == {
        "sessions.sqlite.every_turn_finished_and_delivered_exactly_once": True,
        "sessions.sqlite.every_waiter_woken_with_the_message": True,
    }
    assert set(result["turns"]) == {"c1", "c16", "c64"}
    for case in result["turns"].values():
        assert case["complete"] is True and case["errors"] == {} and case["problems"] == []
        assert case["turns"] > 0 and case["p99_ms"] >= case["p50_ms"] > 0
        assert case["delivered_per_turn"] >= 1
    for case in result["wake"].values():
        assert case["complete"] is True and case["wakeups"] == case["rounds"] * case["waiters"]
        assert case["p50_ms"] > 0
