"""Start and stop of ``parley serve`` (issue 16 item 6), one command:

    .venv/bin/python benchmarks/startup_bench.py [--runs 5]

Prints, as medians over ``--runs`` fresh processes:

* ``help``: ``parley --help`` (target ≤ 0.2 s);
* ``banner``: ``parley serve`` on an existing SQLite database, from exec to the
  banner line (target ≤ 0.5 s);
* ``floor``: a fresh Python importing only the mandated stack (trio,
  hypercorn, quart_trio, sqlalchemy): what no parley change can go below;
* ``sigterm_idle`` / ``sigterm_keepalive``: SIGTERM to exit, with no client,
  and with a client holding an idle keep-alive connection (target ≤ 0.2 s).

The machine is shared, so ``banner / floor`` is the figure to compare between
runs. Ends with one JSON line.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]


def env(db: Path) -> dict[str, str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith(("PARLEY_", "CAUCUS_"))}
    base.update(PORT="0", PARLEY_DATABASE_URL=f"sqlite:///{db}", PYTHONPATH=str(ROOT))
    return base


def timed(argv: list[str], environ: dict[str, str]) -> float:
    started = time.perf_counter()
    subprocess.run(argv, env=environ, cwd=ROOT, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - started


def serve_once(environ: dict[str, str], keep_alive: bool) -> tuple[float, float]:
    """(seconds to the banner, seconds from SIGTERM to exit)."""
    started = time.perf_counter()
    proc = subprocess.Popen(
        [sys.executable, "-m", "parley", "serve"],
        env=environ,
        cwd=ROOT,  # `-m` puts the working directory first on sys.path: measure this tree
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    banner = proc.stdout.readline()
    to_banner = time.perf_counter() - started
    url = banner.strip().rsplit(" ", 1)[-1]
    client = httpx.Client()
    assert client.get(url + "/healthz").status_code == 200
    if not keep_alive:
        client.close()
    stopped = time.perf_counter()
    proc.send_signal(signal.SIGTERM)
    code = proc.wait(timeout=30)
    to_exit = time.perf_counter() - stopped
    client.close()
    proc.stdout.close()
    assert code == 0, f"exit code {code}"
    return to_banner, to_exit


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="parley-startup-"))
    try:
        environ = env(work / "parley.db")
        serve_once(environ, keep_alive=False)  # creates and migrates the database once
        figures: dict[str, list[float]] = {
            k: [] for k in ("help", "floor", "banner", "sigterm_idle", "sigterm_keepalive")
        }
        for _ in range(args.runs):
            figures["help"].append(timed([sys.executable, "-m", "parley", "--help"], environ))
            figures["floor"].append(
                timed([sys.executable, "-c", "import trio, hypercorn.trio, quart_trio, sqlalchemy"], environ)
            )
            banner, idle = serve_once(environ, keep_alive=False)
            figures["banner"].append(banner)
            figures["sigterm_idle"].append(idle)
            figures["sigterm_keepalive"].append(serve_once(environ, keep_alive=True)[1])
    finally:
        shutil.rmtree(work, ignore_errors=True)
    medians = {k: round(statistics.median(v), 3) for k, v in figures.items()}
    medians["banner_over_floor"] = round(medians["banner"] / medians["floor"], 2)
    width = max(map(len, medians))
    for name, value in medians.items():
        print(f"{name:<{width}}  {value}")
    print(json.dumps({"startup": medians, "runs": args.runs}))


if __name__ == "__main__":
    main()
