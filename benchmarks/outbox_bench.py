"""Client outbox benchmark: fsync'd enqueues and a drain to a real ``parley serve`` (loopback, SQLite).

    python benchmarks/outbox_bench.py [--rows N] [--channels C]

* **enqueue/s**: ``Outbox.enqueue`` of N messages into a fresh file, one
  ``BEGIN IMMEDIATE`` transaction and one WAL fsync (``synchronous=FULL``)
  each; p50/p99 latency per enqueue.
* **drain/s**: ``Outbox.drain(Parley(...))`` of those N rows over C channels
  (a channel's rows are sent one at a time, in order; each send is one
  append plus two fsync'd state changes in the outbox). Checks that every
  row is ``done`` and every channel holds its rows exactly once, in order.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from _harness import ParleyServer

from parley.client import Outbox, Parley


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=500)
    parser.add_argument("--channels", type=int, default=4)
    args = parser.parse_args()
    tokens = [("bench-tok", "bench-agent", "bench-owner")]
    with tempfile.TemporaryDirectory() as tmp, ParleyServer("sqlite", tokens=tokens) as server:
        channels = [f"bench-{i}" for i in range(args.channels)]
        with Outbox(Path(tmp) / "outbox.db") as box, Parley(server.url, "bench-tok") as client:
            for channel in channels:
                client.create_channel(channel)
            latencies = []
            ids: dict[str, list[str]] = {c: [] for c in channels}
            started = time.perf_counter()
            for i in range(args.rows):
                channel = channels[i % len(channels)]
                t0 = time.perf_counter()
                ids[channel].append(box.enqueue(channel, {"body": f"row {i}"}))
                latencies.append(time.perf_counter() - t0)
            enqueue_s = time.perf_counter() - started
            latencies.sort()
            print(
                f"enqueue: {args.rows} rows in {enqueue_s:.2f} s = {args.rows / enqueue_s:,.0f}/s; "
                f"p50 {statistics.median(latencies) * 1e3:.2f} ms, p99 {latencies[int(len(latencies) * 0.99) - 1] * 1e3:.2f} ms"
            )
            started = time.perf_counter()
            result = box.drain(client)
            drain_s = time.perf_counter() - started
            print(f"drain: {len(result.delivered)} rows in {drain_s:.2f} s = {len(result.delivered) / drain_s:,.0f}/s over {len(channels)} channels")
            assert result.pending == 0 and not result.dead
            for channel in channels:
                stored = [m["msg_id"] for page in client.read_all(channel) for m in page["messages"]]
                assert stored == ids[channel], f"{channel}: not exactly once in order"
            print("checks: every row done; every channel holds its rows exactly once, in order")


if __name__ == "__main__":
    main()
