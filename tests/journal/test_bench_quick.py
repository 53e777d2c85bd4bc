"""benchmarks/journal_bench.py --quick runs end to end and prints its JSON line."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parents[2] / "benchmarks" / "journal_bench.py"
DEFAULT_POSTGRES_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"


def test_journal_bench_quick(tmp_path):
    pg_url = os.environ.get("PARLEY_TEST_POSTGRES_URL") or DEFAULT_POSTGRES_URL
    args = [sys.executable, str(BENCH), "--quick", "--duration", "0.1", "--replay-events", "500",
            "--postgres-url", pg_url]
    proc = subprocess.run(args, capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    backends = ["sqlite"]
    if "skipped" in result["postgres"]:
        assert os.environ.get("PARLEY_REQUIRE_POSTGRES") != "1", result["postgres"]
    else:
        backends.append("postgres")
    for backend in backends:
        scenarios = result[backend]["scenarios"]
        assert {(s["mode"], s["concurrency"]) for s in scenarios} == {
            (m, c) for m in ("distinct", "one-stream") for c in (1, 16, 256)
        }
        assert all(s["appends"] > 0 and s["commits"] > 0 for s in scenarios)
        assert result[backend]["replay"]["events"] == 500
