"""What the route table's lookup costs per request (ADR-0033), in-process, no server.

    python benchmarks/route_bench.py [--rounds N]

Times ``split_path`` alone (the hand-written dispatcher did it too) and
``split_path`` + ``ROUTER.find`` (the RAW stage, then the JSON stage, as
``dispatch`` does) for representative requests: the hot write route, a
read, a session turn, an artifact, a 405 and a 404. Prints microseconds per
lookup (best of five runs of ``--rounds`` lookups each) and, for scale, the
share of one append's server time it is at the append rate given by
``--append-rate`` (default: 600 msgs/s, about what ``http_bench.py append``
measures on two loaded cores).
"""

from __future__ import annotations

import argparse
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from parley.http.routes import ROUTER  # noqa: E402
from parley.http.routing import JSON, RAW  # noqa: E402
from parley.http.wire import split_path  # noqa: E402

CASES = (
    ("POST", b"/channels/war-room/append"),
    ("POST", b"/channels/war-room/read"),
    ("POST", b"/v1/session/ses_01HZX3K4M5N6P7Q8R9S0T1V2W3/message"),
    ("GET", b"/channels/war-room/artifacts/" + b"a" * 64),
    ("GET", b"/channels/war-room/append"),
    ("GET", b"/no/such/route"),
)


def lookup(method: str, raw: bytes):
    segments = split_path(raw)
    found = ROUTER.find(RAW, method, segments)
    return found if found is not None else ROUTER.find(JSON, method, segments)


def best_us(step, rounds: int) -> float:
    best = float("inf")
    for _ in range(5):
        t0 = time.perf_counter()
        for _ in range(rounds):
            step()
        best = min(best, (time.perf_counter() - t0) / rounds)
    return best * 1e6


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=20_000)
    parser.add_argument("--append-rate", type=float, default=600.0)
    args = parser.parse_args()
    print(f"load average {os.getloadavg()[0]:.2f} {os.getloadavg()[1]:.2f} {os.getloadavg()[2]:.2f}")
    print(f"{'request':<58} {'answer':<18} {'split µs':>9} {'split+find µs':>14}")
    for method, raw in CASES:
        found = lookup(method, raw)
        what = "no path" if found is None else (found.label if found.error is None else found.error.code)
        split = best_us(lambda: split_path(raw), args.rounds)
        both = best_us(lambda: lookup(method, raw), args.rounds)
        print(f"{method + ' ' + raw.decode()[:52]:<58} {what:<18} {split:>9.2f} {both:>14.2f}")
    append_us = best_us(lambda: lookup(*CASES[0]), args.rounds)
    share = append_us / (1e6 / args.append_rate) * 100
    print(f"append split+find = {share:.3f}% of one append's time at {args.append_rate:.0f} msgs/s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
