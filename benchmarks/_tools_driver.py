"""Runs ``parley journal <tool>`` commands in-process and times them (for tools_bench.py).

    python benchmarks/_tools_driver.py TREE DATABASE_URL NDJSON_FILE EXPORT_FILE TOOL...

``TREE`` is the directory whose ``parley`` package is imported (so one run of
the benchmark can time two trees, before and after). Each TOOL is one of
``import verify export replay``, invoked as the operator would
(``parley journal <tool> --database-url …``) through the click group, with the
imports done before the clock starts; a spawned replay/verify worker's start-up
is part of the figure. Prints one ``RESULT {json}`` line.
"""

from __future__ import annotations

import io
import os
import resource
import sys
import time


def _children_cpu() -> float:
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    return ru.ru_utime + ru.ru_stime


#: Postgres backend pid -> its CPU seconds when its connection was last checked in.
_backend_cpu: dict[int, float] = {}


def _watch_postgres_backends() -> None:
    """Record the CPU of each Postgres backend this process talks to (read from
    /proc: the benchmark's server is local) whenever its connection goes back to
    the pool: the database server's share of a tool, without the other clients'."""
    from sqlalchemy import event
    from sqlalchemy.pool import Pool

    tick = os.sysconf("SC_CLK_TCK")

    @event.listens_for(Pool, "checkin")
    def _checkin(dbapi_conn, _record):  # pragma: no cover - benchmark only
        pid = getattr(getattr(dbapi_conn, "info", None), "backend_pid", None)
        if not pid:
            return
        try:
            with open(f"/proc/{pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            return
        _backend_cpu[pid] = (int(fields[11]) + int(fields[12])) / tick


def _settle(url: str) -> None:
    """After the import: fold SQLite's WAL into the file, ANALYZE on Postgres (untimed)."""
    from parley.journal.engine import make_engine

    engine = make_engine(url)
    with engine.begin() as conn:
        if engine.dialect.name == "sqlite":
            conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
        else:
            conn.exec_driver_sql("ANALYZE events")
    engine.dispose()


def main() -> None:
    tree, url, ndjson, export_file, *tools = sys.argv[1:]
    sys.path.insert(0, tree)
    import orjson

    from parley.cli_journal import journal

    _watch_postgres_backends()

    out: dict[str, object] = {"tree": tree}
    for tool in tools:
        args = {
            "import": ["import", "--database-url", url, ndjson],
            "verify": ["verify", "--database-url", url],
            "export": ["export", "--database-url", url, "-o", export_file],
            "replay": ["replay", "--database-url", url],
        }[tool]
        saved = sys.stdout
        sys.stdout = io.StringIO()  # the command's report, kept out of the RESULT line
        db0 = sum(_backend_cpu.values())
        c0, k0, t0 = time.process_time(), _children_cpu(), time.perf_counter()
        code = 0
        try:
            journal.main(args, prog_name="parley journal", standalone_mode=False)
        except SystemExit as e:
            code = int(e.code or 0)
        wall = time.perf_counter() - t0
        children = _children_cpu() - k0
        cpu = time.process_time() - c0 + children
        printed = sys.stdout.getvalue()
        sys.stdout = saved
        db_cpu = sum(_backend_cpu.values()) - db0
        out[tool] = {"seconds": wall, "cpu_s": cpu, "workers_cpu_s": children, "db_cpu_s": db_cpu, "exit": code, "output": printed.strip().splitlines()[:2]}
        if tool == "import" and code == 0:
            _settle(url)
    print("RESULT " + orjson.dumps(out).decode())


if __name__ == "__main__":
    os.environ.setdefault("PYTHONHASHSEED", "0")
    main()
