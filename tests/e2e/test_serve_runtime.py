"""What ``parley serve`` does to its own process before it announces itself."""

from __future__ import annotations

import re

from tests.support.process import serve, sqlite_url


def _gauge(text: str, name: str) -> float:
    match = re.search(rf"^{name} (\S+)$", text, re.MULTILINE)
    assert match, f"{name} missing from /metrics"
    return float(match.group(1))


def test_the_start_up_heap_is_frozen_before_the_first_request(tmp_path):
    # Without gc.freeze() every full collection walks the ~100k objects of
    # the loaded modules and app: a 50-90 ms stall of the event loop that was
    # the p99 of live-tail delivery (ADR-0011).
    with serve(sqlite_url(tmp_path), tmp_path) as server:
        with server.client() as client:
            text = client.get("/metrics").text
    assert _gauge(text, "parley_gc_frozen_objects") > 20_000
    assert 'python_gc_collections_total{generation="2"}' in text
