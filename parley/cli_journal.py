"""``parley journal …``: operator commands over the journal database.

Every command takes ``--database-url`` (default: ``$PARLEY_DATABASE_URL``,
else ``sqlite:///parley.db``) and works whether the server is running or
stopped; only ``import`` writes, and only into an empty database. The logic
lives in :mod:`parley.journal.tools` and :mod:`parley.replay`; this module parses flags, prints, and
turns every failure into one line on stderr and exit status 1 (never a
traceback, never the database URL).
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any, NoReturn

import click

from .atomic_file import atomic_write, atomic_writer
from .cli_errors import silence_stdout

if TYPE_CHECKING:
    from .journal.store import JournalStore

DEFAULT_DATABASE_URL = "sqlite:///parley.db"


def fail(message: str) -> NoReturn:
    """One line on stderr, exit 1."""
    click.echo(f"parley: {message}", err=True)
    sys.exit(1)


def database_url_option(fn: Callable[..., Any]) -> Callable[..., Any]:
    """``--database-url`` checked by the one URL parser (see :mod:`parley.cli_options`)."""
    from .cli_options import database_url_option as option

    return option(fn)


def _scrub(text: str, url: str) -> str:
    """Remove the URL and its password from a message, in case a driver echoed them."""
    from .journal.diagnose import url_password

    password = url_password(url)
    if url:
        text = text.replace(url, "<database-url>")
    if password:
        text = text.replace(str(password), "***")
    return text


@contextmanager
def opened_store(url: str, *, require_schema: bool = True) -> Iterator[JournalStore]:
    """Open the journal at ``url``; any failure inside becomes ``fail(one line)``."""
    from .journal import diagnose
    from .journal.errors import ConcurrencyError, JournalUnavailable
    from .journal.store import unavailable
    from .journal.tools import ToolError, open_store

    store = None
    try:
        store = open_store(url, require_schema=require_schema)
        yield store
    except (ToolError, JournalUnavailable, ConcurrencyError, diagnose.DatabaseError) as e:
        line = diagnose.explain(e, url)  # the driver's cause, when there is one
        if line is not None:
            fail(line)
        if isinstance(e, diagnose.DatabaseError):
            e = unavailable(e)
        fail(_scrub(str(e), url))
    except OSError as e:
        fail(_scrub(f"{e.strerror or type(e).__name__}: {e.filename or ''}".rstrip(": "), url))
    except Exception as e:  # noqa: BLE001 - never a traceback
        from .cli_errors import explain

        fail(explain(e, url))
    finally:
        if store is not None:
            store.dispose()


def _progress(label: str, total: int | None, unit: str = ""):
    from .progress import Progress

    return Progress(label, total, unit=unit)


def iso(ts: float | None) -> str | None:
    if ts is None:
        return None
    return datetime.fromtimestamp(ts, tz=timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _dumps(value: Any) -> str:
    import orjson

    return orjson.dumps(value, option=orjson.OPT_INDENT_2).decode()


@click.group()
def journal() -> None:
    """Inspect, export, import and check the journal (server running or stopped)."""


# --------------------------------------------------------------------------- verify


@journal.command()
@database_url_option
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@click.option(
    "--anchor",
    "anchor_in",
    type=click.Path(dir_okay=False),
    default=None,
    help="Compare with an anchor exported earlier: finds deleted streams, deleted tails, rewritten chains.",
)
@click.option(
    "--anchor-out",
    type=click.Path(dir_okay=False),
    default=None,
    help="After a clean verify, write this journal's anchor (stream heads + checkpoint) here.",
)
def verify(database_url: str, as_json: bool, anchor_in: str | None, anchor_out: str | None) -> None:
    """Check chains, snapshots and artifacts (and an anchor); exit 1 naming the first problem."""
    from .journal import integrity, tools
    from .replay import verify_all

    anchored = None
    if anchor_in is not None:
        try:
            with open(anchor_in, "rb") as f:
                anchored = integrity.parse_anchor(f.read())
        except OSError as exc:
            fail(f"cannot read the anchor file {anchor_in}: {exc.strerror or type(exc).__name__}")
        except integrity.AnchorError as exc:
            fail(f"{exc}: {anchor_in}")
    with opened_store(database_url) as store:
        with _progress("verify", tools.count_events(store.engine)) as bar:
            report = verify_all(
                store.engine, anchor=anchored, advance=bar.advance, workers=tools.default_workers()
            )
    chain = report.chain
    if anchor_out is not None and report.ok:
        try:
            _write_anchor(anchor_out, report.anchor())
        except OSError as exc:
            fail(f"cannot write the anchor file {anchor_out}: {exc.strerror or type(exc).__name__}")
    if as_json:
        click.echo(
            _dumps(
                {
                    "ok": report.ok,
                    "streams": chain.streams_checked,
                    "events": chain.events_checked,
                    "snapshots": report.snapshots_checked,
                    "artifacts": report.artifacts_checked,
                    "anchored_streams": report.anchored_streams,
                    "checkpoint": report.checkpoint if chain.ok else None,
                    "broken_stream": chain.broken_stream,
                    "broken_position": chain.broken_position,
                    "reason": chain.reason,
                    "problems": report.problems,
                }
            )
        )
    elif report.ok:
        anchored_note = f", matches the anchor of {report.anchored_streams} streams" if anchored is not None else ""
        click.echo(
            f"journal ok: {chain.streams_checked} streams, {chain.events_checked} events verified"
            f" ({report.snapshots_checked} snapshots, {report.artifacts_checked} artifacts{anchored_note})"
        )
        click.echo(f"checkpoint {report.checkpoint}")
    else:
        for line in report.problems[1:]:
            click.echo(f"PROBLEM {line}")
    if not report.ok:
        fail(
            f"journal damaged: {report.problems[0]} ({len(report.problems)} problem(s); "
            f"{chain.events_checked} events in {chain.streams_checked} streams checked)"
        )


def _write_anchor(path: str, anchor: dict[str, Any]) -> None:
    """Write the anchor atomically (a reader never sees half a file)."""
    import orjson

    atomic_write(path, orjson.dumps(anchor, option=orjson.OPT_INDENT_2) + b"\n")


# --------------------------------------------------------------------------- export


@journal.command()
@database_url_option
@click.option("--stream", default=None, help="Only this stream.")
@click.option("--from-position", type=click.IntRange(min=0), default=None, help="First position (inclusive).")
@click.option("--to-position", type=click.IntRange(min=0), default=None, help="Last position (inclusive).")
@click.option("-o", "--output", default="-", show_default=True, help="Output file ('-' = stdout).")
@click.option(
    "--workers",
    default="auto",
    show_default=True,
    callback=lambda ctx, param, value: _workers(ctx, param, value),
    help="Processes writing a file export in parallel ('auto': the idle CPUs, at most 4; "
    "1 when the machine is busy). Stdout, 1, or under 200,000 events: this process.",
)
def export(
    database_url: str, stream: str | None, from_position: int | None, to_position: int | None, output: str,
    workers: int | None,
) -> None:  # fmt: skip
    """Write events as NDJSON, one per line, in position order.

    Each line holds position, stream_id, seq, type, data (the stored JSON text,
    verbatim), recorded_at, prev_hash and hash. The output is byte-stable:
    export -> import -> export gives the same bytes. A file is written under a
    temporary name and renamed into place when complete.
    """
    from .journal import tools
    from .journal.tools import export as export_tool

    with opened_store(database_url) as store:
        total = tools.export_count(store.engine, stream=stream, from_position=from_position, to_position=to_position)
        kwargs: dict[str, Any] = dict(stream=stream, from_position=from_position, to_position=to_position)
        if output == "-":
            out = click.get_binary_stream("stdout")
            with _progress("export", total) as bar:
                try:
                    tools.export_events(store.engine, out, advance=bar.advance, **kwargs)
                    out.flush()
                except BrokenPipeError:
                    silence_stdout()
            return
        stale = export_tool.remove_stale_scratch(output)
        if stale:
            click.echo(f"removed {stale} temporary file(s) of an interrupted export next to {output}", err=True)
        with atomic_writer(output) as fh, _progress("export", total) as bar:
            result = tools.export_events(
                store.engine, fh, advance=bar.advance, workers=workers or export_tool.auto_workers(),
                scratch=_scratch_prefix(output), min_parallel_events=export_tool.PARALLEL_MIN_EVENTS, **kwargs,
            )  # fmt: skip
    span = f" (positions {result.first_position}..{result.last_position})" if result.events else ""
    click.echo(f"exported {result.events} events{span} to {output}", err=True)


def _scratch_prefix(output: str) -> str:
    """Where a parallel export's part files go: hidden, unique names next to ``output``."""
    import secrets

    directory, name = os.path.split(os.path.abspath(output))
    return os.path.join(directory, f".{name}.{os.getpid()}.{secrets.token_hex(4)}.")


# --------------------------------------------------------------------------- import


@journal.command(name="import")
@database_url_option
@click.argument("file")
def import_(database_url: str, file: str) -> None:
    """Load an export FILE ('-' = stdin) into an EMPTY, migrated database.

    Positions, seq, hashes and data bytes are preserved exactly and every hash
    chain is checked while loading; any problem rolls the whole import back.
    Run it with the server stopped.
    """
    from .journal import tools

    if file != "-" and not os.path.isfile(file):
        fail(f"no such file: {file}")
    with opened_store(database_url) as store:
        if file == "-":
            with _progress("import", None, unit="B") as bar:
                result = tools.import_events(store, click.get_binary_stream("stdin"), advance=bar.advance)
        else:
            with _progress("import", os.path.getsize(file), unit="B") as bar:
                result = tools.import_events(
                    store, path=file, workers=tools.default_workers(), advance=bar.advance,
                    source=os.path.basename(file),
                )  # fmt: skip
    click.echo(
        f"imported {result.events} events in {result.streams} streams"
        + (f" (last position {result.last_position})" if result.last_position else "")
    )


# --------------------------------------------------------------------------- stats


@journal.command()
@database_url_option
@click.option("--json", "as_json", is_flag=True, help="Print the statistics as JSON.")
def stats(database_url: str, as_json: bool) -> None:
    """Streams, events, data bytes, largest streams, time range."""
    from .journal import tools
    from .progress import format_count

    with opened_store(database_url) as store:
        info = tools.journal_stats(store.engine)
    info["oldest"] = iso(info["oldest_recorded_at"])
    info["newest"] = iso(info["newest_recorded_at"])
    if as_json:
        click.echo(_dumps(info))
        return
    lines = [
        f"streams    {info['streams']}",
        f"events     {info['events']}",
        f"bytes      {info['bytes']} ({format_count(info['bytes'], 'B')})",
        f"snapshots  {info['snapshots']}",
    ]
    if info["events"]:
        lines += [
            f"positions  {info['first_position']}..{info['last_position']}",
            f"oldest     {info['oldest']}",
            f"newest     {info['newest']}",
            "kinds",
        ]
        for kind, k in info["kinds"].items():
            lines.append(f"  {kind:<12} {k['streams']:>8} streams {k['events']:>10} events {k['bytes']:>12} bytes")
        lines.append("largest streams")
        width = max(len(s["stream_id"]) for s in info["largest_streams"])
        for s in info["largest_streams"]:
            lines.append(f"  {s['stream_id']:<{width}} {s['events']:>10} events {s['bytes']:>12} bytes")
    click.echo("\n".join(lines))


# --------------------------------------------------------------------------- tail


@journal.command()
@database_url_option
@click.option("--json", "as_json", is_flag=True, help="NDJSON lines (the export format) instead of text.")
@click.option(
    "--from-position",
    type=click.IntRange(min=0),
    default=None,
    help="Start at this position (inclusive); default: only events committed from now on.",
)
@click.option("--max-events", type=click.IntRange(min=1), default=None, help="Exit after this many events.")
@click.option("--poll-interval", type=click.FloatRange(min=0.01), default=0.25, show_default=True, help="Seconds between polls.")
def tail(database_url: str, as_json: bool, from_position: int | None, max_events: int | None, poll_interval: float) -> None:
    """Follow events as they commit (Ctrl-C stops).

    Text lines are 'position stream_id seq type'.
    """
    from .journal import tools

    out = click.get_binary_stream("stdout")

    def sleep(seconds: float) -> None:
        out.flush()
        time.sleep(seconds)

    with opened_store(database_url) as store:
        after = tools.last_position(store.engine) if from_position is None else max(from_position - 1, 0)
        try:
            for row in tools.follow(
                store.engine, after, poll_interval=poll_interval, max_events=max_events, sleep=sleep
            ):
                if as_json:
                    out.write(tools.encode_line(*row))
                else:
                    out.write(f"{row[0]} {row[1]} {row[2]} {row[3]}\n".encode())
            out.flush()
        except KeyboardInterrupt:
            try:
                out.flush()
            except BrokenPipeError:
                silence_stdout()
        except BrokenPipeError:
            silence_stdout()


# --------------------------------------------------------------------------- replay


def _workers(_ctx: click.Context, _param: click.Parameter, value: str) -> int | None:
    """``auto`` (``None``: the usable CPUs, at most 4) or a count >= 1."""
    if value is None or value == "auto":
        return None
    try:
        n = int(value)
    except ValueError:
        n = 0
    if n < 1:
        raise click.BadParameter("expected 'auto' or a whole number >= 1")
    return n


@journal.command()
@database_url_option
@click.option("--stream", default=None, help="Only this channel:* or session:* stream.")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@click.option(
    "--workers",
    default="auto",
    show_default=True,
    callback=_workers,
    help="Processes folding streams in parallel ('auto': the CPUs, at most 4). "
    "1, a single --stream, or a journal under 50,000 events replays in this process.",
)
def replay(database_url: str, stream: str | None, as_json: bool, workers: int | None) -> None:
    """Rebuild channel and session streams with the domain fold; compare with snapshots.

    Exit 1 on any fold error or snapshot difference.
    """
    from . import replay as replaying
    from .journal import tools

    if workers is None:
        workers = tools.default_workers()
    with opened_store(database_url) as store:
        with _progress("replay", replaying.replay_count(store.engine, stream)) as bar:
            report = replaying.replay(store.engine, stream=stream, advance=bar.advance, workers=workers)
    if as_json:
        click.echo(_dumps(report.as_dict()))
    else:
        for kind, c in report.kinds.items():
            click.echo(
                f"{kind:<8} {c.streams} streams, {c.events} events, "
                f"{c.snapshots_matching}/{c.snapshots_compared} snapshots match"
            )
        labels = {"difference": "DIFFERENCE", "fold_error": "FOLD ERROR"}
        for f in report.findings:
            click.echo(f"{labels.get(f.kind, f.kind)} {f.stream_id}: {f.detail}")
    problems = report.problems
    if problems:
        first = problems[0]
        fail(f"replay found {len(problems)} problem(s); first: {first.stream_id}: {first.detail}")
