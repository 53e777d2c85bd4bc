"""``http_bench.py bulk``: the SDK's ``append_many`` against per-request appends (issue 19 target 1).

    python benchmarks/http_bench.py bulk [--quick] [--backend sqlite|postgres|both] [--duration S] [--profile DIR]

One server (SQLite ``synchronous=FULL`` by default), in one run:

* the per-request baseline: ``append``'s closed loop with 16 clients into one
  channel and 16 clients over 16 channels (the issue table's shapes);
* the bulk path: 16 concurrent senders, each an ``AsyncParley`` with its own
  token calling ``append_many(channel, <CALL> messages)`` back to back (batch
  frames over the channel WebSocket, ADR-0039), into one channel and over 16
  channels.

Printed: acknowledged msgs/s (a slot holding a stored message), the ratio
bulk / per-request measured in this run, and the ratio to the reference
server's per-request figures from issue 19's table (the reference server is
not available on this machine, so its figures are taken from the table:
1 channel 3,476-4,390 msgs/s, 16 channels 4,389-5,694; target >= 1.5x the
upper figure). Checks: every slot is a stored message (no error), and every
channel read back from cursor 0 holds exactly the acknowledged msg_ids.
"""

from __future__ import annotations

import math
import time
from typing import Any

import trio

import http_bench as hb
from parley.client import AsyncParley, ParleyError

#: issue 19's table: the reference server's per-request append rate (two runs).
REFERENCE = {"one_channel": (3476, 4390), "16_channels": (4389, 5694)}
TARGET_OVER_REFERENCE = 1.5
SENDERS = 16
#: Messages per append_many call (4 batch frames of 256).
CALL = 1024


async def bulk_case(ctx: hb.Ctx, channels: list[str], tag: str) -> dict[str, Any]:
    sizes = ctx.sizes
    per_call = CALL if not ctx.sizes.get("quick") else 256
    clients = [AsyncParley(ctx.url, ctx.tokens[i][0], timeout=hb.CLIENT_TIMEOUT) for i in range(SENDERS)]
    acked: list[str] = []
    errors: dict[str, int] = {}
    calls: list[float] = []
    counters = [0] * SENDERS

    async def sender(i: int, client: AsyncParley, deadline: float, record: bool) -> None:
        channel = channels[i % len(channels)]
        while time.perf_counter() < deadline:
            batch = [hb.note(f"{tag} sender {i}", counters[i] + k) for k in range(per_call)]
            counters[i] += per_call
            t0 = time.perf_counter()
            slots = await client.append_many(channel, batch)
            calls.append(time.perf_counter() - t0)
            for message, slot in zip(batch, slots):
                if isinstance(slot, ParleyError):
                    key = f"{slot.status}:{slot.code}"
                    errors[key] = errors.get(key, 0) + 1
                else:
                    acked.append(message["msg_id"])
            if not record:
                return

    async def run(duration: float, record: bool) -> float:
        deadline = time.perf_counter() + duration
        start = time.perf_counter()
        with trio.fail_after(duration + 4 * hb.CLIENT_TIMEOUT):
            async with trio.open_nursery() as nursery:
                for i, client in enumerate(clients):
                    nursery.start_soon(sender, i, client, deadline, record)
        return time.perf_counter() - start

    try:
        await run(0.0, record=False)  # warm-up: one call each (sockets, actors, seatbelt windows)
        warm = len(acked)
        calls.clear()
        before = await hb.scrape(ctx)
        pid = getattr(getattr(ctx.server, "proc", None), "pid", None)
        with hb.recording(pid, sizes.get("profile"), tag), hb.CpuMeter(ctx.server) as cpu:
            elapsed = await run(sizes["duration"], record=True)
        after = await hb.scrape(ctx)
    finally:
        for client in clients:
            await client.aclose()
    ok = len(acked) - warm
    result: dict[str, Any] = {
        "senders": SENDERS,
        "channels": len(channels),
        "messages_per_call": per_call,
        "ok": ok,
        "errors": errors,
        "rate": ok / elapsed if elapsed else math.nan,
        "call_p50_ms": hb.ms(hb.percentile(calls, 50)),
        "call_p99_ms": hb.ms(hb.percentile(calls, 99)),
        "elapsed_s": round(elapsed, 3),
        **cpu.fields(),
    }
    if before and after:
        batches = after["parley_journal_batches"] - before["parley_journal_batches"]
        events = after["parley_journal_events"] - before["parley_journal_events"]
        result["events_per_commit"] = round(events / batches, 1) if batches else None
        # How the 16 actors' commits were grouped: write requests (channel appends,
        # snapshots) per writer transaction (one fsync each), and the pipeline's
        # batches decided ahead / dropped (ADR-0057; absent on trees without it).
        requests = after.get("parley_journal_requests", math.nan) - before.get("parley_journal_requests", math.nan)
        result["commits"] = batches
        result["requests_per_commit"] = round(requests / batches, 2) if batches and requests == requests else None
        result["events_per_request"] = round(events / requests, 1) if requests == requests and requests else None
        result["fsyncs_per_1k_msgs"] = round(1000 * batches / ok, 2) if ok else None
        for key in ("decided_ahead", "decided_ahead_dropped"):
            name = f"parley_channel_batches_{key}"
            if name in after:
                result[key] = after[name] - before.get(name, 0.0)
    result["readback"] = hb.compare_readback(acked, await hb.read_all_ids(ctx, channels))
    return result


async def bulk_parley(ctx: hb.Ctx) -> dict[str, Any]:
    out: dict[str, Any] = {}
    one = ["bulk-base-one"]
    spread = [f"bulk-base-spread-{k}" for k in range(16)]
    for channel in [*one, *spread]:
        await hb.create_channel(ctx, channel)
    clients = await ctx.clients(SENDERS)
    try:
        out["per_request_one_channel_c16"] = await hb.measure_appends(ctx, clients, one, "base-one")
        out["per_request_16_channels_c16"] = await hb.measure_appends(ctx, clients, spread, "base-spread")
    finally:
        await ctx.close_all(clients)
    one = ["bulk-one"]
    spread = [f"bulk-spread-{k}" for k in range(16)]
    for channel in [*one, *spread]:
        await hb.create_channel(ctx, channel)
    out["bulk_one_channel_s16"] = await bulk_case(ctx, one, "bulk-one")
    out["bulk_16_channels_s16"] = await bulk_case(ctx, spread, "bulk-spread")
    return out


def scenario_bulk(backends, sizes, args) -> dict[str, Any]:
    out: dict[str, Any] = {}
    sizes = {**sizes, "quick": args.quick, "profile": args.profile}
    targets: dict[str, bool] = {}
    checks: dict[str, bool] = {}
    for backend in backends:
        rows = hb.run_parley(backend, bulk_parley, sizes, args, n_tokens=64)
        ratios: dict[str, Any] = {}
        print(f"\nbulk [{backend}] append_many (16 senders, batch frames over the channel WebSocket) vs per-request appends, {sizes['duration']}s per case")
        print(f"  {'case':<30} {'msgs/s':>8} {'p50 ms':>8} {'p99 ms':>8} {'srv cpu':>7} {'srv us/msg':>10} {'cli cpu':>7} {'oth cpu':>7} {'ev/commit':>9} errors")
        for name, r in rows.items():
            # Server CPU per acknowledged message: what the rate would be bound by
            # with a whole core to itself (the machine is shared; compare these).
            r["server_cpu_us_per_msg"] = hb.rnd(1e4 * r["server_cpu_pct"] / r["rate"], 1) if r["rate"] else None
            p50 = r.get("p50_ms", r.get("call_p50_ms"))
            p99 = r.get("p99_ms", r.get("call_p99_ms"))
            print(
                f"  {name:<30} {r['rate']:>8.0f} {p50:>8.2f} {p99:>8.2f} {r['server_cpu_pct']:>6}% {str(r['server_cpu_us_per_msg']):>10} {r['client_cpu_pct']:>6}% "
                f"{r['other_cpu_pct']:>6}% {str(r.get('events_per_commit') or '-'):>9} {sum(r['errors'].values())}"
            )
        print("  (p50/p99 of bulk rows: one append_many call of the row's messages_per_call messages)")
        for layout in ("one_channel", "16_channels"):
            bulk = rows[f"bulk_{layout}_s16"]["rate"]
            base = rows[f"per_request_{layout}_c16"]["rate"]
            low, high = REFERENCE[layout]
            cost = (rows[f"per_request_{layout}_c16"]["server_cpu_us_per_msg"], rows[f"bulk_{layout}_s16"]["server_cpu_us_per_msg"])
            ratios[layout] = {
                "bulk_msgs_per_s": round(bulk),
                "server_cpu_per_msg_per_request_over_bulk": hb.rnd(cost[0] / cost[1], 1) if all(cost) else None,
                "msgs_per_server_cpu_second": round(1e6 / cost[1]) if cost[1] else None,
                "over_per_request_same_run": hb.rnd(bulk / base, 2) if base else None,
                "over_reference_low": hb.rnd(bulk / low, 2),
                "over_reference_high": hb.rnd(bulk / high, 2),
            }
            targets[f"{backend}.{layout}"] = bulk >= TARGET_OVER_REFERENCE * high
            print(
                f"  {layout:<12} bulk {bulk:>7.0f} msgs/s = {bulk / base:>5.1f}x per-request ({base:.0f}) in this run; "
                f"{bulk / low:.2f}x / {bulk / high:.2f}x the reference's {low:,}-{high:,} (issue table, not measured here); "
                f"target >= {TARGET_OVER_REFERENCE * high:,.0f}: {'met' if targets[f'{backend}.{layout}'] else 'NOT met'}"
            )
            if all(cost):
                print(
                    f"  {'':<12} server CPU per message: {cost[1]} us bulk vs {cost[0]} us per request "
                    f"({cost[0] / cost[1]:.1f}x less); one whole core would carry {1e6 / cost[1]:,.0f} msgs/s"
                )
        rows["ratios"] = ratios
        out[backend] = rows
        bulk_rows = [r for k, r in rows.items() if k.startswith("bulk_")]
        checks[f"{backend}.no_errors"] = all(not r["errors"] for r in bulk_rows)
        checks[f"{backend}.readback_equals_acks"] = all(r["readback"]["ok"] for r in bulk_rows)
    out["targets"] = {"at_least_1.5x_reference_high": targets}
    out["checks"] = checks
    return out
