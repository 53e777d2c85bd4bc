"""``parley journal import``: load an export into an EMPTY database, checking every chain.

Speed (ADR-0044, ADR-0052, ADR-0059): runs of lines are parsed, hash-checked
and linked within the run by :func:`.import_chunks.check_lines` (in worker
processes for a large file); this process joins the runs at their boundaries
(:meth:`_Linker.join`) and inserts each run's rows through the raw DBAPI
connection of the import's one transaction. SQLite (a larger page cache, a
rollback journal instead of the WAL): with workers, each writes its range's
rows into a scratch SQLite file that this connection has ATTACHed, and one
``INSERT … SELECT`` per range copies them (:class:`_Scratch`); in one process,
``executemany`` of tuples. Postgres: one ``COPY … FROM STDIN`` text buffer made
by the worker per run (the ``UNIQUE(stream_id, seq)`` index is dropped and
built once after the load, inside the transaction).
"""

from __future__ import annotations

import os
import shutil
import sqlite3
import tempfile
import time
from collections.abc import Iterable
from dataclasses import dataclass

import orjson
import sqlalchemy as sa
from sqlalchemy.engine import Connection

from .. import schema
from ..engine import is_postgres, write_engine
from ..batch import PG_WRITE_LOCK
from ..store import GENESIS_HASH, WRITE_LOCK_KEY, JournalStore, set_meta
from . import import_chunks
from .lines import Row, parse_row
from .opening import Advance, ToolError, no_progress

_E = schema.events
#: Meta key recording the last import (a JSON object).
IMPORT_META_KEY = "journal_import"
_COLUMNS = ", ".join(c.name for c in schema.EVENT_COLUMNS)
_SQLITE_INSERT = f"INSERT INTO {_E.name} ({_COLUMNS}) VALUES ({', '.join('?' * len(schema.EVENT_COLUMNS))})"
_PG_COPY = f"COPY {_E.name} ({_COLUMNS}) FROM STDIN"
_SQLITE_COPY_FROM = f"INSERT INTO main.{_E.name} ({_COLUMNS}) SELECT {_COLUMNS} FROM {{}}.events ORDER BY position"
#: SQLite's write lock on the target only: ``BEGIN IMMEDIATE`` would also lock
#: the attached scratch files the workers are still writing (a no-op write
#: statement takes the lock of its database alone).
_SQLITE_LOCK_MAIN = f"DELETE FROM main.{_E.name} WHERE 0"
_UNIQUE = next(c for c in _E.constraints if isinstance(c, sa.UniqueConstraint))
_PG_DROP_UNIQUE = f"ALTER TABLE {_E.name} DROP CONSTRAINT {_UNIQUE.name}"
_PG_ADD_UNIQUE = (
    f"ALTER TABLE {_E.name} ADD CONSTRAINT {_UNIQUE.name} UNIQUE ({', '.join(c.name for c in _UNIQUE.columns)})"
)
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
    """Chunk payloads into ``events`` through the connection's DBAPI cursor."""

    def __init__(self, conn: Connection) -> None:
        self.postgres = is_postgres(conn.engine)
        self.cursor = conn.connection.driver_connection.cursor()
        self.cache_size = None
        if self.postgres:
            # the UNIQUE(stream_id, seq) index is built once after the load (ADR-0052)
            self.cursor.execute(_PG_DROP_UNIQUE)
        else:
            self.cache_size = self.cursor.execute("PRAGMA cache_size").fetchone()[0]
            self.cursor.execute(f"PRAGMA cache_size=-{SQLITE_IMPORT_CACHE_KIB}")

    def insert(self, payload: list[Row] | bytes) -> None:
        if not payload:
            return
        if self.postgres:
            with self.cursor.copy(_PG_COPY) as copy:
                copy.write(payload)
        else:
            self.cursor.executemany(_SQLITE_INSERT, payload)

    def insert_from(self, schema_name: str) -> None:
        """SQLite: copy an attached scratch file's checked rows (ADR-0059), in position order."""
        self.cursor.execute(_SQLITE_COPY_FROM.format(schema_name))

    def finish(self) -> None:
        """After the last insert (inside the transaction): rebuild what was left out."""
        if self.postgres:
            self.cursor.execute(_PG_ADD_UNIQUE)

    def close(self) -> None:
        try:
            if self.cache_size is not None:
                self.cursor.execute(f"PRAGMA cache_size={self.cache_size}")
        finally:
            self.cursor.close()


class _Linker:
    """Joins checked chunks in file order: positions increase, each stream's chain follows on."""

    def __init__(self) -> None:
        self.heads: dict[str, tuple[int, str]] = {}
        self.last_position = 0
        self.count = 0

    def join(self, chunk: import_chunks.Chunk, before: int) -> None:
        """Link ``chunk`` (its lines after the ``before`` lines already joined)
        to the chunks before it; raise the file's first problem as the
        one-line-at-a-time check words it."""
        error = chunk.error
        if chunk.first is not None:
            index, sid, seq, position = chunk.first
            if position <= self.last_position:
                raise ToolError(
                    f"{_where(before + 1 + index, sid, seq)}: position {position} is not after {self.last_position}"
                )
        heads = self.heads
        for row, index, sid, seq, prev_hash in chunk.entries:
            if error is not None and error.row < row:
                break  # the problem inside the chunk comes first
            last_seq, prev = heads.get(sid, (0, GENESIS_HASH))
            if seq != last_seq + 1:
                hint = " (a partial export cannot be imported)" if last_seq == 0 else ""
                raise ToolError(f"{_where(before + 1 + index, sid, seq)}: seq {last_seq + 1} was expected{hint}")
            if prev_hash != prev:
                raise ToolError(
                    f"{_where(before + 1 + index, sid, seq)}: prev_hash does not match the previous event's hash"
                )
        if error is not None:
            raise ToolError(f"{_where(before + 1 + error.line, error.stream_id, error.seq)}: {error.text}")
        if chunk.bad_line is not None:
            index, line = chunk.bad_line
            parse_row(line, before + 1 + index)  # raises the line's own error
            raise ToolError(f"line {before + 1 + index}: cannot be parsed")
        heads.update(chunk.tails)
        if chunk.count:
            self.last_position = chunk.last_position
        self.count += chunk.count


def _sequential(
    lines: Iterable[bytes], linker: _Linker, inserter: _Inserter, advance: Advance, batch: int
) -> None:
    """Batches of ``batch`` lines checked, joined and inserted in this process."""
    before = 0
    pending: list[bytes] = []
    consumed = 0
    for line in lines:
        pending.append(line)
        consumed += len(line)
        if len(pending) >= batch:
            before = _one_batch(pending, consumed, before, linker, inserter, advance)
            pending, consumed = [], 0
    _one_batch(pending, consumed, before, linker, inserter, advance)


def _one_batch(
    lines: list[bytes], size: int, before: int, linker: _Linker, inserter: _Inserter, advance: Advance
) -> int:
    chunk = import_chunks.check_lines(lines, size, inserter.postgres)
    linker.join(chunk, before)
    inserter.insert(chunk.payload)
    advance(size)
    return before + chunk.lines


def _parallel(path: str, workers: int, linker: _Linker, inserter: _Inserter, advance: Advance) -> None:
    """Ranges of ``path`` checked by ``workers`` processes, joined and inserted here in file order."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor
    from concurrent.futures.process import BrokenProcessPool

    ranges = import_chunks.split(path)
    ahead = 2 * workers  # ranges in flight: memory stays a few ranges' worth
    before = 0  # lines of the ranges already joined
    copy_text = inserter.postgres
    check = import_chunks.check_chunk
    try:
        with ProcessPoolExecutor(
            workers, mp_context=multiprocessing.get_context("spawn"),
            initializer=import_chunks.init_worker, initargs=(os.getpid(),),
        ) as pool:
            pending = [pool.submit(check, path, a, b, copy_text) for a, b in ranges[:ahead]]
            for k in range(len(ranges)):
                chunk = pending[k].result()
                pending[k] = None  # type: ignore[call-overload]  # let the payload go once inserted
                if k + ahead < len(ranges):
                    pending.append(pool.submit(check, path, *ranges[k + ahead], copy_text))
                linker.join(chunk, before)
                inserter.insert(chunk.payload)
                advance(chunk.size)
                before += chunk.lines
    except BrokenProcessPool:
        raise ToolError("an import worker process ended unexpectedly") from None


class _Scratch:
    """The scratch SQLite files of a parallel SQLite import (ADR-0059), one per range
    of the file, in a temporary directory: each worker writes a range's checked rows
    into its file, which the import's connection has ATTACHed (before its
    transaction: SQLite refuses an ATTACH inside one) and copies from.

    The file is cut into at most :data:`SCRATCH_RANGES` ranges (and no more than
    the connection may attach): a range is read and written in pieces, so its
    size costs disk in the temporary directory, not memory."""

    def __init__(self, path: str, raw: sqlite3.Connection) -> None:
        count = max(1, min(SCRATCH_RANGES, raw.getlimit(sqlite3.SQLITE_LIMIT_ATTACHED)))
        size = os.path.getsize(path)
        self.ranges = import_chunks.split(path, max(import_chunks.CHUNK_BYTES, -(-size // count)))
        try:
            self.dir = os.path.abspath(tempfile.mkdtemp(prefix="parley-import-"))
        except OSError as e:
            raise _scratch_error(tempfile.gettempdir(), e) from None
        self.files: list[str] = []
        self.attached: list[str] = []
        try:
            for k in range(len(self.ranges)):
                name = os.path.join(self.dir, f"range-{k}.db")
                db = sqlite3.connect(name)
                try:
                    # large pages: a fraction of the write and read calls of 4 KiB ones
                    db.execute(f"PRAGMA page_size={SCRATCH_PAGE_SIZE}")
                    db.execute(import_chunks.SCRATCH_TABLE)
                    db.commit()
                finally:
                    db.close()
                self.files.append(name)
        except BaseException:
            self.remove()
            raise

    def attach(self, raw: sqlite3.Connection) -> None:
        for k, name in enumerate(self.files):
            raw.execute(f"ATTACH DATABASE ? AS scratch{k}", (name,))
            self.attached.append(f"scratch{k}")

    def detach(self, raw: sqlite3.Connection) -> None:
        while self.attached:
            raw.execute(f"DETACH DATABASE {self.attached.pop()}")

    def remove(self) -> None:
        shutil.rmtree(self.dir, ignore_errors=True)


#: Most ranges of a parallel SQLite import (each one an attached scratch file;
#: SQLite's default limit is 10 attached databases).
SCRATCH_RANGES = 8
#: Page size of the scratch files (SQLite's largest).
SCRATCH_PAGE_SIZE = 65536


def _parallel_scratch(
    path: str, workers: int, linker: _Linker, inserter: _Inserter, advance: Advance, scratch: _Scratch
) -> None:
    """Ranges of ``path`` checked by ``workers`` processes into the scratch files,
    joined and copied here in file order; ``advance`` follows the bytes checked."""
    import multiprocessing
    from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
    from concurrent.futures.process import BrokenProcessPool

    ctx = multiprocessing.get_context("spawn")
    stop = ctx.Event()
    checked = ctx.Value("q", 0)
    reported = 0
    before = 0  # lines of the ranges already joined
    futures = []
    try:
        with ProcessPoolExecutor(
            workers, mp_context=ctx, initializer=import_chunks.init_worker, initargs=(os.getpid(), stop, checked)
        ) as pool:
            try:
                futures = [
                    pool.submit(import_chunks.check_into_scratch, path, a, b, name)
                    for (a, b), name in zip(scratch.ranges, scratch.files)
                ]
                for k, future in enumerate(futures):
                    while not future.done():
                        wait([future], timeout=PROGRESS_INTERVAL_S, return_when=FIRST_COMPLETED)
                        reported = _report(checked.value, reported, advance)
                    try:
                        chunk = future.result()
                    except (sqlite3.Error, OSError) as e:  # the worker's, writing its scratch file
                        raise _scratch_error(scratch.dir, e) from None
                    linker.join(chunk, before)
                    inserter.insert_from(scratch.attached[k])
                    before += chunk.lines
                    reported = _report(checked.value, reported, advance)
            except BaseException:
                stop.set()  # the running workers stop after their current piece
                for future in futures:
                    future.cancel()
                raise
    except BrokenProcessPool:
        raise ToolError("an import worker process ended unexpectedly") from None


def _scratch_error(where: str, e: BaseException) -> ToolError:
    return ToolError(
        f"cannot write the import's scratch files in {where} ({e}); "
        "set TMPDIR to a directory with about the file's size free"
    )


def _report(checked: int, reported: int, advance: Advance) -> int:
    if checked > reported:
        advance(checked - reported)
    return max(checked, reported)


#: How often a parallel SQLite import reports the bytes its workers checked.
PROGRESS_INTERVAL_S = 0.25


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
    is checked by ``workers`` spawned processes while this one joins and
    inserts the chunks (:mod:`.import_chunks`; on SQLite the workers also
    write the rows, into scratch files under ``TMPDIR``, removed afterwards);
    the outcome, and any error, is the same.
    """
    linker = _Linker()
    parallel = path is not None and workers > 1 and os.path.getsize(path) >= import_chunks.PARALLEL_MIN_BYTES
    postgres = is_postgres(store.engine)
    if not postgres:
        store.engine.dispose()  # the pool's idle connections: the import's must be the file's only one
    scratch: _Scratch | None = None
    # SQLite with scratch files: a plain BEGIN, then the target's write lock alone
    engine = store.engine if parallel and not postgres else write_engine(store.engine)
    with engine.connect() as conn:
        synchronous = _sqlite_rollback_journal(conn)  # before the ATTACHes: the pragma sets every schema's mode
        try:
            if parallel and not postgres:
                assert path is not None
                raw = conn.connection.driver_connection
                assert raw is not None
                scratch = _Scratch(path, raw)
                scratch.attach(raw)
            with conn.begin():
                if scratch is not None:
                    conn.exec_driver_sql(_SQLITE_LOCK_MAIN)
                _load(conn, linker, lines, path, parallel, workers, advance, batch, source, scratch)
        finally:
            try:
                if scratch is not None and (raw := conn.connection.driver_connection) is not None:
                    scratch.detach(raw)
            finally:
                try:
                    if synchronous is not None:
                        _sqlite_back_to_wal(conn, synchronous)
                finally:
                    if scratch is not None:
                        scratch.remove()
    store.forget_heads()
    return ImportResult(linker.count, len(linker.heads), linker.last_position or None)


def _load(
    conn: Connection,
    linker: _Linker,
    lines: Iterable[bytes] | None,
    path: str | None,
    parallel: bool,
    workers: int,
    advance: Advance,
    batch: int,
    source: str | None,
    scratch: _Scratch | None = None,
) -> None:
    """The import's one transaction: refuse a non-empty target, load, link, record."""
    _lock_for_write(conn)
    _refuse_non_empty(conn)
    inserter = _Inserter(conn)
    try:
        if scratch is not None:
            assert path is not None
            # SQLite: the workers also write the rows; this process only copies them in C
            _parallel_scratch(path, workers, linker, inserter, advance, scratch)
        elif parallel:
            assert path is not None
            # Postgres: the server inserts and this process mostly waits, so all parse
            _parallel(path, workers, linker, inserter, advance)
        elif path is not None:
            with open(path, "rb") as f:
                _sequential(f, linker, inserter, advance, batch)
        else:
            _sequential(lines or (), linker, inserter, advance, batch)
        inserter.finish()
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


def _sqlite_rollback_journal(conn: Connection) -> int | None:
    """SQLite: load into the empty file through a rollback journal instead of the WAL (ADR-0052).

    The pages are then written once, into the database file, instead of into
    the WAL and again by the checkpoint; the rollback journal holds only the
    few pages of the empty schema. ``synchronous=EXTRA`` makes the commit (the
    journal's deletion) durable: the directory is synced after the unlink.
    Needs the only connection to the file; when another one has it open in
    WAL mode the mode does not change and the import goes through the WAL as
    before. The connection's ``synchronous`` level to restore after it, or
    None when nothing changed (Postgres, or the WAL kept).
    """
    if is_postgres(conn.engine):
        return None
    raw = conn.connection.driver_connection  # no SQLAlchemy autobegin: a PRAGMA outside a transaction
    synchronous = int(raw.execute("PRAGMA synchronous").fetchone()[0])
    busy = int(raw.execute("PRAGMA busy_timeout").fetchone()[0])
    raw.execute("PRAGMA busy_timeout=0")  # another connection: keep the WAL at once, do not wait
    try:
        mode = raw.execute("PRAGMA journal_mode=DELETE").fetchone()[0]
    except sqlite3.OperationalError:  # "database is locked"
        mode = "wal"
    finally:
        raw.execute(f"PRAGMA busy_timeout={busy}")
    if str(mode).lower() != "delete":
        return None
    raw.execute("PRAGMA synchronous=EXTRA")
    return synchronous


def _sqlite_back_to_wal(conn: Connection, synchronous: int) -> None:
    raw = conn.connection.driver_connection
    raw.execute("PRAGMA journal_mode=WAL")
    raw.execute(f"PRAGMA synchronous={synchronous}")


def _where(lineno: int, stream_id: str, seq: int) -> str:
    return f"line {lineno} (stream {stream_id!r}, seq {seq})"
