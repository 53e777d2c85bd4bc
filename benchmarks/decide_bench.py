"""CPU cost of deciding a channel batch, in process (no server, no journal).

    python benchmarks/decide_bench.py [--batch 64] [--batches 400] [--history 5000]

Times what the channel actor does with one batch of appends between taking it
from the mailbox and handing it to the journal, plus the fold after the
commit: on this branch a ``PendingState`` view, a seatbelt ``PendingCharges``
sheet, then the fold into the state and ``charge`` (ADR-0037); on a checkout
from before ADR-0037 (detected by ``rules.apply_undoable``), the speculative
fold with ``apply_undoable`` and the seatbelt's undo log. Run it with each
checkout's own interpreter, alternately, and compare the µs per message
measured in the same minutes (the machine is shared and noisy: the figure
printed is the best of several rounds, and the load average is printed too).
"""

from __future__ import annotations

import argparse
import json
import os
import time

from parley.domain import channel as rules
from parley.domain.identity import Identity
from parley.domain.message import stamp as make_stamp
from parley.domain.seatbelt import Seatbelt

T0 = 1_780_000_000_000
AGENTS = [Identity(f"agent-{i}", f"owner-{i % 4}") for i in range(16)]


def ulid(n: int) -> str:
    alphabet = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
    out = []
    for _ in range(26):
        out.append(alphabet[n % 32])
        n //= 32
    return "".join(reversed(out))


class Bench:
    def __init__(self, history: int) -> None:
        self.state = rules.ChannelState("bench")
        rules.apply(self.state, "channel_created", {"descriptor": {"channel": "bench", "kind": "ephemeral", "created_by": "owner-0"}})
        self.belt = Seatbelt(max_posts_per_minute=10**9, global_max_posts_per_minute=10**9)
        self.limits = rules.Limits(max_messages_per_channel=10**9)
        self.counter = 0
        self.now = T0
        self.pending_api = not hasattr(rules, "apply_undoable")
        for i in range(history):
            self.run_batch([self.body(i)], 0)

    def body(self, n: int) -> dict:
        return {"type": "note", "body": f"message {n}", "msg_id": ulid(10**9 + n)}

    def stamp(self) -> str:
        self.counter += 1
        return make_stamp(self.now, self.counter)

    def run_batch(self, bodies: list[dict], agent_base: int) -> None:
        self.now += 1
        if self.pending_api:
            from parley.domain.pending import PendingState

            view = PendingState(self.state)
            events = []
            with self.belt.pending() as sheet:
                for k, body in enumerate(bodies):
                    decision = rules.decide_append(
                        view, body, AGENTS[(agent_base + k) % len(AGENTS)], now_ms=self.now,
                        stamp=self.stamp, seatbelt=sheet, limits=self.limits,
                    )
                    for type_, data in decision.events:
                        rules.apply(view, type_, data)
                        events.append((type_, data))
                    decision.outcome.body
                self.belt.charge(sheet)
                for type_, data in events:
                    rules.apply(self.state, type_, data)
        else:
            take_backs = []
            with self.belt.undo_log():
                for k, body in enumerate(bodies):
                    decision = rules.decide_append(
                        self.state, body, AGENTS[(agent_base + k) % len(AGENTS)], now_ms=self.now,
                        stamp=self.stamp, seatbelt=self.belt, limits=self.limits,
                    )
                    for type_, data in decision.events:
                        take_backs.append(rules.apply_undoable(self.state, type_, data))
                    decision.response(self.state)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--batches", type=int, default=300)
    parser.add_argument("--history", type=int, default=5000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    load_before = os.getloadavg()
    best = None
    n = 0
    for _round in range(args.rounds):
        bench = Bench(args.history)
        batches = [[bench.body(10**6 + n + i * args.batch + k) for k in range(args.batch)] for i in range(args.batches)]
        n += args.batches * args.batch
        t0 = time.process_time()
        for i, bodies in enumerate(batches):
            bench.run_batch(bodies, i)
        elapsed = time.process_time() - t0
        per_message = elapsed / (args.batches * args.batch) * 1e6
        best = per_message if best is None else min(best, per_message)
    mode = "pending view + sheet (ADR-0037)" if bench.pending_api else "apply_undoable + undo log"
    print(f"decide {mode}: best {best:.2f} us/message of {args.rounds} rounds "
          f"({args.batches} batches x {args.batch}, {args.history} messages already in the channel)")
    print(json.dumps({"mode": mode, "us_per_message": round(best, 3), "batch": args.batch,
                      "load_average_before": load_before, "load_average_after": os.getloadavg()}))


if __name__ == "__main__":
    main()
