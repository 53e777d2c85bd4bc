"""Session benchmarks against a real ``parley serve`` subprocess (loopback only).

    python benchmarks/session_bench.py [sessions] [--quick]
                                       [--backend sqlite|postgres|both | --postgres]
                                       [--postgres-url URL] [--duration SECONDS]

One scenario, ``sessions`` (docs/contracts/sessions.md), on a fresh database
(SQLite temp file or a fresh Postgres schema, via ``benchmarks/_harness.py``):

* **turns/s** with 1, 16 and 64 concurrent sessions. Sessions are grouped
  four to a channel (1 session: one channel; 16: four channels; 64: sixteen),
  each started with ``subscribe`` from the head. Every session then runs turns
  back to back on its own keep-alive connection: ``POST
  /v1/session/{id}/message`` with the token in ``x-continuation-token`` and
  ``{"actions":[{"append":{"channel":c,"message":{…}}}],"wait":0}`` — a turn
  appends one message and receives what is pending on its channel (its own
  message and its room-mates'). 0.5 s warm-up, then 4 s measured; latency is
  request to full response. Checks: every turn answered 200 ``finished``, the
  token rotated on every turn, and after a final drain turn every session has
  received every message of its channel since it subscribed exactly once, in
  cursor order (cursors consecutive).
* **wake-up latency**: 1 and 16 sessions subscribed to one channel each send
  a turn ``{"wait": 30}`` (nothing pending, so it parks); 50 ms later another
  client appends one message with ``POST /channels/c/append``. Latency runs
  from the start of that append request to the receipt of each waiting
  session's response (and, ``after ack``, from the append's 201 to that
  receipt). Then every session waits again; 100 rounds (20 with --quick).
  Checks: every waiting turn was answered ``finished`` with exactly the
  appended message.

Prints a table per backend and ONE JSON line; exit status 1 if a check failed.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import math
import os
import platform
import sys
import time
from typing import Any

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, ".."))
sys.path.insert(0, HERE)

import orjson  # noqa: E402
import trio  # noqa: E402

from _harness import ParleyServer, load_average, make_tokens  # noqa: E402
from http_bench import BenchFailure, CpuMeter, H11Client, _git_commit, finish_report, ms, note, percentile, rnd  # noqa: E402

FULL = {"duration": 4.0, "warmup": 0.5, "sessions": (1, 16, 64), "group": 4, "wake_waiters": (1, 16), "wake_rounds": 100}
QUICK = {"duration": 0.5, "warmup": 0.1, "sessions": (1, 16, 64), "group": 4, "wake_waiters": (1, 16), "wake_rounds": 20}
WAKE_SETTLE_S = 0.05
WAIT_S = 30
MAX_SESSIONS = 64


class Session:
    """One session on its own connection: its token, cursor and what it received."""

    def __init__(self, url: str, token: str, index: int, channel: str) -> None:
        self.client = H11Client(url, token)
        self.index = index
        self.channel = channel
        self.id = ""
        self.token = ""
        self.start_cursor = 0
        self.received: list[tuple[int, str]] = []  # (cursor, msg_id) in delivery order
        self.turns = 0
        self.not_rotated = 0
        self.problems: list[str] = []

    async def start(self) -> None:
        body = {"actions": [{"subscribe": {"channel": self.channel, "from": "head"}}], "wait": 0}
        status, raw = await self.client.request("POST", "/v1/session", orjson.dumps(body))
        if status != 200:
            raise BenchFailure(f"session start answered {status}: {raw[:200]!r}")
        data = orjson.loads(raw)
        self.id, self.token = data["sessionId"], data["continuationToken"]
        self.start_cursor = data["output"]["results"][0]["cursor"]

    async def turn(self, body: dict[str, Any]) -> tuple[int, dict[str, Any] | None, bytes]:
        status, raw = await self.client.request(
            "POST", f"/v1/session/{self.id}/message", orjson.dumps(body), [("x-continuation-token", self.token)]
        )
        if status != 200:
            return status, None, raw
        data = orjson.loads(raw)
        new = data.get("continuationToken")
        if data.get("status") in ("finished", "parked"):
            self.turns += 1
            if new == self.token:
                self.not_rotated += 1
            self.token = new
            for item in data["output"]["messages"]:
                self.received.append((item["cursor"], item["message"].get("msg_id")))
        return status, data, raw

    def check(self, appended: list[str]) -> None:
        """``appended``: msg_ids of the channel's messages after start_cursor, in cursor order."""
        cursors = [c for c, _ in self.received]
        expected = list(range(self.start_cursor + 1, self.start_cursor + 1 + len(appended)))
        if cursors != expected:
            dups = len(cursors) - len(set(cursors))
            self.problems.append(
                f"session {self.index}: {len(cursors)} delivered, {len(appended)} expected, {dups} duplicated, "
                f"in order={cursors == sorted(cursors)}"
            )
        elif [m for _, m in self.received] != appended:
            self.problems.append(f"session {self.index}: delivered msg_ids differ from the channel's")
        if self.not_rotated:
            self.problems.append(f"session {self.index}: token not rotated on {self.not_rotated} turns")


async def create_channel(url: str, token: str, name: str) -> None:
    c = H11Client(url, token)
    try:
        status, raw = await c.request("POST", "/channels", orjson.dumps({"channel": name, "purpose": "session bench"}))
        if status != 201:
            raise BenchFailure(f"create {name} answered {status}: {raw[:200]!r}")
    finally:
        await c.aclose()


async def channel_msg_ids(url: str, channel: str, after: int) -> list[str]:
    c = H11Client(url)
    out: list[str] = []
    cursor = after
    try:
        while True:
            status, raw = await c.request("POST", f"/channels/{channel}/read", orjson.dumps({"cursor": cursor, "limit": 500}))
            if status != 200:
                raise BenchFailure(f"read {channel} answered {status}")
            page = orjson.loads(raw)
            if not page["messages"]:
                return out
            out.extend(m.get("msg_id") for m in page["messages"])
            cursor = page["cursor"]
    finally:
        await c.aclose()


async def metrics_line(url: str, prefix: str) -> float | None:
    c = H11Client(url)
    try:
        status, raw = await c.request("GET", "/metrics")
    finally:
        await c.aclose()
    for line in raw.decode().splitlines():
        if line.startswith(prefix + " "):
            return float(line.split()[1])
    return None


# -- turns/s -------------------------------------------------------------------------


async def turns_case(server: ParleyServer, n: int, sizes: dict[str, Any]) -> dict[str, Any]:
    group = sizes["group"]
    rooms = [f"turns-{n}-{k}" for k in range(max(1, math.ceil(n / group)))]
    for room in rooms:
        await create_channel(server.url, server.tokens[0][0], room)
    sessions = [Session(server.url, server.tokens[i][0], i, rooms[i // group]) for i in range(n)]
    latencies: list[float] = []
    errors: dict[str, int] = {}
    delivered = 0
    measuring = False

    async def loop(s: Session, until: float) -> None:
        nonlocal delivered
        k = 0
        while time.perf_counter() < until:
            k += 1
            body = {"actions": [{"append": {"channel": s.channel, "message": note(f"session {s.index}", k)}}], "wait": 0}
            t0 = time.perf_counter()
            status, data, raw = await s.turn(body)
            dt = time.perf_counter() - t0
            if data is None or data.get("status") != "finished" or data["output"]["results"][0].get("error"):
                key = f"{status}:{(data or {}).get('status')}:{raw[:80]!r}"
                errors[key] = errors.get(key, 0) + 1
                continue
            if measuring:
                latencies.append(dt)
                delivered += len(data["output"]["messages"])

    try:
        async with trio.open_nursery() as nursery:
            for s in sessions:
                nursery.start_soon(s.start)
        async with trio.open_nursery() as nursery:  # warm-up: connections, actors, leases
            until = time.perf_counter() + sizes["warmup"]
            for s in sessions:
                nursery.start_soon(loop, s, until)
        measuring = True
        with CpuMeter(server) as cpu:
            async with trio.open_nursery() as nursery:
                until = time.perf_counter() + sizes["duration"]
                for s in sessions:
                    nursery.start_soon(loop, s, until)
        measuring = False
        # Drain: one more turn without actions delivers what is still pending.
        for s in sessions:
            while True:
                _status, data, _raw = await s.turn({"wait": 0})
                if data is None or not data["output"]["messages"]:
                    break
        problems: list[str] = []
        for room in rooms:
            members = [s for s in sessions if s.channel == room]
            start = min(s.start_cursor for s in members)
            ids = await channel_msg_ids(server.url, room, start)
            for s in members:
                s.check(ids[s.start_cursor - start :])
                problems.extend(s.problems)
    finally:
        for s in sessions:
            await s.client.aclose()
    turns = len(latencies)
    return {
        "sessions": n,
        "channels": len(rooms),
        "turns": turns,
        "turns_per_s": rnd(turns / cpu.wall, 1),
        "p50_ms": ms(percentile(latencies, 50)),
        "p99_ms": ms(percentile(latencies, 99)),
        "max_ms": ms(max(latencies) if latencies else math.nan),
        "delivered_per_turn": rnd(delivered / turns, 2) if turns else None,
        "errors": errors,
        **cpu.fields(),
        "complete": not problems and not errors,
        "problems": problems[:10],
    }


# -- wake-up latency ---------------------------------------------------------------------


async def wake_case(server: ParleyServer, waiters: int, sizes: dict[str, Any]) -> dict[str, Any]:
    channel = f"wake-{waiters}"
    await create_channel(server.url, server.tokens[0][0], channel)
    sessions = [Session(server.url, server.tokens[i][0], i, channel) for i in range(waiters)]
    appender = H11Client(server.url, server.tokens[-1][0])
    from_start: list[float] = []
    from_ack: list[float] = []
    problems: list[str] = []
    rounds = sizes["wake_rounds"]
    try:
        async with trio.open_nursery() as nursery:
            for s in sessions:
                nursery.start_soon(s.start)
        with CpuMeter(server) as cpu:
            for r in range(rounds):
                received: dict[int, tuple[float, dict[str, Any] | None, int]] = {}

                async def wait_turn(s: Session) -> None:
                    status, data, _raw = await s.turn({"wait": WAIT_S})
                    received[s.index] = (time.perf_counter(), data, status)

                async with trio.open_nursery() as nursery:
                    for s in sessions:
                        nursery.start_soon(wait_turn, s)
                    await trio.sleep(WAKE_SETTLE_S)  # every turn accepted and parked on the channel
                    payload = note("wake", r)
                    t0 = time.perf_counter()
                    status, raw = await appender.request("POST", f"/channels/{channel}/append", orjson.dumps(payload))
                    t_ack = time.perf_counter()
                    if status != 201:
                        raise BenchFailure(f"append answered {status}: {raw[:200]!r}")
                for s in sessions:
                    t, data, status = received[s.index]
                    msgs = (data or {}).get("output", {}).get("messages", [])
                    if data is None or data.get("status") != "finished" or [m["message"].get("msg_id") for m in msgs] != [payload["msg_id"]]:
                        problems.append(f"round {r} session {s.index}: status {status} {(data or {}).get('status')}, {len(msgs)} messages")
                        continue
                    from_start.append(t - t0)
                    from_ack.append(t - t_ack)
    finally:
        await appender.aclose()
        for s in sessions:
            await s.client.aclose()
    return {
        "waiters": waiters,
        "rounds": rounds,
        "wakeups": len(from_start),
        "p50_ms": ms(percentile(from_start, 50)),
        "p99_ms": ms(percentile(from_start, 99)),
        "max_ms": ms(max(from_start) if from_start else math.nan),
        "after_ack_p50_ms": ms(percentile(from_ack, 50)),
        "after_ack_p99_ms": ms(percentile(from_ack, 99)),
        **cpu.fields(),
        "complete": not problems and len(from_start) == rounds * waiters,
        "problems": problems[:10],
    }


async def sessions_parley(server: ParleyServer, sizes: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {"turns": {}, "wake": {}}
    for n in sizes["sessions"]:
        out["turns"][f"c{n}"] = await turns_case(server, n, sizes)
    for w in sizes["wake_waiters"]:
        out["wake"][f"w{w}"] = await wake_case(server, w, sizes)
    out["journal_events"] = await metrics_line(server.url, "parley_journal_events")
    out["journal_batches"] = await metrics_line(server.url, "parley_journal_batches")
    return out


def print_sessions(backend: str, r: dict[str, Any], sizes: dict[str, Any]) -> None:
    print(f"\nsessions [{backend}] turns: append one message + receive pending (wait 0), sessions 4 to a channel, "
          f"{sizes['duration']} s per case")
    print(f"  {'case':<14} {'chans':>5} {'turns':>6} {'turns/s':>8} {'p50 ms':>8} {'p99 ms':>8} {'max ms':>8} "
          f"{'msgs/turn':>9} {'errors':>6} {'srv cpu':>7} {'cli cpu':>7} {'oth cpu':>7} complete")
    for name, x in r["turns"].items():
        print(f"  {x['sessions']:>3} sessions   {x['channels']:>5} {x['turns']:>6} {x['turns_per_s']:>8.1f} {x['p50_ms']:>8.2f} "
              f"{x['p99_ms']:>8.2f} {x['max_ms']:>8.1f} {x['delivered_per_turn'] or 0:>9.2f} {sum(x['errors'].values()):>6} "
              f"{x['server_cpu_pct']:>6}% {x['client_cpu_pct']:>6}% {x['other_cpu_pct']:>6}% {x['complete']}")
        for p in x["problems"]:
            print(f"      ! {p}")
    print(f"  wake-up: a waiting turn (wait {WAIT_S} s) answered after another client's append; latency from append start")
    print(f"  {'case':<14} {'rounds':>6} {'wakeups':>7} {'p50 ms':>8} {'p99 ms':>8} {'max ms':>8} {'ack p50':>8} {'ack p99':>8} "
          f"{'srv cpu':>7} {'oth cpu':>7} complete")
    for name, x in r["wake"].items():
        print(f"  {x['waiters']:>3} waiting    {x['rounds']:>6} {x['wakeups']:>7} {x['p50_ms']:>8.2f} {x['p99_ms']:>8.2f} "
              f"{x['max_ms']:>8.1f} {x['after_ack_p50_ms']:>8.2f} {x['after_ack_p99_ms']:>8.2f} {x['server_cpu_pct']:>6}% "
              f"{x['other_cpu_pct']:>6}% {x['complete']}")
        for p in x["problems"]:
            print(f"      ! {p}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("scenario", choices=["sessions", "all"], nargs="?", default="sessions")
    parser.add_argument("--quick", action="store_true", help="tiny sizes, a few seconds")
    parser.add_argument("--backend", choices=["sqlite", "postgres", "both"], default=None)
    parser.add_argument("--postgres", action="store_true", help="same as --backend postgres")
    parser.add_argument("--postgres-url", default=None, help="base URL (a fresh schema is made in it)")
    parser.add_argument("--duration", type=float, default=None, help="seconds per turns/s case")
    args = parser.parse_args(argv)
    backend = args.backend or ("postgres" if args.postgres else "sqlite")
    backends = ["sqlite", "postgres"] if backend == "both" else [backend]
    sizes = dict(QUICK if args.quick else FULL)
    if args.duration is not None:
        sizes["duration"] = args.duration
    report: dict[str, Any] = {
        "bench": "sessions",
        "date": _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "machine": f"{os.cpu_count()} vCPU, {platform.system()} {platform.release()}, Python {platform.python_version()}",
        "commit": _git_commit(),
        "quick": args.quick,
        "backends": backends,
        "load_average_before": load_average(),
        "scenarios": {"sessions": {}},
        "checks": {},
    }
    failures: list[str] = []
    started = time.perf_counter()
    for b in backends:
        try:
            with ParleyServer(b, tokens=make_tokens(MAX_SESSIONS + 1), postgres_url=args.postgres_url) as server:
                result = trio.run(sessions_parley, server, sizes)
                if not server.alive():
                    raise BenchFailure(f"the {b} server died during the run")
            print_sessions(b, result, sizes)
        except BenchFailure as exc:
            failures.append(f"sessions[{b}]: {exc}")
            result = {"error": str(exc)}
            print(f"\n!!! sessions [{b}] FAILED: {exc}", file=sys.stderr)
        report["scenarios"]["sessions"][b] = result
        if "turns" in result:
            checks = {
                "every_turn_finished_and_delivered_exactly_once": all(x["complete"] for x in result["turns"].values()),
                "every_waiter_woken_with_the_message": all(x["complete"] for x in result["wake"].values()),
            }
            for name, ok in checks.items():
                report["checks"][f"sessions.{b}.{name}"] = ok
                if not ok:
                    failures.append(f"sessions.{b}.{name}")
    return finish_report(report, failures, started)


if __name__ == "__main__":
    sys.exit(main())
