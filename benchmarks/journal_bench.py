"""Journal benchmark: group-commit append throughput/latency and replay rate.

    python benchmarks/journal_bench.py [--quick] [--postgres-url URL] [--no-postgres]
                                       [--duration SECONDS] [--replay-events N]

For SQLite (a temp file, synchronous=FULL, WAL) and Postgres (a unique schema,
dropped afterwards) it measures:

* appends/s and p50/p99 latency of single-event appends with 1, 16 and 256
  concurrent trio tasks
  - ``distinct``: every task appends to its own stream (group commit shares
    each transaction between all waiting tasks);
  - ``one-stream``: all tasks append to ONE stream. They do not race and retry:
    they send their event to a per-stream actor task (a trio memory channel),
    which — like parley's actors — drains every command waiting in its mailbox,
    appends them as one request at its known ``expected_seq`` and replies to
    all after the commit. Latency is measured from send to reply.
* the commit batch-size distribution (requests per transaction), from the
  writer's statistics;
* replay rate: ``read_stream`` of one stream of 100,000 events (written first
  in 1,000-event appends; the load rate is reported too).

Every scenario runs for a fixed duration (default 3 s, 0.3 s with --quick), so
the whole run is bounded. Prints a table, then one JSON line.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import sys
import tempfile
import time
import uuid
from typing import Any

import trio

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from parley.journal import Journal, NewEvent, migrate  # noqa: E402
from parley.journal.writer import BUCKETS  # noqa: E402

DEFAULT_PG = os.environ.get(
    "PARLEY_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)
PAYLOAD = {"from": "agent-7", "body": "hello from the benchmark", "tags": ["a", "b"]}


def percentile(sorted_values: list[float], p: float) -> float:
    if not sorted_values:
        return math.nan
    k = min(len(sorted_values) - 1, max(0, math.ceil(p / 100 * len(sorted_values)) - 1))
    return sorted_values[k]


def hist_delta(before: dict[str, int], after: dict[str, int]) -> dict[str, int]:
    return {label: after[label] - before[label] for label, _ in BUCKETS}


async def run_distinct(journal: Journal, tag: str, concurrency: int, duration: float) -> dict:
    latencies: list[float] = []
    deadline = time.perf_counter() + duration

    async def appender(i: int) -> None:
        stream, seq = f"bench:{tag}:{i}", 0
        while time.perf_counter() < deadline:
            t0 = time.perf_counter()
            await journal.append(stream, [NewEvent("posted", PAYLOAD)], seq)
            latencies.append(time.perf_counter() - t0)
            seq += 1

    return await _measure(journal, latencies, appender, concurrency)


async def run_one_stream(journal: Journal, tag: str, concurrency: int, duration: float) -> dict:
    latencies: list[float] = []
    deadline = time.perf_counter() + duration
    stream = f"bench:{tag}:single"
    send, receive = trio.open_memory_channel[tuple[NewEvent, trio.Event]](math.inf)

    async def actor() -> None:
        seq = 0
        async for first in receive:
            batch = [first]
            while len(batch) < 512:
                try:
                    batch.append(receive.receive_nowait())
                except trio.WouldBlock:
                    break
            stored = await journal.append(stream, [event for event, _ in batch], seq)
            seq = stored[-1].seq
            for _, done in batch:
                done.set()

    async def client(i: int) -> None:
        while time.perf_counter() < deadline:
            t0 = time.perf_counter()
            done = trio.Event()
            await send.send((NewEvent("posted", PAYLOAD), done))
            await done.wait()
            latencies.append(time.perf_counter() - t0)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(actor)
        result = await _measure(journal, latencies, client, concurrency)
        await send.aclose()
    return result


async def _measure(journal: Journal, latencies: list[float], task, concurrency: int) -> dict:
    before = journal.statistics()
    t0 = time.perf_counter()
    async with trio.open_nursery() as nursery:
        for i in range(concurrency):
            nursery.start_soon(task, i)
    elapsed = time.perf_counter() - t0
    after = journal.statistics()
    latencies.sort()
    commits = after.batches - before.batches
    requests = after.requests - before.requests
    return {
        "appends": len(latencies),
        "appends_per_s": len(latencies) / elapsed,
        "p50_ms": percentile(latencies, 50) * 1e3,
        "p99_ms": percentile(latencies, 99) * 1e3,
        "commits": commits,
        "mean_batch": requests / commits if commits else 0.0,
        "events_per_commit": (after.events - before.events) / commits if commits else 0.0,
        "batch_size_histogram": hist_delta(before.batch_size_histogram, after.batch_size_histogram),
    }


async def run_replay(journal: Journal, n: int) -> dict:
    stream, chunk, seq = "bench:replay", 1000, 0
    t0 = time.perf_counter()
    while seq < n:
        size = min(chunk, n - seq)
        events = [NewEvent("posted", {**PAYLOAD, "n": seq + i}) for i in range(size)]
        seq = (await journal.append(stream, events, seq))[-1].seq
    load_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    events = await journal.read_stream(stream)
    replay_s = time.perf_counter() - t0
    assert len(events) == n and events[-1].seq == n
    t0 = time.perf_counter()
    folded = 0
    after = 0
    while page := await journal.read_stream(stream, after_seq=after, limit=10_000):
        folded += len(page)
        after = page[-1].seq
    paged_s = time.perf_counter() - t0
    assert folded == n
    t0 = time.perf_counter()
    report = await journal.verify()
    verify_s = time.perf_counter() - t0
    assert report.ok
    return {
        "events": n,
        "load_events_per_s": n / load_s,
        "replay_events_per_s": n / replay_s,
        "paged_replay_events_per_s": n / paged_s,
        "verify_events_per_s": report.events_checked / verify_s,
    }


async def bench_backend(url: str, duration: float, replay_events: int) -> dict:
    migrate.upgrade(url)
    results: dict[str, Any] = {"scenarios": []}
    async with Journal.open(url) as journal:
        for mode, fn in (("distinct", run_distinct), ("one-stream", run_one_stream)):
            for concurrency in (1, 16, 256):
                r = await fn(journal, f"{mode}{concurrency}", concurrency, duration)
                r.update(mode=mode, concurrency=concurrency)
                results["scenarios"].append(r)
        results["replay"] = await run_replay(journal, replay_events)
        results["writer"] = dataclasses.asdict(journal.statistics())
    return results


def print_table(backend: str, res: dict) -> None:
    print(f"\n== {backend}")
    print(f"{'mode':<11}{'conc':>5}{'appends':>9}{'appends/s':>11}{'p50 ms':>9}{'p99 ms':>9}"
          f"{'commits':>9}{'req/commit':>11}{'ev/commit':>10}  batch sizes (requests/commit)")
    for s in res["scenarios"]:
        hist = " ".join(f"{k}:{v}" for k, v in s["batch_size_histogram"].items() if v)
        print(f"{s['mode']:<11}{s['concurrency']:>5}{s['appends']:>9}{s['appends_per_s']:>11.0f}"
              f"{s['p50_ms']:>9.2f}{s['p99_ms']:>9.2f}{s['commits']:>9}{s['mean_batch']:>11.1f}"
              f"{s['events_per_commit']:>10.1f}  {hist}")
    r = res["replay"]
    print(f"replay of one {r['events']:,}-event stream: read_stream {r['replay_events_per_s']:,.0f} ev/s, "
          f"paged (10k) {r['paged_replay_events_per_s']:,.0f} ev/s; load (1k-event appends) "
          f"{r['load_events_per_s']:,.0f} ev/s; verify {r['verify_events_per_s']:,.0f} ev/s")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="tiny sizes (seconds)")
    ap.add_argument("--postgres-url", default=DEFAULT_PG)
    ap.add_argument("--no-postgres", action="store_true")
    ap.add_argument("--duration", type=float, default=None, help="seconds per scenario")
    ap.add_argument("--replay-events", type=int, default=None)
    args = ap.parse_args()
    duration = args.duration or (0.3 if args.quick else 3.0)
    replay_events = args.replay_events or (2_000 if args.quick else 100_000)

    out: dict[str, Any] = {"quick": args.quick, "duration_s": duration, "cpus": os.cpu_count()}
    with tempfile.TemporaryDirectory(prefix="parley-bench-") as tmp:
        url = f"sqlite:///{os.path.join(tmp, 'bench.db')}"
        out["sqlite"] = trio.run(bench_backend, url, duration, replay_events)
        print_table("sqlite (WAL, synchronous=FULL)", out["sqlite"])

    if not args.no_postgres:
        import sqlalchemy as sa

        from parley.journal.engine import normalise_url

        admin = sa.create_engine(normalise_url(args.postgres_url), poolclass=sa.pool.NullPool,
                                 connect_args={"connect_timeout": 3})
        schema = f"bench_{uuid.uuid4().hex[:12]}"
        try:
            with admin.begin() as conn:
                conn.execute(sa.text(f'CREATE SCHEMA "{schema}"'))
        except Exception as e:  # noqa: BLE001
            out["postgres"] = {"skipped": f"unreachable: {type(e).__name__}"}
            print(f"\n== postgres skipped ({type(e).__name__})")
        else:
            try:
                sep = "&" if "?" in args.postgres_url else "?"
                url = f"{args.postgres_url}{sep}options=-csearch_path%3D{schema}"
                out["postgres"] = trio.run(bench_backend, url, duration, replay_events)
                print_table("postgres", out["postgres"])
            finally:
                with admin.begin() as conn:
                    conn.execute(sa.text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
                admin.dispose()
    print(json.dumps(out, separators=(",", ":")))


if __name__ == "__main__":
    main()
