"""``parley journal export``: events in position order as NDJSON lines (:mod:`.lines`).

Speed (ADR-0044): keyset pages over the primary key ``position`` (a range
scan: SQLite's rowid, Postgres's primary key index), each page its own short
read transaction, read with a raw DBAPI cursor (plain tuples, no SQLAlchemy
Row; on SQLite ``data`` comes as its stored bytes) and written as one buffer
per page. On Postgres the next page is fetched in a helper thread while this
one is encoded (the wait for the server runs without the GIL). The pager is
:func:`parley.journal.queries.keyset_pages`, the one replay and verify use.

Parallel (ADR-0050): an export to a file of at least
:data:`PARALLEL_MIN_EVENTS` events is cut into position ranges; worker
processes (:mod:`.parallel`) write each range to a part file next to the
output, and the parts are copied into the output in position order by the
kernel. A line depends on its row alone, so the bytes are those of one
process; the part files are removed on success and on failure.
"""

from __future__ import annotations

import functools
import os
import re
import shutil
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, BinaryIO

import orjson
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from .. import schema
from ..queries import keyset_pages
from .lines import _LINE, _quoted, quoted
from .opening import Advance, ToolError, count_events, no_progress, range_conditions
from .parallel import RANGES_PER_WORKER, default_workers, run_ranges

_E = schema.events

#: Rows per page: big enough that a page's query costs nothing per row,
#: small enough that memory stays flat (a few MB of text).
PAGE_ROWS = 20_000
#: A file export is written by worker processes from this many events on
#: (a spawned worker spends ~0.7 s of CPU importing before it writes a line).
PARALLEL_MIN_EVENTS = 200_000


@dataclass(frozen=True, slots=True)
class ExportResult:
    events: int
    first_position: int | None
    last_position: int | None


def export_count(
    engine: Engine, *, stream: str | None = None, from_position: int | None = None, to_position: int | None = None
) -> int:
    return count_events(engine, *range_conditions(stream, from_position, to_position))


def event_columns(engine: Engine) -> tuple[Any, ...]:
    """The ``events`` columns with ``data`` as its UTF-8 bytes: no decoding to
    ``str`` to encode it again. SQLite: ``CAST(data AS BLOB)``, the stored
    bytes. Postgres: ``convert_to(data, 'UTF8')``, a ``bytea`` read in the
    binary format (:func:`raw_pages`), so the bytes arrive as they are (in
    text format they would come hex-encoded)."""
    if engine.dialect.name == "sqlite":
        data = sa.cast(_E.c.data, sa.LargeBinary)
    elif engine.dialect.name == "postgresql":
        data = sa.func.convert_to(_E.c.data, sa.literal_column("'UTF8'"), type_=sa.LargeBinary)
    else:  # pragma: no cover - the two backends parley runs on
        return schema.EVENT_COLUMNS
    return tuple(data.label("data") if c.name == "data" else c for c in schema.EVENT_COLUMNS)


def raw_pages(
    engine: Engine, conditions: list[Any], chunk: int = PAGE_ROWS, *, after: int = 0
) -> Iterator[list[tuple]]:
    """Pages of event rows (:func:`event_columns`) in position order, from ``after`` on
    (:func:`parley.journal.queries.keyset_pages`: raw cursor, short read
    transactions, SQLite's memory map, Postgres's prefetch thread and binary
    result format: integers and doubles unpacked rather than parsed from text,
    ``data`` as bytes; 2.9 instead of 3.3 CPU-µs per row, client and server)."""
    stmt = (
        sa.select(*event_columns(engine))
        .where(_E.c.position > sa.bindparam("after", type_=sa.BigInteger()), *conditions)
        .order_by(_E.c.position)
        .limit(chunk)
    )
    compiled = stmt.compile(dialect=engine.dialect)
    return keyset_pages(
        engine, lambda key: (compiled, {"after": key}), lambda row: row[0], after, chunk, name="export", binary=True
    )


def encode_page(rows: list[tuple]) -> bytes:
    """The export lines of ``rows`` as one buffer (``data`` as bytes or text)."""
    dumps = orjson.dumps
    line = _LINE
    known = _quoted.get
    if rows and type(rows[0][4]) is not bytes:
        rows = [(p, s, q, t, d.encode("utf-8"), a, ph, h) for p, s, q, t, d, a, ph, h in rows]
    return b"".join(
        [
            line % (pos, known(sid) or quoted(sid), seq, known(type_) or quoted(type_), data,
                    dumps(float(at)), dumps(prev), dumps(h))
            for pos, sid, seq, type_, data, at, prev, h in rows
        ]
    )  # fmt: skip


def export_events(
    engine: Engine,
    out: BinaryIO,
    *,
    stream: str | None = None,
    from_position: int | None = None,
    to_position: int | None = None,
    advance: Advance = no_progress,
    chunk: int = PAGE_ROWS,
    workers: int = 1,
    scratch: str | None = None,
    min_parallel_events: int = PARALLEL_MIN_EVENTS,
) -> ExportResult:
    """Write matching events (positions inclusive) to ``out`` as NDJSON bytes.

    With ``workers > 1``, ``scratch`` (a path prefix for the part files, in
    the output's directory) and at least ``min_parallel_events`` matching
    events, position ranges are written by worker processes and copied into
    ``out`` in order (:func:`export_parallel`); the bytes are the same.
    """
    if workers > 1 and scratch is not None:
        bounds = position_bounds(engine, stream, from_position, to_position)
        if bounds[2] >= max(min_parallel_events, 1):
            return export_parallel(
                engine, out, scratch, bounds, workers, stream=stream, from_position=from_position,
                to_position=to_position, advance=advance, chunk=chunk,
            )  # fmt: skip
    return _export_serial(engine, out, range_conditions(stream, from_position, to_position), advance, chunk)


def _export_serial(engine: Engine, out: BinaryIO, conditions: list[Any], advance: Advance, chunk: int, after: int = 0) -> ExportResult:
    n = 0
    first = last = None
    with PageWriter(out, behind=engine.dialect.name != "sqlite") as writer:
        for rows in raw_pages(engine, conditions, chunk, after=after):
            writer.write(encode_page(rows))
            if first is None:
                first = rows[0][0]
            last = rows[-1][0]
            n += len(rows)
            advance(len(rows))
    advance(0)
    return ExportResult(n, first, last)


class PageWriter:
    """Writes page buffers to ``out`` in a helper thread, one page behind the caller.

    Writing a page (~12 MB) into the page cache is a fifth to a third of a
    serial export's time, all of it in the kernel without the GIL: in a thread it
    overlaps the read and the encoding of the next page. At most one write is
    in flight (memory stays at two pages) and the writes keep their order. A
    failed write (a full disk, a closed pipe) raises its own ``OSError`` from
    the next :meth:`write` or from the end of the ``with`` block, never later:
    when the block is left every byte is written or the error raised.

    ``behind=False`` writes in the caller's thread. The export does so on
    SQLite: its cursor gives up and retakes the GIL for every row, and a
    writer thread then cost more CPU than it saved (4.2-4.5 against 3.8-4.2
    CPU-s per million events, alternating runs); on Postgres the reading
    thread waits for the server anyway and the write-behind is kept.
    """

    __slots__ = ("_out", "_pool", "_pending", "_behind")

    def __init__(self, out: BinaryIO, *, behind: bool = True) -> None:
        self._out = out
        self._behind = behind
        self._pool: ThreadPoolExecutor | None = None
        self._pending: Future[Any] | None = None

    def __enter__(self) -> PageWriter:
        if self._behind:
            self._pool = ThreadPoolExecutor(1, thread_name_prefix="parley-export-write")
        return self

    def write(self, buffer: bytes) -> None:
        if self._pool is None:
            self._out.write(buffer)
            return
        self._wait()
        self._pending = self._pool.submit(self._out.write, buffer)

    def _wait(self) -> None:
        pending, self._pending = self._pending, None
        if pending is not None:
            pending.result()

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        try:
            if exc_type is None:
                self._wait()
            elif self._pending is not None:  # failing anyway: let the write end, keep the first error
                self._pending.exception()
        finally:
            if self._pool is not None:
                self._pool.shutdown(wait=True)


def auto_workers(idle: Callable[[], float | None] | None = None) -> int:
    """Processes for a file export (``--workers auto``): this one, plus one per
    CPU idle right now, at most :func:`.parallel.default_workers`.

    A parallel export costs ~35 % more CPU than one process (spawned imports,
    the part files written and copied: ADR-0050); it pays only with idle
    cores, and on a saturated machine it made the export 1.3-2x slower.
    "Idle right now" is a 0.1 s sample of ``/proc/stat`` (:func:`idle_cpus`):
    the 1-minute load average stays high for a minute after any heavy
    command, and an export run just after an import then used one core of
    two idle ones. Without ``/proc/stat`` the load average decides.
    """
    idle_now = (idle or idle_cpus)()
    if idle_now is None:
        try:
            idle_now = len(os.sched_getaffinity(0)) - os.getloadavg()[0]
        except (AttributeError, OSError):  # pragma: no cover - platforms without them
            return default_workers()
    return max(1, min(default_workers(), 1 + int(idle_now)))


def idle_cpus(sample_s: float = 0.1) -> float | None:
    """How many CPUs were idle over the next ``sample_s`` seconds (Linux
    ``/proc/stat``, times the CPUs this process may use); ``None`` where that
    cannot be read."""
    try:
        before = cpu_times()
        time.sleep(sample_s)
        after = cpu_times()
        cpus = len(os.sched_getaffinity(0))
    except (OSError, ValueError, IndexError, AttributeError):
        return None
    return idle_between(before, after, min(cpus, os.cpu_count() or cpus))


def cpu_times(stat: str = "/proc/stat") -> tuple[int, int]:
    """``(idle + iowait, all)`` clock ticks of every CPU so far, from ``stat``'s ``cpu`` line."""
    with open(stat, "rb") as f:
        values = [int(v) for v in f.readline().split()[1:9]]
    return values[3] + values[4], sum(values)


def idle_between(before: tuple[int, int], after: tuple[int, int], cpus: int) -> float | None:
    """The CPUs idle between two :func:`cpu_times` readings (``None`` if no tick passed)."""
    (idle0, total0), (idle1, total1) = before, after
    if total1 <= total0:
        return None
    return (idle1 - idle0) / (total1 - total0) * cpus


def position_bounds(
    engine: Engine, stream: str | None, from_position: int | None, to_position: int | None
) -> tuple[int, int, int]:
    """``(first position, last position, events)`` of the matching events (``(0, 0, 0)`` for none)."""
    conditions = range_conditions(stream, from_position, to_position)
    stmt = sa.select(sa.func.min(_E.c.position), sa.func.max(_E.c.position), sa.func.count()).select_from(_E)
    if conditions:
        stmt = stmt.where(*conditions)
    with engine.connect() as conn:
        lo, hi, n = conn.execute(stmt).one()
    return (int(lo or 0), int(hi or 0), int(n or 0))


def part_path(scratch: str, lo: int) -> str:
    """The part file of the range starting at position ``lo``."""
    return f"{scratch}{lo}.part"


def export_part(
    engine: Engine, lo: int, hi: int, advance: Advance, chunk: int, *,
    stream: str | None, from_position: int | None, to_position: int | None, scratch: str,
) -> ExportResult:  # fmt: skip
    """Export the matching events with ``lo <= position < hi`` to their part file (a parallel job)."""
    conditions = [*range_conditions(stream, from_position, to_position), _E.c.position < hi]
    path = part_path(scratch, lo)
    try:
        out = open(path, "xb")  # noqa: SIM115 - closed below; a name that exists is not ours
    except OSError as e:
        raise ToolError(f"cannot write the export part file {path}: {e.strerror or type(e).__name__}") from None
    with out:
        try:
            return _export_serial(engine, out, conditions, advance, chunk, after=lo - 1)
        except OSError as e:  # a full disk, say
            raise ToolError(f"cannot write the export part file {path}: {e.strerror or type(e).__name__}") from None


def export_parallel(
    engine: Engine,
    out: BinaryIO,
    scratch: str,
    bounds: tuple[int, int, int],
    workers: int,
    *,
    stream: str | None,
    from_position: int | None,
    to_position: int | None,
    advance: Advance,
    chunk: int,
) -> ExportResult:
    """The export cut into position ranges of similar span, each written by a
    worker process (or this one) to its part file ``scratch<lo>.part``, then
    copied into ``out`` in position order by the kernel (``copy_file_range``:
    no bytes through Python). Every part file is removed, whatever happens;
    on a failure ``out`` holds a prefix at most, which is why the CLI writes
    through :func:`parley.atomic_file.atomic_writer` (the target appears only
    complete)."""
    lo, hi, _n = bounds
    parts = min(workers * RANGES_PER_WORKER, hi - lo + 1)
    edges = sorted({lo + (hi - lo + 1) * k // parts for k in range(parts + 1)})
    ranges = list(zip(edges[:-1], edges[1:]))
    job = functools.partial(
        export_part, stream=stream, from_position=from_position, to_position=to_position, scratch=scratch
    )
    try:
        # position ranges: the pool passes a range's bounds to the job as they are
        results = run_ranges(engine, ranges, workers, job, advance, chunk, label="export")  # type: ignore[arg-type]
        out.flush()
        for a, _b in ranges:
            append_file(out, part_path(scratch, a))
            os.unlink(part_path(scratch, a))
    finally:
        for a, _b in ranges:
            try:
                os.unlink(part_path(scratch, a))
            except OSError:  # never written (or not a file: not one of ours)
                pass
    advance(0)
    firsts = [r.first_position for r in results if r.events]
    lasts = [r.last_position for r in results if r.events]
    return ExportResult(sum(r.events for r in results), firsts[0] if firsts else None, lasts[-1] if lasts else None)


def append_file(out: BinaryIO, path: str) -> None:
    """Append the file ``path`` to ``out`` (flushed), in the kernel where it can."""
    with open(path, "rb") as src:
        size = os.fstat(src.fileno()).st_size
        done = 0
        try:
            while done < size:
                n = os.copy_file_range(src.fileno(), out.fileno(), size - done)
                if n == 0:
                    break
                done += n
        except (AttributeError, OSError):  # no copy_file_range (platform, file system): copy through Python
            pass
        if done < size:
            src.seek(done)
            shutil.copyfileobj(src, out, 1 << 20)
            out.flush()


def remove_stale_scratch(output: str) -> int:
    """Remove what an export to ``output`` killed on this machine left next to
    it (``SIGKILL``, OOM, a power cut: no ``finally`` ran); how many files.

    Only names this tool makes are touched: the atomic writer's
    ``.<name>.<pid>.<8 hex>.tmp`` and the part files
    ``.<name>.<pid>.<8 hex>.<position>.part`` of the scratch prefix the CLI
    gives a parallel export, and only where no process ``<pid>`` runs here
    any more (a live export, this one included, keeps its files). An export
    from another machine on a shared file system is not told apart by its
    pid: two hosts exporting to one path at the same time are out of scope.
    """
    directory, name = os.path.split(os.path.abspath(output))
    mine = re.compile(rf"\.{re.escape(name)}\.([0-9]+)\.[0-9a-f]{{8}}\.(?:tmp|[0-9]+\.part)")
    try:
        entries = os.listdir(directory)
    except OSError:  # the export itself will say why the directory cannot be written
        return 0
    removed = 0
    for entry in entries:
        match = mine.fullmatch(entry)
        if match is None or _process_exists(int(match.group(1))):
            continue
        try:
            path = os.path.join(directory, entry)
            if os.path.isfile(path) and not os.path.islink(path):
                os.unlink(path)
                removed += 1
        except OSError:  # gone meanwhile, or not ours to remove: leave it
            pass
    return removed


def _process_exists(pid: int) -> bool:
    """Whether a process ``pid`` runs on this machine (``kill(pid, 0)``)."""
    if pid <= 0:
        return True  # not a pid a process of ours had: leave the file
    try:
        os.kill(pid, 0)
    except (ProcessLookupError, OverflowError):  # none, or a number no pid can be
        return False
    except OSError:  # someone else's process (EPERM): alive
        return True
    return True
