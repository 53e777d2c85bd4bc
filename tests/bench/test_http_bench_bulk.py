"""``parley bench bulk --quick`` (SQLite) runs end to end and its checks hold.

The scenario compares the SDK's ``append_many`` (16 senders, batch frames over
the channel WebSocket, ADR-0039) with per-request appends. Asserted here are
only the correctness checks of the final JSON line (no refused slot; each
channel read back holds exactly the acknowledged msg_ids) and the shape of
the ratios; timing is not asserted.
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


def test_bulk_quick_checks_hold():
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PARLEY_", "CAUCUS_"))}
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    done = subprocess.run(
        [sys.executable, "-m", "parley", "bench", "bulk", "--quick", "--backend", "sqlite"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=300,
    )
    detail = f"exit {done.returncode}\nstdout tail:\n{done.stdout[-3000:]}\nstderr tail:\n{done.stderr[-3000:]}"
    lines = done.stdout.strip().splitlines()
    assert lines and lines[-1].startswith("{"), detail
    report = json.loads(lines[-1])
    assert done.returncode == 0, detail
    assert report["checks"] == {"bulk.sqlite.no_errors": True, "bulk.sqlite.readback_equals_acks": True}
    ratios = report["scenarios"]["bulk"]["sqlite"]["ratios"]
    assert set(ratios) == {"one_channel", "16_channels"}
    assert all(r["over_per_request_same_run"] > 0 for r in ratios.values())


def test_ab_bulk_runs_both_trees_and_reports_how_commits_were_grouped():
    """``ab_bench.py bulk`` against this same tree (an A/A run, ADR-0061's
    measuring tool): both servers' cases complete with every ack read back,
    and each row says how the writer grouped the commits."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PARLEY_", "CAUCUS_"))}
    done = subprocess.run(
        [sys.executable, "benchmarks/ab_bench.py", "bulk", "--baseline", str(ROOT), "--rounds", "1", "--duration", "0.3"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=300,
    )
    detail = f"exit {done.returncode}\nstdout tail:\n{done.stdout[-3000:]}\nstderr tail:\n{done.stderr[-3000:]}"
    lines = done.stdout.strip().splitlines()
    assert done.returncode == 0 and lines and lines[-1].startswith("{"), detail
    bulk = json.loads(lines[-1])["scenarios"]["bulk"]
    for tree in ("base", "new"):
        for layout, channels in (("one_channel", 1), ("16_channels", 16)):
            (row,) = bulk[tree][layout]
            assert row["channels"] == channels and row["ok"] > 0 and not row["errors"], detail
            assert row["readback"]["ok"], detail
            assert row["requests_per_commit"] >= 1 and row["events_per_request"] > 0, detail
            assert row["decided_ahead_dropped"] == 0, detail
    assert set(bulk["summary"]) == {"one_channel", "16_channels"}
