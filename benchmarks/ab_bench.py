"""This tree against a baseline tree in ONE run, alternating: the read scan and the fan-out.

    python benchmarks/ab_bench.py {scan|fanout|bulk|all} --baseline PATH [--rounds N] [--profile DIR] [--duration S]

``PATH`` is another checkout of parley (for example ``git worktree add
/tmp/base <commit>``, or ``git archive <commit> | tar -x -C /tmp/base``); its
server runs from its own package (``PYTHONPATH``), this tree's from this one,
both on SQLite, side by side, and every round measures one then the other,
so a machine shared with other jobs slows both alike and the ratio new/base
stays meaningful where absolute figures do not (print them too, with the
load average).

* ``scan``: each server gets one 10,000-message channel (seeded over the
  pipelined WebSocket, ADR-0009, which is not what is measured); a round
  scans it from cursor 0 in 500-message pages with one sequential client:
  msgs/s (median over the rounds) and server CPU ms per page (total over
  the rounds: /proc counts CPU in 10 ms ticks), the ratio
  new/base, and this tree's median against the reference server's figure
  (issue 19's table, 314k-388k msgs/s: the reference server is not
  available here, so its figure is taken).
* ``fanout``: a round is ``http_bench``'s fanout case (64 SSE or 64 WebSocket
  subscribers on a fresh channel, then 200 sequential appends, latency from
  append start to receipt) on each server, then a burst of 1,000 appends
  with 32 SSE + 32 WS subscribers: p50/p99, completeness, CPU.

* ``bulk``: a round is ``http_bench.py bulk``'s two append_many cases (16
  senders into 1 channel, then over 16 channels; fresh channels every round)
  on each server: msgs/s, server CPU per message, and how the commits were
  grouped (events and write requests per writer transaction, batches the
  channel pipeline decided ahead and dropped).

Ends with one JSON line. Exit status 1 if a check (complete scans, every
subscriber got every message once in order) failed.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import orjson  # noqa: E402
import trio  # noqa: E402

import http_bench as hb  # noqa: E402
from _harness import ParleyServer, load_average, make_tokens  # noqa: E402
from _pyspy import recording  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCAN_MESSAGES = 10_000
SEED_WINDOW = 256


def server_for(tree: str, tokens) -> ParleyServer:
    return ParleyServer("sqlite", tokens=tokens, env={"PYTHONPATH": tree})


async def seed_over_ws(url: str, token: str, channel: str, total: int) -> float:
    """``total`` appends over one pipelined WebSocket; returns msgs/s."""
    from trio_websocket import open_websocket_url

    ws_url = url.replace("http://", "ws://", 1) + f"/channels/{channel}/ws?tail=0"
    t0 = time.perf_counter()
    async with open_websocket_url(ws_url, extra_headers=[("Authorization", f"Bearer {token}")]) as ws:
        window = trio.Semaphore(SEED_WINDOW)
        acked = 0
        done = trio.Event()

        async def reader() -> None:
            nonlocal acked
            while acked < total:
                frame = orjson.loads(await ws.get_message())
                if frame.get("type") != "ack" or frame.get("status") != 201:
                    raise hb.BenchFailure(f"seeding answered {frame}")
                acked += 1
                window.release()
            done.set()

        async with trio.open_nursery() as nursery:
            nursery.start_soon(reader)
            for n in range(total):
                await window.acquire()
                await ws.send_message(orjson.dumps({"id": n, "append": hb.note("seed", n)}).decode())
            await done.wait()
    return total / (time.perf_counter() - t0)


async def scan_rounds(servers: dict[str, ParleyServer], rounds: int, profile: str | None) -> dict[str, Any]:
    sizes = dict(hb.FULL)
    ctxs = {name: hb.Ctx(server, sizes, "h11") for name, server in servers.items()}
    seeded = {}
    for name, ctx in ctxs.items():
        await hb.create_channel(ctx, "scan")
        seeded[name] = round(await seed_over_ws(ctx.url, ctx.tokens[0][0], "scan", SCAN_MESSAGES))
    clients = {name: ctx.client() for name, ctx in ctxs.items()}
    runs: dict[str, list[dict[str, float]]] = {name: [] for name in ctxs}
    try:
        for client in clients.values():
            await hb.scan_once(client, "scan")  # warm: every message encoded once where it is cached
        order = list(clients.items())
        for r in range(rounds):
            # Each round flips who goes first, so neither tree always follows the other.
            for name, client in order if r % 2 == 0 else order[::-1]:
                with hb.CpuMeter(servers[name]) as cpu:
                    seen, pages, _nbytes, _lat = await hb.scan_once(client, "scan")
                if seen != SCAN_MESSAGES:
                    raise hb.BenchFailure(f"{name}: scan saw {seen} messages")
                runs[name].append({"msgs_per_s": seen / cpu.wall, "cpu_s": cpu.server_cpu / 100 * cpu.wall, "client_cpu_s": cpu.client_cpu / 100 * cpu.wall, "pages": pages})
        if profile is not None:
            for name, ctx in ctxs.items():
                fresh = ctx.client()  # the other one may have idled past the keep-alive timeout
                try:
                    with recording(servers[name].proc.pid, profile, f"scan-{name}"):
                        end = time.perf_counter() + hb.PROFILE_SCAN_S
                        while time.perf_counter() < end:
                            await hb.scan_once(fresh, "scan")
                finally:
                    await fresh.aclose()
    finally:
        for client in clients.values():
            await client.aclose()
    out: dict[str, Any] = {"rounds": rounds, "seed_msgs_per_s": seeded}
    for name, rows in runs.items():
        out[name] = {
            "msgs_per_s_median": round(statistics.median(r["msgs_per_s"] for r in rows)),
            "msgs_per_s_best": round(max(r["msgs_per_s"] for r in rows)),
            # /proc counts CPU in 10 ms ticks (~4-5 per scan): total over all rounds, not a median
            "cpu_ms_per_page": round(sum(r["cpu_s"] for r in rows) / sum(r["pages"] for r in rows) * 1000, 3),
            # the load generator's own CPU per page (this process: h11, the JSON decode of each page)
            "client_cpu_ms_per_page": round(sum(r["client_cpu_s"] for r in rows) / sum(r["pages"] for r in rows) * 1000, 3),
        }
    out["ratio_new_over_base"] = {
        "msgs_per_s": round(out["new"]["msgs_per_s_median"] / out["base"]["msgs_per_s_median"], 2),
        "cpu_per_page": round(out["new"]["cpu_ms_per_page"] / out["base"]["cpu_ms_per_page"], 2),
    }
    low, high = hb.REFERENCE_SCAN_MSGS_PER_S
    out["new_over_reference"] = [round(out["new"]["msgs_per_s_median"] / high, 2), round(out["new"]["msgs_per_s_median"] / low, 2)]
    return out


async def fanout_rounds(servers: dict[str, ParleyServer], rounds: int, profile: str | None = None) -> dict[str, Any]:
    """``profile``: py-spy each server during its first round's cases (``<DIR>/fan-<kind>-64-0-<tree>.txt``)."""
    sizes = dict(hb.FULL)
    out: dict[str, Any] = {name: {} for name in servers}
    for r in range(rounds):
        hb.PROFILE_DIR = profile if r == 0 else None
        for kind in ("sse", "ws"):
            for name, server in servers.items():
                ctx = hb.Ctx(server, sizes, "h11")
                channel = f"fan-{kind}-64-{r}-{name}"
                row = await hb.fanout_case(ctx, channel, [(kind, 64)], sizes["fanout_messages"], burst=False)
                out[name].setdefault(f"{kind}_64", []).append(row)
    hb.PROFILE_DIR = None
    b = sizes["burst_subscribers"]
    for name, server in servers.items():
        ctx = hb.Ctx(server, sizes, "h11")
        row = await hb.fanout_case(ctx, f"fan-burst-{name}", [("sse", b), ("ws", b)], sizes["burst"], burst=True)
        out[name][f"burst_{sizes['burst']}_sse{b}_ws{b}"] = [row]
    return out


async def bulk_rounds(
    servers: dict[str, ParleyServer], rounds: int, profile: str | None = None, duration: float | None = None
) -> dict[str, Any]:
    """``http_bench.py bulk``'s append_many cases (16 senders; 1 channel, then 16
    channels), alternating the servers and flipping who goes first every round;
    fresh channels every round, so both trees always write into channels of the
    same size. ``profile``: py-spy each server in the first round."""
    import bulk_scenario as bs

    sizes = dict(hb.FULL)
    if duration is not None:
        sizes["duration"] = duration
    out: dict[str, Any] = {name: {"one_channel": [], "16_channels": []} for name in servers}
    order = list(servers)
    for r in range(rounds):
        sizes["profile"] = profile if r == 0 else None
        for name in order if r % 2 == 0 else order[::-1]:
            ctx = hb.Ctx(servers[name], sizes, "h11")
            for layout, count in (("one_channel", 1), ("16_channels", 16)):
                channels = [f"ab-{count}ch-{r}-{k}" for k in range(count)]
                for channel in channels:
                    await hb.create_channel(ctx, channel)
                row = await bs.bulk_case(ctx, channels, f"bulk-{layout}-{name}")
                row["load_average"] = load_average()[0]
                out[name][layout].append(row)
                if row["errors"] or not row["readback"]["ok"]:
                    raise hb.BenchFailure(f"{name} {layout} round {r}: errors {row['errors']}, readback {row['readback']}")
    return out


def print_bulk(r: dict[str, Any]) -> None:
    print("\nbulk A/B: append_many, 16 senders, alternating rounds (server CPU from /proc; ev = events)")
    print(
        f"  {'case':<12} {'tree':<5} {'msgs/s':>8} {'srv cpu':>7} {'srv us/msg':>10} {'oth cpu':>7} {'ev/commit':>9}"
        f" {'req/commit':>10} {'ev/req':>7} {'ahead':>6} {'dropped':>7} {'load':>5}"
    )
    for layout in ("one_channel", "16_channels"):
        for i in range(len(r["new"][layout])):
            for name in ("base", "new"):
                x = r[name][layout][i]
                us = 1e4 * x["server_cpu_pct"] / x["rate"] if x["rate"] else float("nan")
                print(
                    f"  {layout:<12} {name:<5} {x['rate']:>8.0f} {x['server_cpu_pct']:>6}% {us:>10.1f} {x['other_cpu_pct']:>6}%"
                    f" {str(x.get('events_per_commit')):>9} {str(x.get('requests_per_commit')):>10} {str(x.get('events_per_request')):>7}"
                    f" {str(x.get('decided_ahead', '-')):>6} {str(x.get('decided_ahead_dropped', '-')):>7} {x['load_average']:>5.2f}"
                )
        rates = {name: [x["rate"] for x in r[name][layout]] for name in ("base", "new")}
        cpu = {
            name: sum(x["server_cpu_pct"] * x["elapsed_s"] for x in r[name][layout]) / sum(x["ok"] for x in r[name][layout]) * 1e4
            for name in ("base", "new")
        }
        print(
            f"  {layout}: median msgs/s base {statistics.median(rates['base']):,.0f}, new {statistics.median(rates['new']):,.0f}"
            f" ({statistics.median(rates['new']) / statistics.median(rates['base']):.2f}x);"
            f" server CPU per msg (all rounds) base {cpu['base']:.1f} us, new {cpu['new']:.1f} us ({cpu['new'] / cpu['base']:.2f}x)"
        )
        r.setdefault("summary", {})[layout] = {
            "median_msgs_per_s": {name: round(statistics.median(rates[name])) for name in rates},
            "server_cpu_us_per_msg": {name: round(cpu[name], 1) for name in cpu},
        }


def print_scan(r: dict[str, Any]) -> None:
    print(f"\nscan A/B, {r['rounds']} alternating rounds of {SCAN_MESSAGES} msgs in 500-message pages (msgs/s: medians)")
    print(f"  {'tree':<5} {'msgs/s':>9} {'best':>9} {'srv CPU ms/page':>16} {'client CPU ms/page':>19}")
    for name in ("base", "new"):
        x = r[name]
        print(
            f"  {name:<5} {x['msgs_per_s_median']:>9} {x['msgs_per_s_best']:>9} {x['cpu_ms_per_page']:>16.3f}"
            f" {x['client_cpu_ms_per_page']:>19.3f}"
        )
    ratio = r["ratio_new_over_base"]
    print(f"  new/base: msgs/s {ratio['msgs_per_s']:.2f}x, server CPU per page {ratio['cpu_per_page']:.2f}x")
    lo, hi = r["new_over_reference"]
    print(f"  new vs the reference server (issue 19's table, 314k-388k msgs/s, not run here): {lo:.2f}-{hi:.2f}x")


def print_fanout(r: dict[str, Any]) -> None:
    print("\nfanout A/B (latency = append start -> receipt; every case: every subscriber, every message)")
    print(f"  {'case':<26} {'tree':<5} {'p50 ms':>8} {'p99 ms':>8} {'max ms':>8} {'srv cpu':>7} {'srv us/delivery':>15} complete")
    for case in r["new"]:
        for name in ("base", "new"):
            for row in r[name][case]:
                print(
                    f"  {case:<26} {name:<5} {row['p50_ms']:>8.1f} {row['p99_ms']:>8.1f} {row['max_ms']:>8.1f} "
                    f"{row['server_cpu_pct']:>6}% {cpu_us_per_delivery(row):>15.1f} {row['complete']}"
                )
    print("  where the time goes (ms, over messages; 1st->last = server fan-out and this process receiving, together):")
    rows = {f"{case} {name} #{i}": row for case in r["new"] for name in ("base", "new") for i, row in enumerate(r[name][case])}
    hb.print_fanout_breakdown(rows)


def cpu_us_per_delivery(row: dict[str, Any]) -> float:
    """Server CPU per message delivered to one subscriber (appends included): less
    sensitive than latency to a machine busy with other jobs."""
    return row["server_cpu_pct"] / 100 * row["all_delivered_s"] / max(1, row["deliveries"]) * 1e6


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("scenario", choices=["scan", "fanout", "bulk", "all"])
    parser.add_argument("--baseline", required=True, help="another parley checkout (its server is 'base')")
    parser.add_argument("--rounds", type=int, default=None, help="alternating rounds (scan 15, fanout 2, bulk 3)")
    parser.add_argument("--profile", metavar="DIR", default=None, help="py-spy both servers (extra scans; fanout round 1)")
    parser.add_argument("--duration", type=float, default=None, help="bulk: seconds per case (default: http_bench's 4)")
    parser.add_argument("--ws-client", choices=["trio-websocket", "wsproto"], default="trio-websocket", help="fanout's WebSocket subscriber (http_bench)")
    args = parser.parse_args(argv)
    hb.WS_CLIENT = args.ws_client
    trees = {"base": os.path.abspath(args.baseline), "new": ROOT}
    report: dict[str, Any] = {
        "bench": "ab",
        "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "commit": hb._git_commit(),
        "baseline": trees["base"],
        "ws_client": args.ws_client,
        "load_average_before": load_average(),
        "scenarios": {},
    }
    failures: list[str] = []
    tokens = make_tokens(hb.BURST_CONNECTIONS)
    names = ["scan", "fanout"] if args.scenario == "all" else [args.scenario]
    started = time.perf_counter()
    servers = {name: server_for(tree, tokens) for name, tree in trees.items()}
    try:
        for server in servers.values():
            server.__enter__()
        for name in names:
            if name == "scan":
                result = trio.run(scan_rounds, servers, args.rounds or 15, args.profile)
                print_scan(result)
            elif name == "bulk":
                result = trio.run(bulk_rounds, servers, args.rounds or 3, args.profile, args.duration)
                print_bulk(result)
            else:
                result = trio.run(fanout_rounds, servers, args.rounds or 2, args.profile)
                print_fanout(result)
                if not all(row["complete"] for tree in ("base", "new") for rows in result[tree].values() for row in rows):
                    failures.append("fanout.complete")
            report["scenarios"][name] = result
    except hb.BenchFailure as exc:
        failures.append(str(exc))
    finally:
        for server in servers.values():
            server.__exit__(None, None, None)
    report["checks"] = {"ok": not failures}
    return hb.finish_report(report, failures, started)


if __name__ == "__main__":
    sys.exit(main())
