"""The batched append: one transaction per commit batch, a savepoint per request.

:meth:`BatchAppender.run_batch` is what the group-commit writer thread runs
(module docstring of :mod:`parley.journal.store`: batches, the head cache,
``UNIQUE(stream_id, seq)`` as the final arbiter). A run of plain appends is
checked in memory and inserted with one multi-row INSERT; an append with a
side effect, or a :class:`~.requests.CallRequest`, takes its own savepoint.
"""

from __future__ import annotations

import sqlite3
import time
import uuid
from collections import OrderedDict
from collections.abc import Sequence
from typing import Any

import orjson
import sqlalchemy as sa
from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import Connection, Engine

from . import schema
from .engine import is_postgres, write_engine
from .errors import ConcurrencyError
from .event_rows import chain_rows, last_event, read_heads
from .failures import is_fatal_db_error
from .notify import channel_of, notify
from .requests import AppendRequest, BatchOutcome, Request, StaleConnection
from .types import StoredEvent

#: The advisory lock class every write batch takes on Postgres ("prly" in ASCII),
#: paired with the schema's hash: positions need commit order only within one
#: schema's ``events`` table, so journals in other schemas of one database (test
#: runs, tenants) never queue behind each other's writes.
WRITE_LOCK_KEY = 0x70726C79
#: The statement that takes it (the batch writer and ``journal import``).
PG_WRITE_LOCK = sa.text("SELECT pg_advisory_xact_lock(CAST(:k AS integer), hashtext(current_schema()))")

_E = schema.events


class _Conflict(Exception):
    """Internal: the events insert hit UNIQUE(stream_id, seq)."""


def _is_plain(req: Request) -> bool:
    return isinstance(req, AppendRequest) and req.side_effect is None


class BatchAppender:
    """The writer side of one database: batches and the per-stream head cache.

    :meth:`run_batch`/:meth:`append_batch` and the cache belong to one writer
    thread at a time; :class:`~parley.journal.store.JournalStore` adds the reads.
    """

    HEAD_CACHE_SIZE = 65536

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.write_engine = write_engine(engine)
        self.is_postgres = is_postgres(engine)
        #: Names this process's commits in Postgres notifications (journal.notify).
        self.origin = uuid.uuid4().hex
        self._notify_channel: str | None = None  # found on the first Postgres write
        self._heads: OrderedDict[str, tuple[int, str]] = OrderedDict()

    def run_batch(self, conn: Connection, requests: Sequence[Request]) -> BatchOutcome:
        """Commit ``requests`` in one transaction on ``conn`` (a write connection).

        Raises (after rollback) only for a failure of the whole batch; the
        caller should then treat every request as failed and discard ``conn``.
        """
        try:
            with conn.begin():
                try:
                    if self.is_postgres:
                        conn.execute(PG_WRITE_LOCK, {"k": WRITE_LOCK_KEY})
                except sa_exc.DBAPIError as e:
                    if e.connection_invalidated:
                        # Nothing was written yet: safe to retry on a new connection.
                        raise StaleConnection(str(e.orig)) from e
                    raise
                outcome = self.append_batch(conn, requests)
                if self.is_postgres and outcome.committed:
                    if self._notify_channel is None:
                        self._notify_channel = channel_of(conn)
                    notify(conn, self._notify_channel, self.origin, outcome.committed[-1].position)
        except BaseException:
            for req in requests:
                if isinstance(req, AppendRequest):
                    self._heads.pop(req.stream_id, None)
            raise
        self._remember(outcome.heads)
        return outcome

    def append_batch(self, conn: Connection, requests: Sequence[Request]) -> BatchOutcome:
        """Apply ``requests`` inside the caller's open transaction.

        Semantically every request runs in its own SAVEPOINT: a request that
        fails (conflict, failing side effect) is rolled back alone, the others
        stand. Returns per-request results; raises only for errors that make
        the whole transaction unusable (the caller rolls back).

        Fast path: a run of consecutive appends *without* side effects is
        validated in memory against the heads (cache, or one query for all
        unknown streams) and inserted with ONE multi-row INSERT inside ONE
        savepoint. If that insert hits UNIQUE(stream_id, seq) — a stale cache
        entry, another process appended — the savepoint is rolled back and the
        run is redone request by request (fresh reads, own savepoints).
        Requests with side effects and :class:`CallRequest` always take the
        per-request savepoint path. Request order (and so per-stream seq
        order) is preserved either way.

        The head cache is NOT updated here (nothing is committed yet):
        :meth:`run_batch` does that after COMMIT.
        """
        now = time.time()
        n = len(requests)
        results: list[Any] = [None] * n
        committed: list[StoredEvent] = []
        overlay: dict[str, tuple[int, str]] = {}
        i = 0
        while i < n:
            j = i
            while j < n and _is_plain(requests[j]):
                j += 1
            if j > i:
                self._append_run(conn, requests, i, j, results, committed, overlay, now)
                i = j
            else:
                self._one_in_savepoint(conn, requests[i], i, results, committed, overlay, now)
                i += 1
        return BatchOutcome(results, committed, overlay)

    # -- fast path: a run of plain appends, one INSERT

    def _append_run(
        self,
        conn: Connection,
        requests: Sequence[Request],
        lo: int,
        hi: int,
        results: list[Any],
        committed: list[StoredEvent],
        overlay: dict[str, tuple[int, str]],
        now: float,
    ) -> None:
        run: list[AppendRequest] = requests[lo:hi]  # type: ignore[assignment]
        heads: dict[str, tuple[int, str]] = {}
        fresh: set[str] = set()  # heads read in (or written by) this transaction
        unknown: set[str] = set()
        for req in run:
            sid = req.stream_id
            if sid in heads or sid in unknown:
                continue
            if sid in overlay:
                heads[sid] = overlay[sid]
                fresh.add(sid)
            elif sid in self._heads:
                heads[sid] = self._heads[sid]
            else:
                unknown.add(sid)
        if unknown:
            read = read_heads(conn, unknown)
            heads.update(read)
            overlay.update(read)  # authoritative now (write lock held): cache after commit
            fresh |= unknown

        accepted = self._simulate(run, heads)
        stale = {r.stream_id for r, ok in zip(run, accepted) if not ok and r.stream_id not in fresh}
        if stale:  # a mismatch against a cached head: ask the database
            read = read_heads(conn, stale)
            heads.update(read)
            overlay.update(read)
            fresh |= stale
            accepted = self._simulate(run, heads)

        rows: list[dict[str, Any]] = []
        owners: list[tuple[int, AppendRequest, int]] = []  # (result index, request, first row)
        cur = dict(heads)
        for k, (req, ok) in enumerate(zip(run, accepted)):
            sid = req.stream_id
            if not ok:
                err = ConcurrencyError(sid, req.expected_seq, cur[sid][0])
                results[lo + k] = err
                continue
            owners.append((lo + k, req, len(rows)))
            cur[sid] = chain_rows(req, cur[sid], now, rows)
        if not rows:
            for idx, _req, _first in owners:
                results[idx] = []
            return
        try:
            with conn.begin_nested():
                positions = self._insert_rows(conn, rows)
        except sa_exc.IntegrityError:
            # Someone else appended to one of these streams: redo one by one.
            for req in run:
                self._heads.pop(req.stream_id, None)
            for k, req in enumerate(run):
                self._one_in_savepoint(conn, req, lo + k, results, committed, overlay, now)
            return
        for idx, req, first in owners:
            stored = [
                StoredEvent(
                    positions[first + m], r["stream_id"], r["seq"], r["type"], ev.data, now,
                    r["prev_hash"], r["hash"],
                )
                for m, (r, ev) in enumerate(zip(rows[first : first + len(req.events)], req.events))
            ]
            results[idx] = stored
            committed.extend(stored)
        for sid, head in cur.items():
            if head != heads[sid] or sid in overlay:
                overlay[sid] = head

    @staticmethod
    def _simulate(run: Sequence[AppendRequest], heads: dict[str, tuple[int, str]]) -> list[bool]:
        seqs = {sid: h[0] for sid, h in heads.items()}
        verdicts = []
        for req in run:
            ok = req.expected_seq == seqs[req.stream_id]
            if ok:
                seqs[req.stream_id] += len(req.events)
            verdicts.append(ok)
        return verdicts

    def _insert_rows(self, conn: Connection, rows: list[dict[str, Any]]) -> list[int]:
        """Insert ``rows`` in order; return their positions (in order)."""
        if len(rows) == 1:
            return [conn.execute(_INSERT_ONE, rows[0]).scalar_one()]
        if self.is_postgres:
            # One INSERT … SELECT FROM unnest(arrays) WITH ORDINALITY ORDER BY:
            # seven array parameters whatever the row count, so the statement
            # text is constant (psycopg caches its parsing; SQLAlchemy's
            # insertmanyvalues would build a new multi-KB statement for every
            # batch size and psycopg re-parses it in Python every time).
            # Positions are drawn in ORDINALITY order; RETURNING is matched
            # back by (stream_id, seq), so no reliance on RETURNING's order.
            params = {
                "sid": [r["stream_id"] for r in rows],
                "seq": [r["seq"] for r in rows],
                "type": [r["type"] for r in rows],
                "data": [r["data"] for r in rows],
                "at": [r["recorded_at"] for r in rows],
                "prev": [r["prev_hash"] for r in rows],
                "hash": [r["hash"] for r in rows],
            }
            got = {
                (sid, seq): pos
                for pos, sid, seq in conn.exec_driver_sql(_PG_INSERT_UNNEST, params)
            }
            return [got[(r["stream_id"], r["seq"])] for r in rows]
        # SQLite cannot return RETURNING rows in parameter order for a batch,
        # so SQLAlchemy would fall back to one statement per row. Instead:
        # insert without RETURNING, then derive the positions. With the write
        # lock held (BEGIN IMMEDIATE) and AUTOINCREMENT, the rows of one
        # statement get consecutive rowids ending at last_insert_rowid().
        self._insert_sqlite(conn, rows)
        last = conn.exec_driver_sql("SELECT last_insert_rowid()").scalar_one()
        return list(range(last - len(rows) + 1, last + 1))

    @staticmethod
    def _insert_sqlite(conn: Connection, rows: list[dict[str, Any]]) -> None:
        """Insert ``rows`` in order with ONE statement that reads them from a JSON array.

        An executemany steps SQLite once per row, and the sqlite3 module lets
        go of the GIL around every step; while the event loop's thread is busy
        (bulk senders deciding), the writer thread then waits up to a switch
        interval (5 ms) to get it back, per row: a 500-row insert took 1.2-1.8 s
        beside a spinning thread against 20-25 ms as one statement (ADR-0061).
        ``recorded_at`` is bound as a number, not read back from JSON text, so
        the stored float is exactly the one the caller's events carry.
        """
        at = rows[0]["recorded_at"]
        if not _SQLITE_JSON_INSERT or any(r["recorded_at"] != at for r in rows):
            conn.execute(_INSERT_PLAIN, rows)
            return
        packed = orjson.dumps(
            [[r["stream_id"], r["seq"], r["type"], r["data"], r["prev_hash"], r["hash"]] for r in rows]
        )
        conn.exec_driver_sql(_SQLITE_INSERT_JSON, (at, packed.decode("utf-8")))

    # -- per-request savepoint path

    def _one_in_savepoint(
        self,
        conn: Connection,
        req: Request,
        idx: int,
        results: list[Any],
        committed: list[StoredEvent],
        overlay: dict[str, tuple[int, str]],
        now: float,
    ) -> None:
        try:
            if isinstance(req, AppendRequest):
                with conn.begin_nested():
                    stored = self._append_one(conn, req, overlay, now)
                    if req.side_effect is not None:
                        req.side_effect(conn)
                if stored:
                    overlay[req.stream_id] = (stored[-1].seq, stored[-1].hash)
                    committed.extend(stored)
                results[idx] = stored
            else:
                with conn.begin_nested():
                    results[idx] = req.fn(conn)
        except _Conflict as c:
            actual = last_event(conn, req.stream_id)[0]
            self._heads.pop(req.stream_id, None)
            overlay.pop(req.stream_id, None)
            err = ConcurrencyError(req.stream_id, req.expected_seq, actual)
            err.__cause__ = c.__cause__
            results[idx] = err
        except ConcurrencyError as e:
            if isinstance(req, AppendRequest):
                self._heads.pop(req.stream_id, None)
            results[idx] = e
        except BaseException as e:
            if is_fatal_db_error(e, conn) or not conn.in_transaction():
                raise
            results[idx] = e

    def _append_one(
        self,
        conn: Connection,
        req: AppendRequest,
        overlay: dict[str, tuple[int, str]],
        now: float,
    ) -> list[StoredEvent]:
        sid = req.stream_id
        head = overlay.get(sid)
        fresh = head is not None  # overlay entries were written in this transaction
        if head is None:
            head = self._heads.get(sid)
        if head is None:
            head = last_event(conn, sid)
            fresh = True
        if req.expected_seq != head[0] and not fresh:
            head = last_event(conn, sid)  # the cache may be stale: ask the database
        if req.expected_seq != head[0]:
            raise ConcurrencyError(sid, req.expected_seq, head[0])
        if not req.events:
            return []
        rows: list[dict[str, Any]] = []
        chain_rows(req, head, now, rows)
        try:
            positions = self._insert_rows(conn, rows)
        except sa_exc.IntegrityError as e:
            raise _Conflict() from e
        return [
            StoredEvent(pos, sid, r["seq"], r["type"], ev.data, now, r["prev_hash"], r["hash"])
            for pos, r, ev in zip(positions, rows, req.events)
        ]

    def _remember(self, heads: dict[str, tuple[int, str]]) -> None:
        cache = self._heads
        for sid, head in heads.items():
            cache[sid] = head
            cache.move_to_end(sid)
        while len(cache) > self.HEAD_CACHE_SIZE:
            cache.popitem(last=False)

    def forget_heads(self) -> None:
        self._heads.clear()


_INSERT_ONE = _E.insert().returning(_E.c.position)

_PG_INSERT_UNNEST = (
    "INSERT INTO events (stream_id, seq, type, data, recorded_at, prev_hash, hash) "
    "SELECT u.stream_id, u.seq, u.type, u.data, u.recorded_at, u.prev_hash, u.hash "
    "FROM unnest(%(sid)b::text[], %(seq)b::int[], %(type)b::text[], %(data)b::text[], "
    "%(at)b::float8[], %(prev)b::text[], %(hash)b::text[]) WITH ORDINALITY "
    "AS u(stream_id, seq, type, data, recorded_at, prev_hash, hash, ord) "
    "ORDER BY u.ord "
    "RETURNING position, stream_id, seq"
)
_INSERT_PLAIN = _E.insert()

#: SQLite 3.38 has ``->>`` (a JSON value as an SQL value); older libraries take
#: the executemany above.
_SQLITE_JSON_INSERT = sqlite3.sqlite_version_info >= (3, 38, 0)
_SQLITE_INSERT_JSON = (
    "INSERT INTO events (stream_id, seq, type, data, recorded_at, prev_hash, hash) "
    "SELECT value->>0, value->>1, value->>2, value->>3, ?, value->>4, value->>5 "
    "FROM json_each(?) ORDER BY key"
)
