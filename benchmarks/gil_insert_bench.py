"""SQLite: a run of event rows as an executemany vs one ``json_each`` statement, with
and without a thread running Python beside the inserting one (ADR-0061).

    python benchmarks/gil_insert_bench.py [--rows 500] [--txns 20]

The sqlite3 module lets go of the GIL around each row's step; a thread that
wants it back while another runs Python waits up to the switch interval. This
prints the wall time per transaction (BEGIN IMMEDIATE, insert, COMMIT with
``synchronous=FULL``) and the inserting thread's CPU, for both statements,
idle and beside a spinning thread. The spinner stands in for the event loop
under bulk load.
"""

from __future__ import annotations

import argparse
import os
import sqlite3
import tempfile
import threading
import time

import orjson

COLUMNS = "stream_id, seq, type, data, recorded_at, prev_hash, hash"
MANY = f"INSERT INTO events ({COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?)"
ONE = (
    f"INSERT INTO events ({COLUMNS}) SELECT value->>0, value->>1, value->>2, value->>3, ?, "
    "value->>4, value->>5 FROM json_each(?) ORDER BY key"
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=500)
    parser.add_argument("--txns", type=int, default=20)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        conn = sqlite3.connect(os.path.join(tmp, "j.db"), isolation_level=None, check_same_thread=False)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=FULL")
        conn.execute(
            "CREATE TABLE events (position INTEGER PRIMARY KEY AUTOINCREMENT, stream_id TEXT NOT NULL, "
            "seq INTEGER NOT NULL, type TEXT NOT NULL, data TEXT NOT NULL, recorded_at REAL NOT NULL, "
            "prev_hash TEXT NOT NULL, hash TEXT NOT NULL, UNIQUE (stream_id, seq))"
        )
        seq = 0

        def rows() -> list[tuple]:
            nonlocal seq
            out = []
            for i in range(args.rows):
                seq += 1
                out.append((f"channel:c{i % 16}", seq, "message", '{"body":"' + "x" * 200 + '"}', 1.5, "p" * 64, "h" * 64))
            return out

        def run(label: str, one: bool) -> None:
            wall, cpu = time.perf_counter(), time.thread_time()
            for _ in range(args.txns):
                batch = rows()
                conn.execute("BEGIN IMMEDIATE")
                if one:
                    packed = orjson.dumps([[r[0], r[1], r[2], r[3], r[5], r[6]] for r in batch]).decode()
                    conn.execute(ONE, (batch[0][4], packed))
                else:
                    conn.executemany(MANY, batch)
                conn.execute("COMMIT")
            per = (time.perf_counter() - wall) / args.txns * 1000
            print(f"  {label:<42} {per:>9.1f} ms/txn wall {(time.thread_time() - cpu) / args.txns * 1000:>7.2f} ms thread CPU")

        print(f"{args.rows} rows per transaction, {args.txns} transactions, SQLite {sqlite3.sqlite_version}, load {os.getloadavg()[0]:.2f}")
        run("executemany, idle", False)
        run("one json_each statement, idle", True)
        stop = threading.Event()

        def spin() -> None:
            while not stop.is_set():
                pass

        spinner = threading.Thread(target=spin, daemon=True)
        spinner.start()
        try:
            for _ in range(2):
                run("executemany, beside a spinner", False)
                run("one json_each statement, beside a spinner", True)
        finally:
            stop.set()
            spinner.join()


if __name__ == "__main__":
    main()
