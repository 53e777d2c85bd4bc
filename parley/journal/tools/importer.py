"""``parley journal import``: load an export into an EMPTY database, checking every chain.

Speed (ADR-0044): lines are parsed to plain tuples (:func:`.lines.parse_row`)
and inserted in batches through the raw DBAPI connection of the import's one
transaction: ``executemany`` on SQLite (with a larger page cache for the
index inserts), ``COPY … FROM STDIN`` on Postgres. No SQLAlchemy statement
per batch, no dict per row. A file can be parsed by worker processes while
this one links and inserts (:mod:`.import_chunks`).
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterable
from dataclasses import dataclass

import orjson
import sqlalchemy as sa
from sqlalchemy.engine import Connection

from .. import schema
from ..engine import is_postgres, write_engine
from ..batch import PG_WRITE_LOCK
from ..store import GENESIS_HASH, WRITE_LOCK_KEY, JournalStore, compute_hash, set_meta
from . import import_chunks
from .lines import Row, parse_row
from .opening import Advance, ToolError, no_progress

_E = schema.events
#: Meta key recording the last import (a JSON object).
IMPORT_META_KEY = "journal_import"
_COLUMNS = ", ".join(c.name for c in schema.EVENT_COLUMNS)
_SQLITE_INSERT = f"INSERT INTO {_E.name} ({_COLUMNS}) VALUES ({', '.join('?' * len(schema.EVENT_COLUMNS))})"
_PG_COPY = f"COPY {_E.name} ({_COLUMNS}) FROM STDIN"
#: SQLite page cache of the import's connection, in KiB (negative ``cache_size``):
#: the ``UNIQUE(stream_id, seq)`` index takes inserts all over its pages.
SQLITE_IMPORT_CACHE_KIB = 256 * 1024


@dataclass(frozen=True, slots=True)
class ImportResult:
    events: int
    streams: int
    last_position: int | None


def _lock_for_write(conn: Connection) -> None:
    if is_postgres(conn.engine):
        conn.execute(PG_WRITE_LOCK, {"k": WRITE_LOCK_KEY})


def _refuse_non_empty(conn: Connection) -> None:
    events = conn.execute(sa.select(sa.func.count()).select_from(_E)).scalar_one()
    snapshots = conn.execute(sa.select(sa.func.count()).select_from(schema.snapshots)).scalar_one()
    if events or snapshots:
        what = f"{events} events" if events else f"{snapshots} snapshots"
        raise ToolError(
            f"refusing to import into a non-empty database ({what}); "
            "import needs an empty database migrated with 'parley db upgrade'"
        )


class _Inserter:
    """Batches of rows into ``events`` through the connection's DBAPI cursor."""

    def __init__(self, conn: Connection) -> None:
        self.postgres = is_postgres(conn.engine)
        self.cursor = conn.connection.driver_connection.cursor()
        self.cache_size = None
        if not self.postgres:
            self.cache_size = self.cursor.execute("PRAGMA cache_size").fetchone()[0]
            self.cursor.execute(f"PRAGMA cache_size=-{SQLITE_IMPORT_CACHE_KIB}")

    def insert(self, rows: list[Row]) -> None:
        if not rows:
            return
        if self.postgres:
            with self.cursor.copy(_PG_COPY) as copy:
                for row in rows:
                    copy.write_row(row)
        else:
            self.cursor.executemany(_SQLITE_INSERT, rows)

    def close(self) -> None:
        try:
            if self.cache_size is not None:
                self.cursor.execute(f"PRAGMA cache_size={self.cache_size}")
        finally:
            self.cursor.close()


class _Linker:
    """The in-order checks of an import: positions increase, each stream's chain follows on."""

    def __init__(self) -> None:
        self.heads: dict[str, tuple[int, str]] = {}
        self.last_position = 0
        self.count = 0

    def link(self, row: Row, lineno: int, hash_ok: bool | None = None) -> None:
        """Check ``row`` (line ``lineno``) after the rows before it; ``hash_ok``
        None: recompute the hash here, else a worker's answer."""
        position, sid, seq, type_, data, _at, prev_hash, hash_ = row
        if position <= self.last_position:
            raise ToolError(f"{_where(lineno, sid, seq)}: position {position} is not after {self.last_position}")
        last_seq, prev = self.heads.get(sid, (0, GENESIS_HASH))
        if seq != last_seq + 1:
            hint = " (a partial export cannot be imported)" if last_seq == 0 else ""
            raise ToolError(f"{_where(lineno, sid, seq)}: seq {last_seq + 1} was expected{hint}")
        if prev_hash != prev:
            raise ToolError(f"{_where(lineno, sid, seq)}: prev_hash does not match the previous event's hash")
        if hash_ok is None:
            hash_ok = compute_hash(prev, sid, seq, type_, data) == hash_
        if not hash_ok:
            raise ToolError(f"{_where(lineno, sid, seq)}: hash mismatch (the line's data is not the original bytes)")
        self.heads[sid] = (seq, hash_)
        self.last_position = position
        self.count += 1


def _sequential(lines: Iterable[bytes], linker: _Linker, inserter: _Inserter, advance: Advance, batch: int) -> None:
    rows: list[Row] = []
    consumed = 0
    for lineno, line in enumerate(lines, start=1):
        consumed += len(line)
        if not line.strip():
            continue
        row = parse_row(line, lineno)
        linker.link(row, lineno)
        rows.append(row)
        if len(rows) >= batch:
            inserter.insert(rows)
            rows = []
            advance(consumed)
            consumed = 0
    inserter.insert(rows)
    advance(consumed)


def _parallel(path: str, workers: int, linker: _Linker, inserter: _Inserter, advance: Advance) -> None:
    """Ranges of ``path`` parsed by ``workers`` processes, linked and inserted here in file order."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor
    from concurrent.futures.process import BrokenProcessPool

    ranges = import_chunks.split(path)
    ahead = 2 * workers  # ranges in flight: memory stays a few ranges' worth
    before = 0  # lines of the ranges already linked
    try:
        with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn")) as pool:
            pending = [pool.submit(import_chunks.check_chunk, path, a, b) for a, b in ranges[:ahead]]
            for k in range(len(ranges)):
                chunk = pending[k].result()
                pending[k] = None  # type: ignore[call-overload]  # let the rows go once inserted
                if k + ahead < len(ranges):
                    pending.append(pool.submit(import_chunks.check_chunk, path, *ranges[k + ahead]))
                _link_chunk(chunk, before, linker)
                inserter.insert(chunk.rows)
                advance(chunk.size)
                before += chunk.lines
    except BrokenProcessPool:
        raise ToolError("an import worker process ended unexpectedly") from None


def _link_chunk(chunk: import_chunks.Chunk, before: int, linker: _Linker) -> None:
    for i, row in enumerate(chunk.rows):
        lineno = before + 1 + (i if chunk.line_index is None else chunk.line_index[i])
        linker.link(row, lineno, hash_ok=i != chunk.bad_hash)
    if chunk.bad_line is not None:
        index, line = chunk.bad_line
        parse_row(line, before + 1 + index)  # raises the sequential import's error
        raise ToolError(f"line {before + 1 + index}: cannot be parsed")


def import_events(
    store: JournalStore,
    lines: Iterable[bytes] | None = None,
    *,
    path: str | None = None,
    workers: int = 1,
    advance: Advance = no_progress,
    batch: int = 5000,
    source: str | None = None,
) -> ImportResult:
    """Load an export into an EMPTY database, in one transaction.

    Positions, ``seq``, hashes and ``data`` bytes are kept exactly. Every
    line is checked while loading: positions strictly increase, each stream
    starts at ``seq`` 1 and continues without gaps, ``prev_hash`` links to the
    previous event and ``hash`` matches the recomputed one. Any failure rolls
    the whole import back. ``advance`` receives the byte length of the lines.

    The lines come from ``lines``, or from the file at ``path``, which with
    ``workers > 1`` (and at least :data:`import_chunks.PARALLEL_MIN_BYTES`)
    is parsed by ``workers - 1`` spawned processes while this one inserts
    (:mod:`.import_chunks`); the outcome, and any error, is the same.
    """
    linker = _Linker()
    parallel = path is not None and workers > 1 and os.path.getsize(path) >= import_chunks.PARALLEL_MIN_BYTES
    with write_engine(store.engine).connect() as conn, conn.begin():
        _lock_for_write(conn)
        _refuse_non_empty(conn)
        inserter = _Inserter(conn)
        try:
            if parallel:
                assert path is not None
                _parallel(path, max(1, workers - 1), linker, inserter, advance)
            elif path is not None:
                with open(path, "rb") as f:
                    _sequential(f, linker, inserter, advance, batch)
            else:
                _sequential(lines or (), linker, inserter, advance, batch)
        finally:
            inserter.close()
        last_position = linker.last_position
        if linker.count and is_postgres(conn.engine):
            # explicit positions do not move the BIGSERIAL sequence: do it here
            conn.execute(
                sa.text("SELECT setval(pg_get_serial_sequence('events', 'position'), :p)"),
                {"p": last_position},
            )
        info: dict[str, object] = {
            "events": linker.count, "streams": len(linker.heads), "last_position": last_position or None,
        }  # fmt: skip
        if source:
            info["source"] = source
        info["at"] = time.time()
        set_meta(conn, IMPORT_META_KEY, orjson.dumps(info).decode())
    store.forget_heads()
    return ImportResult(linker.count, len(linker.heads), last_position or None)


def _where(lineno: int, stream_id: str, seq: int) -> str:
    return f"line {lineno} (stream {stream_id!r}, seq {seq})"
