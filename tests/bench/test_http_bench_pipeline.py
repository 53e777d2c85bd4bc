"""``parley bench pipeline --quick`` (SQLite) runs end to end and its checks hold.

The scenario measures appends on one connection: the single-request closed
loop, then one channel WebSocket keeping W = 1, 16, 64, 256 append frames in
flight (ADR-0009). Asserted here are only the correctness checks of the final
JSON line: every frame answered by exactly one 201 ack, the channel read back
holds exactly the acknowledged msg_ids, re-sent frames (same msg_id and body)
replay the original ack without moving the head. Timing is not asserted.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.skipif(not (ROOT / "benchmarks" / "http_bench.py").is_file(), reason="no benchmarks/ checkout")

WINDOWS = (1, 16, 64, 256)


def test_pipeline_quick_checks_hold():
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PARLEY_", "CAUCUS_"))}
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    done = subprocess.run(
        [sys.executable, "-m", "parley", "bench", "pipeline", "--quick", "--backend", "sqlite"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
    )
    detail = f"exit {done.returncode}\nstdout tail:\n{done.stdout[-3000:]}\nstderr tail:\n{done.stderr[-3000:]}"
    lines = done.stdout.strip().splitlines()
    assert lines and lines[-1].startswith("{"), detail
    report = json.loads(lines[-1])
    assert done.returncode == 0, detail
    assert report["ok"] is True, report.get("failures")
    assert report["backends"] == ["sqlite"]
    for check in (
        "single_request_no_errors",
        "one_201_ack_per_frame",
        "readback_equals_acks",
        "replays_answer_original",
        "streams_released",
    ):
        assert report["checks"][f"pipeline.{check}"] is True, check

    rows = report["scenarios"]["pipeline"]["sqlite"]
    single = rows["single_request"]
    assert single["ok"] > 0 and single["errors"] == {}
    assert set(rows["ratio_pipelined_over_single"]) == {f"w{w}" for w in WINDOWS}
    for window in WINDOWS:
        row = rows[f"ws_w{window}"]
        assert row["window"] == window
        assert row["ok"] > 0 and row["ok"] == row["requests"] and row["errors"] == {}, (window, row)

        acks = row["one_ack_per_frame"]
        assert acks["ok"] is True, (window, acks)
        assert acks["frames"] == acks["acked_201"] > 0
        assert acks["unanswered"] == acks["duplicate_answers"] == acks["unknown_answers"] == 0
        assert acks["not_201"] == {} and acks["socket_error"] is None and acks["cursors_contiguous"] is True

        rb = row["readback"]
        assert rb["ok"] is True, (window, rb)
        assert rb["read_back"] == rb["distinct_read"] == rb["acked_201"] == acks["acked_201"]
        assert rb["missing"] == rb["duplicated"] == rb["unacknowledged_present"] == 0

        rp = row["replays"]
        assert rp["ok"] is True, (window, rp)
        assert rp["sent"] > 0 and rp["answered"] == rp["body_equals_original"] == rp["sent"]
        assert rp["ack_status"] == rp["http_replay_status"] and len(rp["http_replay_status"]) == 1
        assert rp["http_replayed_header"] is True and rp["http_body_equals_original"] is True
        assert rp["head_before"] == rp["head_after"] == acks["acked_201"]
