"""``parley_wait`` wake-up latency: an HTTP append commits, how soon does the MCP client get it back?

    python benchmarks/mcp_wait_bench.py [--rounds 200] [--backend sqlite]

A real ``parley serve`` (the harness) and a real ``parley mcp`` spawned by the
MCP SDK's stdio client. Each round: call ``parley_wait`` (timeout 30 s),
wait until the server shows its SSE tail open (``parley_open_streams``),
append one message over plain HTTP, and time the moment ``call_tool``
returns against (a) the append's acknowledgement (after its commit) and
(b) the moment the append was sent. Target: p99 ≤ 50 ms after the commit
(contracts/mcp.md §8.1). Prints one line of figures per measure.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import httpx
import trio
from mcp import Client, StdioServerParameters

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks._harness import ParleyServer, load_average  # noqa: E402
from parley.client import new_ulid  # noqa: E402

TOKENS = [("bench-a", "agent-a", "owner-a"), ("bench-b", "agent-b", "owner-b")]


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


async def open_streams(http: httpx.AsyncClient) -> float:
    text = (await http.get("/metrics")).text
    return float(next(line for line in text.splitlines() if line.startswith("parley_open_streams ")).split()[1])


async def run(url: str, rounds: int) -> tuple[list[float], list[float]]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PARLEY_", "CAUCUS_"))}
    env.update(PARLEY_URL=url, PARLEY_TOKEN="bench-a", PARLEY_CHANNEL="bench", PARLEY_STATE_DIR=tempfile.mkdtemp())
    env["PYTHONPATH"] = str(Path(__file__).resolve().parents[1])
    params = StdioServerParameters(command=sys.executable, args=["-m", "parley", "mcp"], env=env)
    after_ack: list[float] = []
    after_send: list[float] = []
    async with Client(params, mode="legacy") as mcp, httpx.AsyncClient(
        base_url=url, headers={"Authorization": "Bearer bench-b"}
    ) as http:
        await mcp.call_tool("parley_wait", {"timeout": 0})
        for i in range(rounds):
            returned = trio.Event()
            stamp: dict[str, float] = {}

            async def waiter() -> None:
                result = await mcp.call_tool("parley_wait", {"timeout": 30})
                stamp["returned"] = time.perf_counter()
                assert not result.is_error and '"timed_out":false' in result.content[0].text, result
                returned.set()

            async with trio.open_nursery() as nursery:
                nursery.start_soon(waiter)
                while await open_streams(http) < 1:
                    await trio.sleep(0.002)
                stamp["sent"] = time.perf_counter()
                body = {"type": "note", "body": f"round {i}", "msg_id": new_ulid(), "agent_id": "x", "owner": "x"}
                response = await http.post("/channels/bench/append", json=body)
                stamp["ack"] = time.perf_counter()
                assert response.status_code == 201, response.text
                await returned.wait()
            after_ack.append(max(0.0, stamp["returned"] - stamp["ack"]) * 1000)
            after_send.append((stamp["returned"] - stamp["sent"]) * 1000)
            # let the tail close before the next round's gauge check
            while await open_streams(http) > 0:
                await trio.sleep(0.002)
    return after_ack, after_send


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=200)
    parser.add_argument("--backend", default="sqlite", choices=["sqlite", "postgres"])
    args = parser.parse_args()
    with ParleyServer(args.backend, tokens=TOKENS, log_level="WARNING") as server:
        after_ack, after_send = trio.run(run, server.url, args.rounds)
    print(f"parley_wait wake-up, {args.rounds} rounds, {args.backend}, load average {load_average()}")
    for name, values in (("after the append's ack", after_ack), ("after the append was sent", after_send)):
        print(
            f"  {name:26s} p50 {statistics.median(values):6.2f} ms  p90 {pct(values, 0.9):6.2f} ms  "
            f"p99 {pct(values, 0.99):6.2f} ms  max {max(values):6.2f} ms"
        )


if __name__ == "__main__":
    main()
