"""The web console in headless Chromium: how long until a loaded channel is live, and push latency.

    python benchmarks/console_bench.py [--backlog 1000] [--appends 50]

A real ``parley serve`` (SQLite) with one channel holding ``--backlog``
messages; Chromium (``/usr/bin/chromium``, Playwright) opens ``/ui`` on it.
Printed: time from ``goto`` to the whole backlog rendered and the stream
live, then for ``--appends`` messages appended one at a time over HTTP the
time from sending the append to the message being in the page's DOM (the page
is observed with a MutationObserver, so no polling skews it): p50 / p95 / max.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
import uuid
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _harness import ParleyServer, make_tokens  # noqa: E402

ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]
CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
WATCH = """() => { window.__seen = {}; new MutationObserver(ms => { for (const m of ms) for (const n of m.addedNodes)
  if (n.dataset && n.dataset.msgId) window.__seen[n.dataset.msgId] = performance.timeOrigin + performance.now(); })
  .observe(document.getElementById('log'), {childList: true}); }"""


def ulid() -> str:
    return "".join(CROCKFORD[b % 32] for b in uuid.uuid4().bytes + uuid.uuid4().bytes[:10])


def main() -> None:
    from playwright.sync_api import sync_playwright

    parser = argparse.ArgumentParser()
    parser.add_argument("--backlog", type=int, default=1000)
    parser.add_argument("--appends", type=int, default=50)
    opts = parser.parse_args()
    tokens = make_tokens(opts.backlog // 25 + 2)  # stay under the per-agent post rate
    with ParleyServer("sqlite", tokens=tokens) as server, sync_playwright() as pw:
        clients = [httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {t}"}) for t, _, _ in tokens]
        clients[0].post("/channels", json={"channel": "bench"}).raise_for_status()
        for i in range(opts.backlog):
            body = {"type": "note", "body": f"backlog {i}", "msg_id": ulid()}
            clients[1 + i // 25].post("/channels/bench/append", json=body).raise_for_status()
        browser = pw.chromium.launch(executable_path="/usr/bin/chromium", args=ARGS)
        page = browser.new_page(viewport={"width": 1280, "height": 800})
        started = time.perf_counter()
        page.goto(f"{server.url}/ui#/c/bench")
        page.wait_for_function(f"() => document.querySelectorAll('#log > li').length === {opts.backlog}", timeout=60_000)
        page.wait_for_function("() => document.getElementById('stream-state').textContent === 'live'")
        load_s = time.perf_counter() - started
        page.evaluate(WATCH)
        latencies = []
        writer = clients[-1]
        for i in range(opts.appends):
            msg_id = ulid()
            sent = time.time() * 1000
            writer.post("/channels/bench/append", json={"type": "note", "body": f"live {i}", "msg_id": msg_id}).raise_for_status()
            page.wait_for_function(f"() => window.__seen['{msg_id}'] !== undefined")
            latencies.append(page.evaluate(f"() => window.__seen['{msg_id}']") - sent)
            if i % 25 == 24:
                writer = clients[-2] if writer is clients[-1] else clients[-1]
        browser.close()
    latencies.sort()
    p95 = latencies[max(0, int(len(latencies) * 0.95) - 1)]
    print(f"backlog {opts.backlog} messages: page live and fully rendered in {load_s * 1000:.0f} ms")
    print(f"append sent -> in the DOM ({opts.appends} appends): p50 {statistics.median(latencies):.1f} ms, "
          f"p95 {p95:.1f} ms, max {latencies[-1]:.1f} ms")


if __name__ == "__main__":
    main()
