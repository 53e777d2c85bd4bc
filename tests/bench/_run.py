"""Run one benchmark scenario through ``parley bench`` and return its JSON report."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
BENCHMARKS = ROOT / "benchmarks"


def bench_process(scenario: str, *extra: str, timeout: float = 180) -> tuple[subprocess.CompletedProcess, dict | None]:
    """``parley bench SCENARIO --quick EXTRA…`` in a clean environment; ``(process, last JSON line)``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PARLEY_", "CAUCUS_"))}
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    done = subprocess.run(
        [sys.executable, "-m", "parley", "bench", scenario, "--quick", *extra],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    lines = done.stdout.strip().splitlines()
    report = json.loads(lines[-1]) if lines and lines[-1].startswith("{") else None
    return done, report


def run_bench(scenario: str, *extra: str, backend: str = "sqlite", timeout: float = 180) -> dict:
    """The report of a run that must succeed with every correctness check holding."""
    done, report = bench_process(scenario, "--backend", backend, *extra, timeout=timeout)
    detail = f"exit {done.returncode}\nstdout tail:\n{done.stdout[-3000:]}\nstderr tail:\n{done.stderr[-3000:]}"
    assert report is not None, detail
    assert done.returncode == 0, detail
    assert report["ok"] is True, report.get("failures")
    assert report["backends"] == [backend]
    assert scenario in report["scenarios"], report
    return report
