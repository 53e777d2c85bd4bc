"""Server memory under WebSocket frame abuse (issue 20 item 4, ADR-0022).

    python benchmarks/ws_frame_abuse_bench.py [--connections 32] [--frame-mib 16]

For each case a fresh ``parley serve`` (SQLite) is started, ``--connections``
WebSockets are opened at once and each sends one text frame of
``--frame-mib`` MiB:

* ``channel_ws_anonymous``  ``/channels/c/ws`` without a token (refused after
  4 KiB, before it is buffered);
* ``channel_ws_token``      ``/channels/c/ws`` with a token;
* ``session_ws_token``      ``/v1/ws`` with a token.

Printed per case: the close codes the clients saw, the server's RSS before,
its peak (``VmHWM``) and its RSS 1 s after every socket closed. Bound
(documented in ADR-0022 and SECURITY.md): the peak stays under the
start-up RSS + connections x 4 MiB x 2 (one partial message per socket,
plus the copy handed to the app), and every socket is closed with 1009 (or
1008 for a small anonymous frame). Ends with one JSON line; exit 1 if a
bound was broken.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import httpx
import trio
from trio_websocket import ConnectionClosed, open_websocket_url

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from benchmarks._harness import ParleyServer  # noqa: E402

CASES = {
    "channel_ws_anonymous": ("/channels/c/ws?tail=0", None),
    "channel_ws_token": ("/channels/c/ws?tail=0", "bench-tok-0"),
    "session_ws_token": ("/v1/ws", "bench-tok-0"),
}
FRAME_CAP_MIB = 4


def status_kib(pid: int) -> dict[str, int]:
    fields = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            name, _, value = line.partition(":")
            if name in ("VmRSS", "VmHWM"):
                fields[name] = int(value.split()[0])
    return fields


async def abuse(url: str, token: str | None, connections: int, frame: str) -> list[int | None]:
    codes: list[int | None] = []
    headers = [("Authorization", f"Bearer {token}")] if token else []

    async def one() -> None:
        try:
            async with open_websocket_url(url, extra_headers=headers, max_message_size=2**26) as ws:
                try:
                    await ws.send_message(frame)
                    with trio.fail_after(30):
                        while True:
                            await ws.get_message()
                except ConnectionClosed as closed:
                    codes.append(closed.reason.code)
        except Exception as exc:  # noqa: BLE001 - counted, not fatal
            codes.append(None)
            print(f"  connection failed: {type(exc).__name__}", file=sys.stderr)

    async with trio.open_nursery() as nursery:
        for _ in range(connections):
            nursery.start_soon(one)
    return codes


def run_case(name: str, connections: int, frame_mib: int) -> dict:
    path, token = CASES[name]
    with ParleyServer("sqlite") as server:
        with httpx.Client(base_url=server.url, headers={"Authorization": "Bearer bench-tok-0"}) as c:
            assert c.post("/channels", json={"channel": "c"}).status_code == 201
        before = status_kib(server.pid)
        frame = "x" * (frame_mib * 1024 * 1024)
        started = time.monotonic()
        codes = trio.run(abuse, server.url.replace("http://", "ws://") + path, token, connections, frame)
        seconds = time.monotonic() - started
        time.sleep(1)
        after = status_kib(server.pid)
    bound_kib = before["VmRSS"] + connections * FRAME_CAP_MIB * 1024 * 2
    return {
        "connections": connections,
        "frame_mib": frame_mib,
        "close_codes": {str(code): codes.count(code) for code in sorted(set(codes), key=str)},
        "rss_before_mib": round(before["VmRSS"] / 1024, 1),
        "rss_peak_mib": round(after["VmHWM"] / 1024, 1),
        "rss_after_mib": round(after["VmRSS"] / 1024, 1),
        "bound_mib": round(bound_kib / 1024, 1),
        "seconds": round(seconds, 2),
        "ok": after["VmHWM"] <= bound_kib and all(code in (1008, 1009) for code in codes),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--frame-mib", type=int, default=16)
    args = parser.parse_args()
    results = {}
    print(f"{'case':<22} {'codes':<16} {'RSS before':>10} {'peak':>8} {'after':>8} {'bound':>8} {'s':>6} ok")
    for name in CASES:
        r = results[name] = run_case(name, args.connections, args.frame_mib)
        print(
            f"{name:<22} {json.dumps(r['close_codes']):<16} {r['rss_before_mib']:>8.1f}Mi {r['rss_peak_mib']:>6.1f}Mi "
            f"{r['rss_after_mib']:>6.1f}Mi {r['bound_mib']:>6.1f}Mi {r['seconds']:>6.2f} {r['ok']}"
        )
    ok = all(r["ok"] for r in results.values())
    print(json.dumps({"benchmark": "ws_frame_abuse", "cases": results, "ok": ok}))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
