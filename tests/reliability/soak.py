"""Soak: steady mixed load on ``parley serve`` while watching its RSS, fds and latency.

Starts ``python -m parley serve`` (SQLite by default) and drives a steady,
rate-limited mix from trio tasks: appends (moving to a fresh channel every
``--rotate`` messages, so old channel actors passivate and memory should
plateau), reads, claims/done, session turns (a fresh session every 50 turns,
the old one closed), artifact PUT+GET, and an SSE tail that reconnects every
few messages. Every ``--interval`` seconds it samples the server's RSS
(``/proc/<pid>/status``), open fds (``/proc/<pid>/fd``), threads, and the
operations, errors and p50/p99 latency of that interval, and prints a table.

    python -m tests.reliability.soak                       # 10 minutes, SQLite
    python -m tests.reliability.soak --minutes 2 --backend postgres
    python -m tests.reliability.soak --seconds 15 --interval 1   # the CI run

The last line is ``soak: OK …`` with the growth figures (or ``soak: FAILED``
when a request answered 5xx / failed, or ``--max-rss-growth-mib`` /
``--max-fd-growth`` are exceeded).
"""

from __future__ import annotations

import argparse
import hashlib
import os
import sys
import tempfile
import time
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import trio

from tests.reliability.crash_harness import new_ulid
from tests.support.process import database, open_fds, proc_status, rss_kib, start_server

TOKENS = ",".join(f"tok-s{i}:soak-{i}:owner-{i % 3}" for i in range(8))
SERVER_ENV = {
    "PARLEY_TOKENS": TOKENS,
    "PARLEY_MAX_POSTS_PER_MINUTE": "1000000",
    "PARLEY_GLOBAL_MAX_POSTS_PER_MINUTE": "1000000",
    "PARLEY_MAX_CHANNEL_CREATES_PER_MINUTE": "1000000",
    "PARLEY_MAX_CHANNELS": "100000",
    "PARLEY_ACTOR_IDLE_SECONDS": "5",
    "PARLEY_MAX_STREAMS": "64",
}


@dataclass
class Sample:
    t: float
    ops: int
    errors: int
    p50_ms: float
    p99_ms: float
    rss_mib: float
    fds: int
    threads: int


@dataclass
class Soak:
    url: str
    pid: int
    rate: float
    rotate: int
    latencies: list[float] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    total_ops: int = 0
    channel_no: int = 0
    samples: list[Sample] = field(default_factory=list)

    def client(self, i: int) -> httpx.AsyncClient:
        return httpx.AsyncClient(base_url=self.url, headers={"Authorization": f"Bearer tok-s{i}"}, timeout=30)

    async def op(self, client: httpx.AsyncClient, method: str, path: str, ok=(200, 201), **kw) -> httpx.Response | None:
        t0 = time.monotonic()
        try:
            r = await client.request(method, path, **kw)
        except httpx.HTTPError as e:
            self.errors.append(f"{method} {path}: {type(e).__name__}")
            return None
        self.latencies.append(time.monotonic() - t0)
        self.total_ops += 1
        if r.status_code not in ok:
            self.errors.append(f"{method} {path}: {r.status_code} {r.text[:120]}")
            return None
        return r

    async def paced(self, share: float, fn) -> None:
        """Call ``fn()`` ``share`` × rate times a second, forever."""
        period = 1.0 / max(self.rate * share, 0.01)
        next_at = trio.current_time()
        while True:
            await fn()
            next_at += period
            await trio.sleep(max(0.0, next_at - trio.current_time()))

    # -- workers -------------------------------------------------------------------

    def current_channel(self) -> str:
        return f"soak-{self.channel_no}"

    async def appender(self, i: int) -> None:
        async with self.client(i) as c:
            count = 0

            async def append():
                nonlocal count
                count += 1
                if i == 0 and count % self.rotate == 0:
                    # create first, then move everyone over (never a 404 for the others)
                    await self.op(c, "POST", "/channels", json={"channel": f"soak-{self.channel_no + 1}"})
                    self.channel_no += 1
                body = {"type": "note", "body": f"soak {i} {count}", "msg_id": new_ulid()}
                await self.op(c, "POST", f"/channels/{self.current_channel()}/append", json=body)

            await self.paced(0.5 / 3, append)

    async def reader(self) -> None:
        async with self.client(3) as c:
            async def read():
                await self.op(c, "POST", f"/channels/{self.current_channel()}/read", json={"cursor": 0, "limit": 50})
                await self.op(c, "GET", f"/channels/{self.current_channel()}")

            await self.paced(0.15, read)

    async def claimer(self) -> None:
        async with self.client(4) as c:
            n = 0

            async def claim():
                nonlocal n
                n += 1
                op = "claim" if n % 2 else "done"
                body = {"type": "claim", "body": f"{op} {n}", "msg_id": new_ulid(), "target": f"job-{n % 4}"}
                await self.op(c, "POST", f"/channels/{self.current_channel()}/{op}", json=body)

            await self.paced(0.1, claim)

    async def sessions(self) -> None:
        async with self.client(5) as c:
            state: dict = {}

            async def turn():
                if not state or state["turns"] >= 50:
                    if state:
                        await self.op(c, "DELETE", f"/v1/session/{state['id']}",
                                      json={"continuationToken": state["token"]})
                    r = await self.op(c, "POST", "/v1/session", json={"max": 5})
                    if r is not None:
                        state.update(id=r.json()["sessionId"], token=r.json()["continuationToken"], turns=1)
                    return
                body = {"continuationToken": state["token"], "max": 5, "actions": [
                    {"subscribe": {"channel": self.current_channel(), "from": "head"}},
                    {"append": {"channel": self.current_channel(), "message": {
                        "type": "note", "body": f"turn {state['turns']}", "msg_id": new_ulid()}}}]}
                r = await self.op(c, "POST", f"/v1/session/{state['id']}/message", json=body)
                if r is not None:
                    state["token"] = r.json()["continuationToken"]
                    state["turns"] += 1

            await self.paced(0.1, turn)

    async def artifacts(self) -> None:
        async with self.client(6) as c:
            async def put_get():
                blob = os.urandom(4096)
                sha = hashlib.sha256(blob).hexdigest()
                channel = self.current_channel()
                if await self.op(c, "PUT", f"/channels/{channel}/artifacts/{sha}", content=blob) is not None:
                    r = await self.op(c, "GET", f"/channels/{channel}/artifacts/{sha}")
                    if r is not None and r.content != blob:
                        self.errors.append(f"artifact {sha[:12]} read back different bytes")

            await self.paced(0.05, put_get)

    async def tail(self) -> None:
        """An SSE subscriber that reconnects every 20 frames (slots and fds must come back)."""
        async with httpx.AsyncClient(base_url=self.url, timeout=30) as c:
            while True:
                frames = 0
                try:
                    async with c.stream("GET", f"/channels/{self.current_channel()}/stream?since=0") as r:
                        if r.status_code != 200:
                            self.errors.append(f"stream: {r.status_code}")
                            await trio.sleep(0.5)
                            continue
                        async for line in r.aiter_lines():
                            if line.startswith("data:"):
                                frames += 1
                                if frames >= 20:
                                    break
                except httpx.HTTPError as e:
                    self.errors.append(f"stream: {type(e).__name__}")
                await trio.sleep(0.2)

    # -- sampling --------------------------------------------------------------------

    def sample(self, started: float) -> Sample:
        lat = sorted(self.latencies)
        self.latencies.clear()

        def pct(p: float) -> float:
            return lat[min(len(lat) - 1, int(p * len(lat)))] * 1000 if lat else 0.0

        status = proc_status(self.pid)
        s = Sample(
            t=time.monotonic() - started,
            ops=len(lat),
            errors=len(self.errors),
            p50_ms=pct(0.50),
            p99_ms=pct(0.99),
            rss_mib=rss_kib(self.pid) / 1024,
            fds=open_fds(self.pid),
            threads=int(status["Threads"]),
        )
        self.samples.append(s)
        return s


HEADER = f"{'t s':>6} {'ops':>6} {'ops/s':>6} {'err':>4} {'p50 ms':>7} {'p99 ms':>7} {'RSS MiB':>8} {'fds':>4} {'thr':>4}"


def row(s: Sample, interval: float) -> str:
    return (f"{s.t:6.0f} {s.ops:6d} {s.ops / interval:6.0f} {s.errors:4d} {s.p50_ms:7.1f} {s.p99_ms:7.1f} "
            f"{s.rss_mib:8.1f} {s.fds:4d} {s.threads:4d}")


async def run_soak(url: str, workdir: Path, *, seconds: float, interval: float, rate: float, rotate: int,
                   log=print) -> Soak:
    server = await trio.to_thread.run_sync(lambda: start_server(url, workdir, **SERVER_ENV))
    try:
        soak = Soak(server.url, server.pid, rate, rotate)
        async with soak.client(0) as c:
            r = await c.post("/channels", json={"channel": soak.current_channel()})
            assert r.status_code == 201, r.text
        log(f"soak: server pid {server.pid}, {seconds:.0f} s, ~{rate:.0f} ops/s target, sample every {interval:g} s")
        log(HEADER)
        started = time.monotonic()
        soak.sample(started)  # baseline (before load)
        log(row(soak.samples[0], interval))
        async with trio.open_nursery() as nursery:
            for i in range(3):
                nursery.start_soon(soak.appender, i)
            nursery.start_soon(soak.reader)
            nursery.start_soon(soak.claimer)
            nursery.start_soon(soak.sessions)
            nursery.start_soon(soak.artifacts)
            nursery.start_soon(soak.tail)
            while time.monotonic() - started < seconds:
                await trio.sleep(interval)
                log(row(soak.sample(started), interval))
            nursery.cancel_scope.cancel()
        code = await trio.to_thread.run_sync(server.terminate)
        if code != 0:
            soak.errors.append(f"SIGTERM exit code {code}")
        return soak
    finally:
        server.close()


def verdict(soak: Soak, *, max_rss_growth_mib: float, max_fd_growth: int) -> tuple[bool, str]:
    samples = soak.samples[1:]
    warm = samples[min(len(samples) - 1, max(1, len(samples) // 4))]  # after a quarter of the run
    last = samples[-1]
    peak_rss = max(s.rss_mib for s in samples)
    growth = last.rss_mib - warm.rss_mib
    fd_growth = max(s.fds for s in samples) - soak.samples[0].fds
    p99 = max(s.p99_ms for s in samples)
    ok = not soak.errors and growth <= max_rss_growth_mib and fd_growth <= max_fd_growth
    line = (
        f"soak: {'OK' if ok else 'FAILED'} ops={soak.total_ops} errors={len(soak.errors)} "
        f"rss_start_mib={soak.samples[0].rss_mib:.1f} rss_warm_mib={warm.rss_mib:.1f} rss_end_mib={last.rss_mib:.1f} "
        f"rss_peak_mib={peak_rss:.1f} rss_growth_after_warmup_mib={growth:.1f} "
        f"fds_start={soak.samples[0].fds} fds_max={max(s.fds for s in samples)} fd_growth={fd_growth} "
        f"worst_interval_p99_ms={p99:.1f} channels={soak.channel_no + 1}"
    )
    return ok, line


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.reliability.soak", description=__doc__.split("\n")[0])
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--seconds", type=float, default=None, help="overrides --minutes")
    parser.add_argument("--interval", type=float, default=None, help="seconds per sample (default: run/20, >= 1)")
    parser.add_argument("--rate", type=float, default=150.0, help="target operations per second")
    parser.add_argument("--rotate", type=int, default=500, help="appends per channel before moving on")
    parser.add_argument("--backend", choices=["sqlite", "postgres"], default="sqlite")
    parser.add_argument("--max-rss-growth-mib", type=float, default=64.0)
    parser.add_argument("--max-fd-growth", type=int, default=64)
    args = parser.parse_args(argv)
    seconds = args.seconds if args.seconds is not None else args.minutes * 60
    interval = args.interval or max(1.0, seconds / 20)
    with ExitStack() as stack:
        workdir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="parley-soak-")))
        url = stack.enter_context(database(args.backend, workdir))
        soak = trio.run(lambda: run_soak(url, workdir, seconds=seconds, interval=interval, rate=args.rate,
                                         rotate=args.rotate))
    for error in soak.errors[:10]:
        print(f"error: {error}")
    ok, line = verdict(soak, max_rss_growth_mib=args.max_rss_growth_mib, max_fd_growth=args.max_fd_growth)
    print(line, flush=True)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
