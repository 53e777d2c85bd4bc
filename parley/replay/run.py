"""``parley journal replay``: fold every ``channel:*``/``session:*`` stream, compare with snapshots.

Replay sits above the journal (ADR-0043): it reads through the journal's
queries and folds with :mod:`parley.domain`. A whole-journal replay with
``workers > 1`` cuts the streams into ranges folded by worker processes
(ADR-0012, :mod:`parley.journal.tools.parallel`).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from ..journal import queries, schema
from ..journal.tools.opening import Advance, ToolError, count_events, no_progress
from ..journal.tools.parallel import RANGES_PER_WORKER, run_ranges, stream_ranges
from .fold import StreamFold, stream_kind
from .report import REPLAY_KINDS, Finding, Part, ReplayReport, add_part, to_part

_E = schema.events
#: ``replay(workers=N)`` stays in one process below this many events (~0.3 s
#: of folding): a worker is a fresh interpreter (``spawn``) that spends ~0.7 s
#: of CPU importing parley, SQLAlchemy and the driver before it folds
#: anything, so it could not help, and starting it is not free.
PARALLEL_MIN_EVENTS = 50_000
REPLAY_PREFIXES = tuple(f"{k}:" for k in REPLAY_KINDS)


def replay_filter(stream: str | None) -> Any:
    if stream is not None:
        return _E.c.stream_id == stream
    return sa.or_(*(queries.has_prefix(_E.c.stream_id, p) for p in REPLAY_PREFIXES))


def replay_count(engine: Engine, stream: str | None = None) -> int:
    return count_events(engine, replay_filter(stream))


def is_replayed(stream_id: str) -> bool:
    """A ``channel:*`` or ``session:*`` stream (case-sensitive, as :func:`replay_filter`)."""
    return stream_id.startswith(REPLAY_PREFIXES)


def replayed_rows(rows: Iterable[tuple[str, int, str, str]]) -> Iterator[tuple[str, int, str, str]]:
    """The rows of replayed streams, filtered here rather than in the page query.

    With :func:`replay_filter` in its ``WHERE`` (a ``LIKE`` and a ``substr``
    per prefix), Postgres misjudged a page's selectivity and answered every
    page of 5,000 rows with a parallel sequential scan of the whole table and
    a sort (0.5 s per page on 200,000 events); without it each page is an
    index range scan of ``UNIQUE(stream_id, seq)`` (ADR-0044). The other
    streams' few rows are read and dropped.
    """
    return (row for row in rows if row[0].startswith(REPLAY_PREFIXES))


def replay_ranges(engine: Engine, parts: int, *, min_events: int = 0) -> list[tuple[str | None, str | None]]:
    """:func:`~parley.journal.tools.parallel.stream_ranges` weighted by the replayed streams."""
    return stream_ranges(engine, parts, min_events=min_events, counts=is_replayed)


def snapshot_filter(stream: str | None) -> Any:
    s = schema.snapshots
    if stream is not None:
        return s.c.stream_id == stream
    return sa.or_(*(queries.has_prefix(s.c.stream_id, p) for p in REPLAY_PREFIXES))


def bounds(column: Any, lo: str | None, hi: str | None) -> list[Any]:
    """``lo <= column < hi`` (either side open when ``None``)."""
    conds = []
    if lo is not None:
        conds.append(column >= lo)
    if hi is not None:
        conds.append(column < hi)
    return conds


def snapshot_seqs(engine: Engine, *conditions: Any) -> dict[str, int]:
    s = schema.snapshots
    with engine.connect() as conn:
        return dict(conn.execute(sa.select(s.c.stream_id, s.c.seq).where(*conditions)).all())


def range_snapshot_seqs(engine: Engine, lo: str | None, hi: str | None) -> dict[str, int]:
    return snapshot_seqs(engine, snapshot_filter(None), *bounds(schema.snapshots.c.stream_id, lo, hi))


class SnapshotLoader:
    """The stored snapshot ``(seq, data text)`` of a stream that has one."""

    def __init__(self, engine: Engine, seqs: dict[str, int]) -> None:
        self.engine = engine
        self.seqs = seqs

    def __call__(self, sid: str) -> tuple[int, str] | None:
        if sid not in self.seqs:
            return None
        s = schema.snapshots
        with self.engine.connect() as conn:
            row = conn.execute(sa.select(s.c.seq, s.c.data).where(s.c.stream_id == sid)).first()
        return (row[0], row[1]) if row is not None else None


def fold_streams(
    engine: Engine,
    report: ReplayReport,
    rows: Iterable[tuple[str, int, str, str]],
    snap_seqs: dict[str, int],
    advance: Advance,
    chunk: int,
) -> list[str]:
    """Fold ``rows`` (``(stream_id, seq, type, data)`` in stream, seq order) into
    ``report``; the stream ids seen, in order."""
    load_snapshot = SnapshotLoader(engine, snap_seqs)
    seen: list[str] = []
    current: StreamFold | None = None
    pending = 0
    for sid, seq, type_, data in rows:
        if current is None or current.stream_id != sid:
            if current is not None:
                current.finish()
            seen.append(sid)
            current = StreamFold(report, sid, load_snapshot(sid))
        current.feed(seq, type_, data)
        pending += 1
        if pending == chunk:
            advance(pending)
            pending = 0
    if pending:
        advance(pending)
    if current is not None:
        current.finish()
    return seen


def fold_range(engine: Engine, lo: str | None, hi: str | None, advance: Advance, chunk: int) -> Part:
    """Fold the replayed streams ``lo <= stream_id < hi`` (a parallel job)."""
    report = ReplayReport()
    snap_seqs = range_snapshot_seqs(engine, lo, hi)
    # not iter_stream_rows with the bounds in ``where``: see iter_stream_range
    rows = replayed_rows(queries.iter_stream_range(engine, start=lo, stop=hi, chunk=chunk))
    seen = fold_streams(engine, report, rows, snap_seqs, advance, chunk)
    return to_part(report, seen)


def missing_stream_findings(snapshot_streams: Iterable[str], seen: set[str]) -> list[Finding]:
    return [
        Finding(sid, "difference", "a snapshot exists but the stream has no events")
        for sid in sorted(set(snapshot_streams) - seen)
    ]


def replay(
    engine: Engine,
    *,
    stream: str | None = None,
    advance: Advance = no_progress,
    chunk: int = 5000,
    workers: int = 1,
    min_parallel_events: int = PARALLEL_MIN_EVENTS,
    local_worker: bool = True,
) -> ReplayReport:
    """Fold every ``channel:*``/``session:*`` stream (or just ``stream``) with the domain fold.

    Each stream's state at its snapshot's ``seq`` is compared with the stored
    snapshot (table ``snapshots``). Fold errors and differences are findings;
    the report is ``ok`` when there are none.

    ``workers > 1`` (a full replay of at least ``min_parallel_events``
    events): the streams are cut into contiguous ``stream_id`` ranges
    (:func:`replay_ranges`) folded by that many ``spawn``-ed processes, each on
    its own engine opened from ``engine.url``; their partial reports are
    merged in range order, so the report is the one a single process makes.
    This process is one of the ``workers`` unless ``local_worker`` is false
    (then all are spawned: tests use it to be sure the children fold). A
    failing worker raises :class:`ToolError` or
    :class:`~parley.journal.errors.JournalUnavailable` with one safe line.
    """
    report = ReplayReport()
    if stream is not None and (":" not in stream or stream_kind(stream) not in REPLAY_KINDS):
        raise ToolError(f"replay folds channel:* and session:* streams only, not {stream!r}")
    snap_seqs = snapshot_seqs(engine, snapshot_filter(stream))
    ranges: list[tuple[str | None, str | None]] = [(None, None)]
    if stream is None and workers > 1:
        ranges = replay_ranges(engine, workers * RANGES_PER_WORKER, min_events=min_parallel_events)
    if len(ranges) == 1:
        # Keyset pages over UNIQUE(stream_id, seq) (queries.iter_stream_rows): a
        # range scan per page, where an OR-form keyset made SQLite walk the index
        # from its start for every page (quadratic in the journal size).
        if stream is None:
            rows = replayed_rows(queries.iter_stream_range(engine, chunk=chunk))
        else:
            rows = queries.iter_stream_rows(engine, where=replay_filter(stream), chunk=chunk)
        seen = set(fold_streams(engine, report, rows, snap_seqs, advance, chunk))
    else:
        seen = set()
        for part in run_ranges(engine, ranges, workers, fold_range, advance, chunk, local=local_worker):
            seen |= add_part(report, part)
    report.findings.extend(missing_stream_findings(snap_seqs, seen))
    return report
