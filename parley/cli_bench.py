"""``parley bench``: run the load benchmarks of a source checkout.

The benchmark scripts live in ``benchmarks/`` at the top of the repository
(they are not shipped in the wheel): ``http_bench.py`` (scenarios ``append``,
``scan``, ``claims``, ``fanout``; ``all`` runs the four; ``pipeline``, pipelined
appends over one channel WebSocket against the single-request rate (ADR-0009),
and ``bulk``, the SDK's ``append_many`` against per-request appends (ADR-0039),
each run on its own; and the Postgres-only ``scaleout`` and ``fanout2``, several
parley processes on one database, which ``all`` does not include) and, when present,
``journal_bench.py`` (scenario ``journal``), ``state_bench.py`` (scenarios
``activation``, ``replay``, ``restart``, ``memory``; ``state`` runs the four
in one process, sharing the 1M-event journal of replay and restart) and
``session_bench.py`` (scenario ``sessions``). Each runs in a subprocess of
this Python, prints its tables and one final JSON line; the exit status is
the script's (1 when a correctness check failed).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import click

HTTP_SCENARIOS = ("append", "scan", "claims", "fanout")  # `all` runs these
#: http_bench.py scenarios run on their own only (not in `all`)
HTTP_EXTRA_SCENARIOS = ("pipeline", "bulk")
#: http_bench.py scenarios with several processes on one database: Postgres only, not in `all`
MULTIPROCESS_SCENARIOS = ("scaleout", "fanout2")
STATE_SCENARIOS = ("activation", "replay", "restart", "memory")
#: scenario -> the script that runs it, for the scenarios not in http_bench.py
SCRIPTS = {
    "journal": "journal_bench.py",
    **{name: "state_bench.py" for name in (*STATE_SCENARIOS, "state")},
    "sessions": "session_bench.py",
}


def benchmarks_dir() -> Path | None:
    candidate = Path(__file__).resolve().parent.parent / "benchmarks"
    return candidate if (candidate / "http_bench.py").is_file() else None


def build_command(
    directory: Path,
    scenario: str,
    *,
    quick: bool = False,
    backend: str | None = None,
    postgres_url: str | None = None,
    client: str | None = None,
    duration: float | None = None,
) -> list[str]:
    """The argv that runs ``scenario`` with the options forwarded."""
    if scenario == "journal":
        argv = [sys.executable, str(directory / "journal_bench.py")]
        if quick:
            argv.append("--quick")
        if backend in (None, "sqlite"):
            argv.append("--no-postgres")  # journal_bench runs SQLite, plus Postgres unless told not to
        if postgres_url:
            argv += ["--postgres-url", postgres_url]
        if duration is not None:
            argv += ["--duration", str(duration)]
        return argv
    if scenario in SCRIPTS:  # state_bench.py / session_bench.py: same options, no --client
        script = SCRIPTS[scenario]
        argv = [sys.executable, str(directory / script), "all" if scenario == "state" else scenario]
        if quick:
            argv.append("--quick")
        if backend:
            argv += ["--backend", backend]
        if postgres_url:
            argv += ["--postgres-url", postgres_url]
        if duration is not None and scenario == "sessions":
            argv += ["--duration", str(duration)]
        return argv
    argv = [sys.executable, str(directory / "http_bench.py"), scenario]
    if quick:
        argv.append("--quick")
    if backend:
        argv += ["--backend", backend]
    if postgres_url:
        argv += ["--postgres-url", postgres_url]
    if client:
        argv += ["--client", client]
    if duration is not None:
        argv += ["--duration", str(duration)]
    return argv


@click.command()
@click.argument(
    "scenario",
    type=click.Choice([*HTTP_SCENARIOS, *HTTP_EXTRA_SCENARIOS, *MULTIPROCESS_SCENARIOS, "journal", *STATE_SCENARIOS, "state", "sessions", "all"]),
    default="all",
)
@click.option("--quick", is_flag=True, help="Tiny sizes: a few seconds per scenario.")
@click.option("--backend", type=click.Choice(["sqlite", "postgres", "both"]), default=None, help="Database (default sqlite; postgres for scaleout and fanout2, which refuse sqlite).")
@click.option("--postgres", "use_postgres", is_flag=True, help="Same as --backend postgres.")
@click.option("--postgres-url", default=None, help="Base Postgres URL (a fresh schema is created in it).")
@click.option("--client", type=click.Choice(["h11", "httpx"]), default=None, help="HTTP client of the load generator (default h11).")
@click.option("--duration", type=float, default=None, help="Seconds per measured case.")
def bench(scenario, quick, backend, use_postgres, postgres_url, client, duration) -> None:
    """Run a benchmark SCENARIO or all HTTP ones.

    HTTP: append, scan, claims, fanout (all = the four); pipeline (appends
    over one WebSocket, W frames in flight, vs one request each); bulk (the SDK's
    append_many, 16 senders, vs one request each). Several processes
    on one Postgres database: scaleout (parley serve vs --workers 2),
    fanout2 (append to one process, live tails on another); Postgres only,
    they default to it. journal. State: activation, replay, restart, memory
    (state = the four). sessions.
    """
    directory = benchmarks_dir()
    if directory is None:
        click.echo("parley: the benchmarks/ directory of a source checkout is needed for `parley bench`", err=True)
        sys.exit(1)
    if use_postgres and backend is None:
        backend = "postgres"
    if scenario in SCRIPTS and not (directory / SCRIPTS[scenario]).is_file():
        click.echo(f"parley: benchmarks/{SCRIPTS[scenario]} is missing", err=True)
        sys.exit(1)
    argv = build_command(
        directory, scenario, quick=quick, backend=backend, postgres_url=postgres_url, client=client, duration=duration
    )
    sys.exit(subprocess.call(argv))
