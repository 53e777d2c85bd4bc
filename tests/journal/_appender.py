"""Child process for test_two_processes: racing read-then-append loops.

usage: python _appender.py URL STREAM N READY_FILE GO_FILE OUT_FILE
Appends N events (one per append) to STREAM, each at the expected seq it just
read; a lost race (ConcurrencyError) is counted and retried. Writes
{"seqs": [...committed seqs...], "conflicts": n, "hashes": {seq: hash}} as JSON.
"""

from __future__ import annotations

import json
import os
import sys
import time

import trio

from parley.journal import ConcurrencyError, Journal, NewEvent


async def main(url: str, stream: str, n: int, ready: str, go: str, out: str) -> None:
    journal = Journal.open(url)
    async with journal:
        await journal.ping()
        open(ready, "w").close()
        deadline = time.monotonic() + 30
        while not os.path.exists(go):
            if time.monotonic() > deadline:
                raise SystemExit("never got the go signal")
            await trio.sleep(0.001)
        seqs, hashes, conflicts = [], {}, 0
        while len(seqs) < n:
            last = await journal.last_seq(stream)
            try:
                (stored,) = await journal.append(
                    stream, [NewEvent("tick", {"pid": os.getpid(), "i": len(seqs)})], last
                )
            except ConcurrencyError as e:
                assert e.actual_seq != last or e.actual_seq == -1, e
                conflicts += 1
                continue
            assert stored.seq == last + 1
            seqs.append(stored.seq)
            hashes[stored.seq] = stored.hash
    with open(out, "w") as f:
        json.dump({"seqs": seqs, "conflicts": conflicts, "hashes": hashes}, f)


if __name__ == "__main__":
    url, stream, n, ready, go, out = sys.argv[1:7]
    trio.run(main, url, stream, int(n), ready, go, out)
