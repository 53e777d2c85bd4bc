"""Operator tools on a 1,000,000-event journal: ``parley journal import|verify|export|replay``.

    python benchmarks/tools_bench.py [import verify export replay ...]
                                     [--backend sqlite|postgres|both] [--events N]
                                     [--baseline TREE] [--tree TREE] [--postgres-url URL]

The journal is the one of ``state_bench.py replay``: 1,000 channels of 999
messages and their ``channel_created`` (positions randomly interleaved across
the channels, as live traffic would be), made by the domain's own helpers.
Its NDJSON export file is generated once and cached under the temp directory.

For each tree (this one, and ``--baseline TREE``, a directory holding another
``parley`` package, e.g. ``git archive <commit> parley | tar -x -C TREE``),
on a fresh database (SQLite temp file, or a fresh Postgres schema):

* ``import``  ``parley journal import FILE`` into the empty migrated database;
* ``verify``  ``parley journal verify`` (chains, snapshot bindings, the fold,
  artifacts);
* ``export``  ``parley journal export -o FILE``; the file must be
  byte-identical to the one imported;
* ``replay``  ``parley journal replay`` (``--workers auto``).

Each command runs in-process in a subprocess that imported that tree first
(imports are not timed; spawned workers' start-up is). The trees of one
backend run alternately in one invocation, so their ratio is measured under
the same load. Prints a table and ONE JSON line; exit status 1 if a command
failed or the export differs from the import.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, ROOT)
sys.path.insert(0, HERE)

from _harness import load_average  # noqa: E402
from http_bench import _git_commit  # noqa: E402

TOOLS = ("import", "verify", "export", "replay")
TARGETS = {"import": 200_000, "verify": 200_000, "export": 300_000, "replay": 200_000}


def journal_file(events: int) -> str:
    """The cached NDJSON export of the benchmark journal (``events`` rounded to channels of 1,000)."""
    channels = max(1, events // 1000)
    path = os.path.join(tempfile.gettempdir(), f"parley-tools-bench-{channels}x1000.ndjson")
    if os.path.exists(path):
        return path
    from state_bench import JournalGenerator

    gen = JournalGenerator(seed=7)
    plan = [(f"ch-{k:04d}", 999) for k in range(channels)]
    t0 = time.perf_counter()
    tmp = path + ".partial"
    with open(tmp, "wb") as f:
        for line in gen.lines(plan):
            f.write(line)
    os.replace(tmp, path)
    print(f"generated {gen.events:,} events into {path} in {time.perf_counter() - t0:.1f} s", file=sys.stderr)
    return path


def sha256_file(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(1 << 20):
            h.update(block)
    return h.hexdigest()


def run_tree(tree: str, backend: str, ndjson: str, tools: list[str], postgres_url: str | None) -> dict:
    from state_bench import Database

    with Database(backend, postgres_url) as db:
        export_file = os.path.join(tempfile.mkdtemp(prefix="parley-tools-export-"), "export.ndjson")
        steps = ["import", *[t for t in tools if t != "import"]]
        proc = subprocess.run(
            [sys.executable, os.path.join(HERE, "_tools_driver.py"), tree, db.url, ndjson, export_file, *steps],
            capture_output=True,
            text=True,
            cwd=tree,
        )
        lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
        if proc.returncode != 0 or not lines:
            tail = (proc.stderr.strip().splitlines() or ["(no output)"])[-5:]
            return {"error": " | ".join(tail)}
        result = json.loads(lines[-1][len("RESULT "):])
        if "export" in result:
            result["export"]["identical"] = os.path.exists(export_file) and sha256_file(export_file) == sha256_file(ndjson)
            os.unlink(export_file)
        return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("tools", nargs="*", help="any of: " + " ".join(TOOLS) + " (default: all)")
    parser.add_argument("--backend", choices=("sqlite", "postgres", "both"), default="sqlite")
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--baseline", default=None, help="a directory with another tree's parley package")
    parser.add_argument("--tree", default=ROOT, help="the tree measured as 'this' (default: this checkout)")
    parser.add_argument("--postgres-url", default=None)
    args = parser.parse_args()
    tools = args.tools or list(TOOLS)
    if set(tools) - set(TOOLS):
        parser.error(f"unknown tool(s): {sorted(set(tools) - set(TOOLS))}")
    ndjson = journal_file(args.events)
    with open(ndjson, "rb") as f:
        events = sum(1 for _ in f)
    backends = ["sqlite", "postgres"] if args.backend == "both" else [args.backend]
    trees = [("this", os.path.abspath(args.tree))] + ([("baseline", os.path.abspath(args.baseline))] if args.baseline else [])
    report: dict = {
        "benchmark": "tools_bench",
        "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "commit": _git_commit(),
        "events": events,
        "load_average_before": load_average(),
        "results": {},
    }
    failed = False
    for backend in backends:
        for name, tree in trees:
            r = run_tree(tree, backend, ndjson, tools, args.postgres_url)
            report["results"][f"{backend}/{name}"] = r
            if "error" in r:
                failed = True
                print(f"[{backend}/{name}] FAILED: {r['error']}")
                continue
            print(f"\n[{backend}] {name} ({tree}), {events:,} events, load {load_average()}")
            print(f"  {'tool':<8} {'seconds':>8} {'events/s':>10} {'cpu s':>7} {'workers':>7} {'db cpu':>7} {'target':>9}  ok")
            for tool in ["import", *[t for t in tools if t != "import"]]:
                x = r[tool]
                x["events_per_s"] = round(events / x["seconds"]) if x["seconds"] else None
                ok = x["exit"] == 0 and x.get("identical", True)
                failed |= not ok
                print(f"  {tool:<8} {x['seconds']:>8.2f} {x['events_per_s']:>10,} {x['cpu_s']:>7.1f} {x.get('workers_cpu_s', 0):>7.1f} {x.get('db_cpu_s', 0):>7.1f} "
                      f"{TARGETS[tool]:>9,}  {ok}")
        if len(trees) == 2 and all("error" not in report["results"][f"{backend}/{n}"] for n, _ in trees):
            this, base = (report["results"][f"{backend}/{n}"] for n, _ in trees)
            print("  ratio this/baseline: " + ", ".join(
                f"{t} {base[t]['seconds'] / this[t]['seconds']:.2f}x" for t in ["import", *[t for t in tools if t != 'import']]
            ))
    report["load_average_after"] = load_average()
    report["ok"] = not failed
    print(json.dumps(report))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
