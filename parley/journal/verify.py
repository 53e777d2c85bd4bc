"""Hash-chain verification: every stream's chain recomputed, in ``stream_id`` order.

Per stream: ``seq`` runs 1, 2, 3… without gaps, each ``prev_hash`` equals
the previous event's ``hash`` ("" for seq 1) and each ``hash`` matches the
recomputed one (:func:`parley.journal.store.compute_hash`). Checking stops at
the first broken event, and the report names it with the streams and events
checked up to it.

Speed (ADR-0044): rows come from :func:`parley.journal.queries.iter_stream_range`
(row-value keyset pages of ``UNIQUE(stream_id, seq)``, raw DBAPI tuples)
instead of SQLAlchemy Rows paged with an ``OR`` keyset. With ``workers > 1``
the streams are cut into ranges checked by worker processes
(:mod:`parley.journal.tools.parallel`); merging the parts in range order
gives exactly the report of one process: the counts of the ranges before the
first broken one, plus that range's counts up to its break.

:class:`ChainCheck` is the per-row check, also used by ``parley journal
verify``'s single pass that folds the streams at the same time
(:mod:`parley.replay.audit`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import sqlalchemy as sa

from sqlalchemy.engine import Engine

from . import queries, schema
from .store import GENESIS_HASH, compute_hash
from .types import VerifyReport

_E = schema.events
#: What a chain check reads per event; ``stream_id, seq`` first (the keyset).
CHAIN_COLUMNS = (_E.c.stream_id, _E.c.seq, _E.c.type, _E.c.data, _E.c.position, _E.c.prev_hash, _E.c.hash)
_CHAIN_COLUMNS_SQLITE = tuple(
    sa.cast(c, sa.LargeBinary).label("data") if c.name == "data" else c for c in CHAIN_COLUMNS
)
_CHAIN_COLUMNS_POSTGRES = tuple(
    sa.func.convert_to(c, sa.literal_column("'UTF8'"), type_=sa.LargeBinary).label("data") if c.name == "data" else c
    for c in CHAIN_COLUMNS
)


def chain_columns(engine: Engine) -> tuple[Any, ...]:
    """:data:`CHAIN_COLUMNS` with ``data`` as its UTF-8 bytes, which the hash
    and orjson take as they are (no ``str`` decoded to be encoded again):
    SQLite ``CAST(data AS BLOB)``, Postgres ``convert_to(data, 'UTF8')``, a
    ``bytea`` read in the binary result format (:func:`chain_pages`)."""
    name = engine.dialect.name
    if name == "sqlite":
        return _CHAIN_COLUMNS_SQLITE
    return _CHAIN_COLUMNS_POSTGRES if name == "postgresql" else CHAIN_COLUMNS


def chain_pages(engine: Engine, lo: str | None, hi: str | None, chunk: int) -> Any:
    """Pages of :func:`chain_columns` rows of the streams ``lo <= stream_id < hi``
    in ``(stream_id, seq)`` order; on Postgres in the binary result format
    (integers unpacked rather than parsed from text, ``data`` as bytes)."""
    return queries.iter_stream_pages(engine, start=lo, stop=hi, chunk=chunk, columns=chain_columns(engine), binary=True)


#: A full verify stays in one process below this many events (a spawned
#: worker spends ~0.7 s importing before it checks anything).
PARALLEL_MIN_EVENTS = 50_000

Heads = dict[str, tuple[int, str]]
#: One range's outcome: streams, events checked, the break (stream, position,
#: reason) or None, and the heads of the streams checked.
Part = tuple[int, int, "tuple[str, int, str] | None", Heads]


class ChainCheck:
    """Checks rows in ``(stream_id, seq)`` order; :meth:`feed` is false once broken."""

    __slots__ = ("streams", "events", "broken", "heads", "_stream", "_expect", "_prev")

    def __init__(self) -> None:
        self.streams = 0
        self.events = 0
        #: ``(stream_id, position, reason)`` of the first broken event.
        self.broken: tuple[str, int, str] | None = None
        self.heads: Heads = {}
        self._stream: str | None = None
        self._expect = 1
        self._prev = GENESIS_HASH

    def feed(self, sid: str, seq: int, type_: str, data: str | bytes, position: int, prev_hash: str, h: str) -> bool:
        if sid != self._stream:
            self._stream, self._expect, self._prev = sid, 1, GENESIS_HASH
            self.streams += 1
        self.events += 1
        if seq != self._expect:
            reason = f"seq {seq} where {self._expect} was expected"
        elif prev_hash != self._prev:
            reason = f"seq {seq}: prev_hash does not match the previous event's hash"
        elif compute_hash(prev_hash, sid, seq, type_, data) != h:
            reason = f"seq {seq}: hash mismatch (event content was altered)"
        else:
            self._expect, self._prev = seq + 1, h
            self.heads[sid] = (seq, h)
            return True
        self.broken = (sid, position, reason)
        return False

    def feed_page(self, rows: list[tuple]) -> bool:
        """:meth:`feed` for each of ``rows`` (``CHAIN_COLUMNS`` tuples) in one loop, with the
        state in local variables: the same outcome, less Python per row. False once broken."""
        hash_of = compute_hash
        heads = self.heads
        stream, expect, prev = self._stream, self._expect, self._prev
        streams, events = self.streams, self.events
        reason = None
        for sid, seq, type_, data, position, prev_hash, h in rows:
            if sid != stream:
                if expect > 1:
                    heads[stream] = (expect - 1, prev)  # type: ignore[index]
                stream, expect, prev = sid, 1, GENESIS_HASH
                streams += 1
            events += 1
            if seq != expect:
                reason = f"seq {seq} where {expect} was expected"
            elif prev_hash != prev:
                reason = f"seq {seq}: prev_hash does not match the previous event's hash"
            elif hash_of(prev_hash, sid, seq, type_, data) != h:
                reason = f"seq {seq}: hash mismatch (event content was altered)"
            else:
                expect, prev = seq + 1, h
                continue
            self.broken = (sid, position, reason)
            break
        if expect > 1:
            heads[stream] = (expect - 1, prev)  # type: ignore[index]
        self._stream, self._expect, self._prev = stream, expect, prev
        self.streams, self.events = streams, events
        return reason is None

    def part(self) -> Part:
        return self.streams, self.events, self.broken, self.heads


def check_range(engine: Engine, lo: str | None, hi: str | None, advance: Callable[[int], None], chunk: int) -> Part:
    """Check the chains of the streams ``lo <= stream_id < hi`` (a parallel job)."""
    check = ChainCheck()
    for rows in chain_pages(engine, lo, hi, chunk):
        if not check.feed_page(rows):
            break
        advance(len(rows))
    return check.part()


def merge(parts: list[Part], heads: Heads | None = None) -> VerifyReport:
    """The report of one process from range parts in range order (see module docstring)."""
    streams = events = 0
    for n_streams, n_events, broken, part_heads in parts:
        streams += n_streams
        events += n_events
        if heads is not None:
            heads.update(part_heads)
        if broken is not None:
            sid, position, reason = broken
            return VerifyReport(False, streams, events, sid, position, reason)
    return VerifyReport(True, streams, events)


def verify_chains(
    engine: Engine,
    *,
    chunk: int = 10_000,
    advance: Callable[[int], None] | None = None,
    heads: Heads | None = None,
    workers: int = 1,
    min_parallel_events: int = PARALLEL_MIN_EVENTS,
) -> VerifyReport:
    """Recompute every hash chain; ``heads``, if given, receives each verified
    stream's last ``(seq, hash)`` (anchors). ``advance(n)`` is told as events
    are checked (progress bars)."""
    from .tools.parallel import run_split

    tell = advance or (lambda _n: None)
    parts = run_split(engine, workers, check_range, tell, chunk, min_events=min_parallel_events, label="verify")
    return merge(parts, heads)


def verify_report_line(report: VerifyReport) -> str:
    """The one-line problem of a broken chain, as ``parley journal verify`` prints it."""
    return f"stream {report.broken_stream!r} at position {report.broken_position}: {report.reason}"


__all__ = ["CHAIN_COLUMNS", "ChainCheck", "chain_columns", "chain_pages", "check_range", "merge", "verify_chains", "verify_report_line"]
