"""Where a fan-out message's time goes on the SERVER: this tree against a baseline, alternating.

    python benchmarks/fanout_probe.py --baseline PATH [--rounds N] [--ws-client trio-websocket|wsproto]

Each server runs with ``benchmarks/_probe/sitecustomize.py`` on its path,
which timestamps (``perf_counter`` in the server) the journal append (the
commit, fsync included), the commit hook (tails are woken here) and every
transport write. A round runs ``http_bench``'s fanout case (64 SSE, then 64
WebSocket subscribers, 200 sequential appends) on each server; per message
it prints p50/p99 of: the commit; commit done -> first and -> last
subscriber write; commit done -> the 201's write; the server's own pass
(first -> last subscriber write) and the gap between two subscribers' writes; and the load generator's
view (append start -> last receipt) beside it, with the load generator's
CPU per message, so the part of a subscriber's latency that is the server's
and the part that is the load generator's can be told apart (ADR-0054).
Ends with one JSON line.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import trio  # noqa: E402

import http_bench as hb  # noqa: E402
from _harness import ParleyServer, load_average, make_tokens  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PROBE = os.path.join(ROOT, "benchmarks", "_probe")


def pct(values: list[float], p: float) -> float:
    return round(hb.percentile(values, p) * 1e3, 2) if values else float("nan")


def server_timeline(rows: list[list[Any]]) -> dict[str, Any]:
    """Per appended message (one commit each): commit, commit -> first/last tail write, -> 201."""
    commits = [(r[1], r[2]) for r in rows if r[0] == "commit"]
    out: dict[str, list[float]] = {"commit": [], "first_write": [], "last_write": [], "ack_write": [], "tail_writes": []}
    notify_idx = [i for i, r in enumerate(rows) if r[0] == "notify"]
    for n, i in enumerate(notify_idx):
        t = rows[i][1]
        end = notify_idx[n + 1] if n + 1 < len(notify_idx) else len(rows)
        writes = [r for r in rows[i + 1 : end] if r[0] in ("send", "direct")]
        tails = [r for r in writes if not r[3].startswith("HTTP/1.1")]
        acks = [r for r in writes if r[3].startswith("HTTP/1.1 201")]
        if not tails or not acks:
            continue  # the channel's creation, or a subscriber's opening
        out["first_write"].append(tails[0][1] - t)
        out["last_write"].append(tails[-1][1] - t)
        out["ack_write"].append(acks[0][1] - t)
        out["tail_writes"].append(len(tails))
        out.setdefault("pass", []).append(tails[-1][1] - tails[0][1])
        out.setdefault("gap", []).extend(b[1] - a[1] for a, b in zip(tails, tails[1:]))
        out.setdefault("direct", []).append(sum(1 for r in tails if r[0] == "direct"))
    # the commits of appends (skip the create): the ones whose notify got tail writes
    out["commit"] = [t1 - t0 for t0, t1 in commits[1:]]
    summary = {k: {"p50_ms": pct(v, 50), "p99_ms": pct(v, 99)} for k, v in out.items() if k not in ("tail_writes", "direct", "gap")}
    summary["pass"] = summary.pop("pass", None)  # first -> last tail write: the server's own pass
    gaps = out.get("gap", [])
    summary["gap_us"] = {"p50": round(hb.percentile(gaps, 50) * 1e6, 1), "p90": round(hb.percentile(gaps, 90) * 1e6, 1)} if gaps else None
    summary["direct_share"] = round(sum(out.get("direct", [])) / max(1, sum(out["tail_writes"])), 3)
    summary["messages"] = len(out["first_write"])
    summary["tail_writes_per_msg"] = round(statistics.mean(out["tail_writes"]), 1) if out["tail_writes"] else 0
    return summary


async def one_case(server: ParleyServer, kind: str, channel: str, out_file: str) -> dict[str, Any]:
    ctx = hb.Ctx(server, dict(hb.FULL), "h11")
    return await hb.fanout_case(ctx, channel, [(kind, 64)], hb.FULL["fanout_messages"], burst=False)


def run(trees: dict[str, str], rounds: int) -> dict[str, Any]:
    tokens = make_tokens(hb.BURST_CONNECTIONS)
    results: dict[str, Any] = {name: [] for name in trees}
    for r in range(rounds):
        for kind in ("sse", "ws"):
            for name, tree in trees.items():
                with tempfile.TemporaryDirectory() as tmp:
                    out_file = os.path.join(tmp, "probe.json")
                    env = {"PYTHONPATH": tree + os.pathsep + PROBE, "PARLEY_PROBE_OUT": out_file}
                    load = load_average()
                    with ParleyServer("sqlite", tokens=tokens, env=env) as server:
                        row = trio.run(one_case, server, kind, f"probe-{kind}-{r}-{name}", out_file)
                    with open(out_file) as f:
                        timeline = server_timeline(json.load(f))
                results[name].append({"round": r, "kind": kind, "load": load, "client": row, "server": timeline})
    return results


def print_results(results: dict[str, Any]) -> None:
    print("\nserver-side timeline per message (ms, p50/p99; 'commit done' = the journal append returned)")
    print(f"  {'case':<14} {'tree':<5} {'load':>5} {'commit':>12} {'->1st write':>12} {'->last write':>13} {'->201 write':>12}"
          f" {'client: ->last rx p99':>22} {'cli ms/msg':>10} {'srv ms/msg':>10} {'direct':>6} {'pass p50':>8} {'gap us p50':>10}")
    rows = [(x, name) for name in results for x in results[name]]
    rows.sort(key=lambda t: (t[0]["round"], t[0]["kind"], t[1]))
    for x, name in rows:
        s, c = x["server"], x["client"]
        f = lambda k: f"{s[k]['p50_ms']:.2f}/{s[k]['p99_ms']:.2f}"  # noqa: E731
        print(
            f"  {x['kind'] + '_64 #' + str(x['round']):<14} {name:<5} {x['load'][0]:>5.2f} {f('commit'):>12} {f('first_write'):>12} "
            f"{f('last_write'):>13} {f('ack_write'):>12} {c['p99_ms']:>22.1f} {c['client_cpu_ms_per_msg']:>10.2f} {c['server_cpu_ms_per_msg']:>10.2f} {s['direct_share']:>6.2f} {s['pass']['p50_ms']:>8.2f} {s['gap_us']['p50']:>10.1f}"
        )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--baseline", required=True)
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--ws-client", choices=["trio-websocket", "wsproto"], default="trio-websocket")
    args = parser.parse_args(argv)
    hb.WS_CLIENT = args.ws_client
    trees = {"base": os.path.abspath(args.baseline), "new": ROOT}
    started = time.perf_counter()
    results = run(trees, args.rounds)
    print_results(results)
    print(json.dumps({"bench": "fanout_probe", "commit": hb._git_commit(), "ws_client": args.ws_client,
                      "results": results, "wall_s": round(time.perf_counter() - started, 1), "load_after": load_average()}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
