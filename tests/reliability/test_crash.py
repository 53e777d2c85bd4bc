"""Crash consistency: ``kill -9`` a loaded ``parley serve`` again and again, then verify.

The work is done by :mod:`tests.reliability.crash_harness` (also a script);
these tests run it with the CI budget (5 kills on SQLite, 3 on Postgres,
about 15 s each) or, with ``PARLEY_LONG_TESTS=1``, with many more kills.
"""

from __future__ import annotations

import os
import re

import pytest

from tests.reliability import crash_harness

pytestmark = pytest.mark.reliability

LONG = os.environ.get("PARLEY_LONG_TESTS") == "1"
SUMMARY = re.compile(r"^crash-harness: OK backend=(\w+) kills=(\d+) operations=(\d+) verified=(\d+) ")


def run_and_check(backend: str, kills: int, tmp_path, capsys, record_property) -> None:
    seed = int(os.environ.get("PARLEY_CRASH_SEED", "0")) or None
    code = crash_harness.main(["--kills", str(kills), "--backend", backend] + (["--seed", str(seed)] if seed else []))
    out = capsys.readouterr().out
    lines = out.strip().splitlines()
    record_property("crash_harness", lines[-1])  # in --junitxml reports; not among the dots
    assert code == 0, out[-3000:]
    match = SUMMARY.match(lines[-1])
    assert match, lines[-1]
    assert match.group(1) == backend
    assert int(match.group(2)) == kills
    operations, verified = int(match.group(3)), int(match.group(4))
    assert operations >= 50 * kills, f"too little load between kills: {lines[-1]}"
    assert verified >= operations
    assert any(line.startswith("journal ok:") for line in lines)
    # One process at a time: a dead process's session lease never blocks the
    # restarted one (contended), and an answered turn is over (turn_in_flight).
    assert " contended=0 " in lines[-1] and " turn_in_flight=0 " in lines[-1], lines[-1]


@pytest.mark.timeout(300 if LONG else 90)
@pytest.mark.parametrize("backend", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def test_kill_9_under_mixed_load_keeps_every_promise(backend, tmp_path, capsys, record_property):
    kills = {"sqlite": 5, "postgres": 3}[backend]
    if LONG:
        kills *= 6
    run_and_check(backend, kills, tmp_path, capsys, record_property)
