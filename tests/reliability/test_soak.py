"""A short soak (:mod:`tests.reliability.soak`): ~15 s of steady mixed load on a
subprocess server; RSS growth and fd count must stay bounded, nothing may fail.
``PARLEY_LONG_TESTS=1`` runs 2 minutes instead."""

from __future__ import annotations

import os
import re

import pytest

from tests.reliability import soak

pytestmark = pytest.mark.reliability

LONG = os.environ.get("PARLEY_LONG_TESTS") == "1"
LINE = re.compile(
    r"^soak: OK ops=(\d+) errors=0 .* rss_growth_after_warmup_mib=(-?[\d.]+) fds_start=(\d+) fds_max=(\d+) "
    r"fd_growth=(\d+) worst_interval_p99_ms=([\d.]+)"
)


@pytest.mark.timeout(400 if LONG else 60)
def test_short_soak_keeps_memory_and_fds_bounded(capsys, record_property):
    seconds = "120" if LONG else "15"
    code = soak.main(["--seconds", seconds, "--interval", "1" if not LONG else "5",
                      "--max-rss-growth-mib", "24", "--max-fd-growth", "24"])
    out = capsys.readouterr().out
    record_property("soak", out.strip().splitlines()[-1])  # in --junitxml reports; not among the dots
    last = out.strip().splitlines()[-1]
    assert code == 0, out[-3000:]
    match = LINE.match(last)
    assert match, last
    ops, growth, fds_start, fds_max, fd_growth, p99 = match.groups()
    assert int(ops) >= 100 * int(seconds)  # the load really ran (~165 ops/s)
    assert float(growth) <= 24
    assert int(fd_growth) <= 24 and int(fds_max) < 100
    assert float(p99) < 2000
