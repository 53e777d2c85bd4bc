"""``http_bench.py fanout``'s breakdown and its lighter WebSocket subscriber (ADR-0054).

Runs the quick fanout scenario once with ``--ws-client wsproto`` on SQLite:
every subscriber must still get every message once, in order, and each case
reports where a message's time goes and CPU per message of the server and of
the load generator, so a p99 can be judged against its own load generator.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from tests.bench._run import BENCHMARKS, ROOT

pytestmark = pytest.mark.skipif(not (BENCHMARKS / "http_bench.py").is_file(), reason="no benchmarks/ checkout")

BREAKDOWN = (
    "ack_p50_ms",
    "ack_p99_ms",
    "first_receipt_p50_ms",
    "first_receipt_p99_ms",
    "first_to_last_p50_ms",
    "first_to_last_p99_ms",
    "server_cpu_ms_per_msg",
    "client_cpu_ms_per_msg",
)


def test_fanout_with_the_wsproto_subscriber_reports_its_breakdown():
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PARLEY_", "CAUCUS_"))}
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    done = subprocess.run(
        [sys.executable, str(BENCHMARKS / "http_bench.py"), "fanout", "--quick", "--backend", "sqlite", "--ws-client", "wsproto"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
    )
    lines = done.stdout.strip().splitlines()
    assert done.returncode == 0 and lines and lines[-1].startswith("{"), done.stdout[-3000:] + done.stderr[-3000:]
    report = json.loads(lines[-1])
    assert report["checks"]["fanout.every_subscriber_every_message_once"] is True
    rows = {k: v for k, v in report["scenarios"]["fanout"]["sqlite"].items() if isinstance(v, dict)}
    assert {"ws_1", "ws_16", "sse_16"} <= set(rows)
    for name, row in rows.items():
        assert row["complete"] is True, (name, row["problems"])
        assert row["deliveries"] == row["messages"] * row["subscribers"], name
        for field in BREAKDOWN:
            assert row[field] >= 0, (name, field, row[field])
        assert row["first_receipt_p50_ms"] <= row["p50_ms"] + 1e-6, name
    assert "1st->last" in done.stdout  # the printed breakdown table
