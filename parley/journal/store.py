"""The synchronous event store over a SQLAlchemy engine.

Used by the group-commit writer thread (:mod:`parley.journal.writer`), by the
reader threads of :class:`parley.journal.journal.Journal`, and directly by
CLI tools (``parley journal verify|export|import``).

Hash chain
----------
Every event stores ``prev_hash`` and ``hash`` where::

    hash = sha256_hex(prev_hash + "\\n" + stream_id + "\\n" + str(seq) + "\\n"
                      + type + "\\n" + data_text)

hashed as UTF-8, ``data_text`` being the stored JSON text exactly as written
(``orjson.dumps(data)``, key order preserved, encoded once and never
re-encoded). The first event of a stream has ``prev_hash = ""`` (the empty
string, not 64 zeros). :meth:`JournalStore.verify` recomputes every chain.

Batches
-------
:meth:`JournalStore.run_batch` commits many requests in ONE transaction, each
request inside its own SAVEPOINT so that one request's conflict or failing
side effect rolls back that request alone. A per-stream cache of
``(last seq, last hash)`` saves a read per append; it is only updated after a
successful commit and is re-checked against the database whenever a request's
``expected_seq`` disagrees with it, so a stale entry (another process
appended) costs one read, never a wrong answer. ``UNIQUE(stream_id, seq)``
stays the final arbiter across processes: an ``IntegrityError`` on insert
becomes :class:`ConcurrencyError`.
"""

from __future__ import annotations

import hashlib
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson
import sqlalchemy as sa
from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import Connection, Engine

from . import schema
from .engine import is_postgres, make_engine, write_engine
from .errors import ConcurrencyError, IntegrityFailure, JournalUnavailable
from .notify import channel_of, notify
from .types import NewEvent, Snapshot, StoredEvent, VerifyReport

#: ``pg_advisory_xact_lock`` key taken by every write batch on Postgres
#: ("parley" in ASCII).
WRITE_LOCK_KEY = 0x7061726C6579

GENESIS_HASH = ""

SideEffect = Callable[[Connection], Any]

_E = schema.events
_EVENT_COLUMNS = schema.EVENT_COLUMNS


# --------------------------------------------------------------------------- hashing


def compute_hash(prev_hash: str, stream_id: str, seq: int, type_: str, data: bytes | str) -> str:
    """The chain hash of one event (see module docstring)."""
    if isinstance(data, str):
        data = data.encode("utf-8")
    h = hashlib.sha256(
        f"{prev_hash}\n{stream_id}\n{seq}\n{type_}\n".encode("utf-8")
    )
    h.update(data)
    return h.hexdigest()


def encode_data(data: Any) -> bytes:
    """Encode event data once (orjson, insertion order preserved)."""
    if not isinstance(data, dict):
        raise TypeError(f"event data must be a dict, not {type(data).__name__}")
    return orjson.dumps(data)


# --------------------------------------------------------------------------- requests


@dataclass(slots=True)
class AppendRequest:
    """One append: events for one stream at an expected version.

    ``expected_seq`` is the stream's last ``seq`` the caller decided against
    (0 for a new stream). ``side_effect(conn)`` runs in the same savepoint,
    after the events are inserted.
    """

    stream_id: str
    events: Sequence[NewEvent]
    expected_seq: int
    side_effect: SideEffect | None = None
    encoded: list[bytes] = field(default_factory=list)

    @classmethod
    def create(
        cls,
        stream_id: str,
        events: Iterable[NewEvent],
        expected_seq: int,
        side_effect: SideEffect | None = None,
    ) -> AppendRequest:
        if not isinstance(stream_id, str) or not stream_id:
            raise ValueError("stream_id must be a non-empty string")
        if not isinstance(expected_seq, int) or expected_seq < 0:
            raise ValueError("expected_seq must be an int >= 0")
        evs = list(events)
        for ev in evs:
            if not isinstance(ev, NewEvent):
                raise TypeError(f"events must be NewEvent, not {type(ev).__name__}")
            if not isinstance(ev.type, str) or not ev.type:
                raise ValueError("event type must be a non-empty string")
        return cls(stream_id, evs, expected_seq, side_effect, [encode_data(ev.data) for ev in evs])


@dataclass(slots=True)
class CallRequest:
    """Run ``fn(conn)`` in its own savepoint of a write batch; result = its return."""

    fn: SideEffect


Request = AppendRequest | CallRequest


@dataclass(slots=True)
class BatchOutcome:
    #: Per request: list[StoredEvent] (append), the return value (call), or
    #: the exception that failed that request.
    results: list[Any]
    #: Every event committed by the batch, in position order.
    committed: list[StoredEvent]
    heads: dict[str, tuple[int, str]]


class StaleConnection(Exception):
    """The write connection was found dead before the batch wrote anything
    (e.g. the server closed an idle connection); retrying the whole batch on a
    fresh connection is safe."""


class _Conflict(Exception):
    """Internal: the events insert hit UNIQUE(stream_id, seq)."""


# --------------------------------------------------------------------------- helpers on a connection


def _dialect_insert(conn: Connection, table: sa.Table):
    if is_postgres(conn.engine):
        from sqlalchemy.dialects.postgresql import insert
    else:
        from sqlalchemy.dialects.sqlite import insert
    return insert(table)


def last_event(conn: Connection, stream_id: str) -> tuple[int, str]:
    """``(last seq, last hash)`` of a stream, ``(0, "")`` if it has no events."""
    row = conn.execute(
        sa.select(_E.c.seq, _E.c.hash)
        .where(_E.c.stream_id == stream_id)
        .order_by(_E.c.seq.desc())
        .limit(1)
    ).first()
    return (row[0], row[1]) if row is not None else (0, GENESIS_HASH)


def read_heads(conn: Connection, stream_ids: Iterable[str]) -> dict[str, tuple[int, str]]:
    """``{stream_id: (last seq, last hash)}`` for many streams in one query
    (``(0, "")`` for streams without events)."""
    ids = list(stream_ids)
    heads = {sid: (0, GENESIS_HASH) for sid in ids}
    for k in range(0, len(ids), 500):
        chunk = ids[k : k + 500]
        last = (
            sa.select(_E.c.stream_id, sa.func.max(_E.c.seq).label("seq"))
            .where(_E.c.stream_id.in_(chunk))
            .group_by(_E.c.stream_id)
            .subquery()
        )
        rows = conn.execute(
            sa.select(_E.c.stream_id, _E.c.seq, _E.c.hash).join(
                last, sa.and_(_E.c.stream_id == last.c.stream_id, _E.c.seq == last.c.seq)
            )
        )
        for sid, seq, h in rows:
            heads[sid] = (seq, h)
    return heads


def _is_plain(req: Request) -> bool:
    return isinstance(req, AppendRequest) and req.side_effect is None


def chain_rows(
    req: AppendRequest, head: tuple[int, str], now: float, rows: list[dict[str, Any]]
) -> tuple[int, str]:
    """Append the ``events`` rows of ``req`` after ``head`` = ``(seq, hash)`` to ``rows``,
    each hash chained to the one before; return the new head."""
    seq, prev = head
    sid = req.stream_id
    for ev, data in zip(req.events, req.encoded):
        seq += 1
        h = compute_hash(prev, sid, seq, ev.type, data)
        rows.append(
            {
                "stream_id": sid,
                "seq": seq,
                "type": ev.type,
                "data": data.decode("utf-8"),
                "recorded_at": now,
                "prev_hash": prev,
                "hash": h,
            }
        )
        prev = h
    return seq, prev


def rows_to_events(rows: Iterable[Sequence[Any]]) -> list[StoredEvent]:
    """Rows of the eight event columns (in table order) to StoredEvents."""
    loads = orjson.loads
    return [
        StoredEvent(pos, sid, seq, type_, loads(data), at, prev, h)
        for pos, sid, seq, type_, data, at, prev, h in rows
    ]


def row_to_event(row: Sequence[Any]) -> StoredEvent:
    return StoredEvent(
        row[0], row[1], row[2], row[3], orjson.loads(row[4]), row[5], row[6], row[7]
    )


def put_artifact(conn: Connection, channel: str, sha256: str, data: bytes) -> bool:
    """Store content-addressed bytes; True if new, False if already present.

    Raises ValueError if ``sha256`` is not the digest of ``data``.
    """
    if hashlib.sha256(data).hexdigest() != sha256:
        raise ValueError("artifact bytes do not match their sha256")
    stmt = (
        _dialect_insert(conn, schema.artifacts)
        .values(channel=channel, sha256=sha256, size=len(data), data=bytes(data))
        .on_conflict_do_nothing(index_elements=["channel", "sha256"])
        .returning(schema.artifacts.c.size)
    )
    # RETURNING, not rowcount: psycopg reports -1 for INSERT … ON CONFLICT here
    return conn.execute(stmt).first() is not None


def get_artifact(conn: Connection, channel: str, sha256: str) -> bytes | None:
    """The bytes stored under ``sha256``, checked against it on every read
    (≤ 1 MiB: about a millisecond); :class:`IntegrityFailure` if they differ."""
    a = schema.artifacts
    row = conn.execute(
        sa.select(a.c.data).where(a.c.channel == channel, a.c.sha256 == sha256)
    ).first()
    if row is None:
        return None
    data = bytes(row[0])
    if hashlib.sha256(data).hexdigest() != sha256:
        raise IntegrityFailure(f"artifact {sha256[:12]} of {channel} does not match its sha256")
    return data


def list_artifacts(conn: Connection, channel: str) -> dict[str, int]:
    """``{sha256: size}`` of one channel's artifacts."""
    a = schema.artifacts
    rows = conn.execute(sa.select(a.c.sha256, a.c.size).where(a.c.channel == channel))
    return {sha: size for sha, size in rows}


def artifact_sizes(conn: Connection) -> dict[str, int]:
    """Total artifact bytes per channel."""
    a = schema.artifacts
    rows = conn.execute(sa.select(a.c.channel, sa.func.sum(a.c.size)).group_by(a.c.channel))
    return {ch: int(total) for ch, total in rows}


def get_meta(conn: Connection, key: str) -> str | None:
    m = schema.meta
    return conn.execute(sa.select(m.c.value).where(m.c.key == key)).scalar()


def probe_write(conn: Connection) -> None:
    """A real, harmless write (the ``write-probe`` meta row): fails as a real write
    would, on a full disk or a database locked past the busy timeout."""
    stmt = _dialect_insert(conn, schema.meta).values(key="write-probe", value=str(time.time()))
    conn.execute(stmt.on_conflict_do_update(index_elements=["key"], set_={"value": stmt.excluded.value}))


#: How long the server's writer waits for a SQLite write lock held by another
#: process before the batch fails with 503 (ADR-0006): a locked file answers
#: within a second instead of hanging requests for the 10 s connection default.
WRITER_BUSY_TIMEOUT_MS = 1000


def prepare_writer_connection(conn: Connection) -> None:
    if conn.dialect.name == "sqlite":
        # On the driver connection: through SQLAlchemy it would begin a transaction.
        conn.connection.driver_connection.execute(f"PRAGMA busy_timeout={WRITER_BUSY_TIMEOUT_MS}")


def put_meta_if_absent(conn: Connection, key: str, value: str) -> str:
    """First write wins (across processes); returns the value now stored."""
    stmt = (
        _dialect_insert(conn, schema.meta)
        .values(key=key, value=value)
        .on_conflict_do_nothing(index_elements=["key"])
    )
    conn.execute(stmt)
    stored = get_meta(conn, key)
    assert stored is not None
    return stored


def delete_meta(conn: Connection, key: str) -> bool:
    """Remove a meta row; True if there was one."""
    m = schema.meta
    return conn.execute(sa.delete(m).where(m.c.key == key).returning(m.c.key)).first() is not None


def read_meta(engine: Engine, key: str) -> str | None:
    """``meta[key]`` in a connection of its own; None if absent or there is no
    ``meta`` table (an in-memory SQLite database, say)."""
    with engine.connect() as conn:
        if not sa.inspect(conn).has_table("meta"):
            return None
        return get_meta(conn, key)


def remove_meta(engine: Engine, key: str) -> bool:
    """Delete ``meta[key]`` in a transaction of its own; True if it was there."""
    with write_engine(engine).begin() as conn:
        return delete_meta(conn, key)


def set_meta(conn: Connection, key: str, value: str) -> None:
    stmt = _dialect_insert(conn, schema.meta).values(key=key, value=value)
    conn.execute(stmt.on_conflict_do_update(index_elements=["key"], set_={"value": value}))


def is_fatal_db_error(exc: BaseException, conn: Connection | None = None) -> bool:
    """True when ``exc`` means the connection/database is unusable."""
    if not isinstance(exc, Exception):
        return True  # KeyboardInterrupt, SystemExit, ...
    if isinstance(exc, (sa_exc.OperationalError, sa_exc.InterfaceError, sa_exc.InternalError)):
        return True
    if isinstance(exc, sa_exc.DBAPIError) and exc.connection_invalidated:
        return True
    if isinstance(exc, sa_exc.ResourceClosedError):
        return True
    if conn is not None and (conn.invalidated or conn.closed):
        return True
    return False


def unavailable(exc: BaseException) -> JournalUnavailable:
    """Wrap a database failure (the message never includes a URL)."""
    if isinstance(exc, JournalUnavailable):
        return exc
    orig = getattr(exc, "orig", None) or exc
    first_line = (str(orig).strip().splitlines() or [""])[0][:200]
    err = JournalUnavailable(f"journal database unavailable: {type(orig).__name__}: {first_line}")
    err.__cause__ = exc
    return err


# --------------------------------------------------------------------------- the store


class JournalStore:
    """Sync access to the journal tables of one database.

    Thread-safety: read methods may be called from any thread (each opens its
    own connection); :meth:`run_batch`/:meth:`append_batch` and the per-stream
    head cache belong to one writer thread at a time.
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

    @classmethod
    def open(cls, url: str, **engine_kwargs: Any) -> JournalStore:
        return cls(make_engine(url, **engine_kwargs))

    def dispose(self) -> None:
        self.engine.dispose()

    # ------------------------------------------------------------------ writes

    def run_batch(self, conn: Connection, requests: Sequence[Request]) -> BatchOutcome:
        """Commit ``requests`` in one transaction on ``conn`` (a write connection).

        Raises (after rollback) only for a failure of the whole batch; the
        caller should then treat every request as failed and discard ``conn``.
        """
        try:
            with conn.begin():
                try:
                    if self.is_postgres:
                        conn.execute(_PG_WRITE_LOCK, {"k": WRITE_LOCK_KEY})
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
        # executemany without RETURNING, then derive the positions. With the
        # write lock held (BEGIN IMMEDIATE) and AUTOINCREMENT, the rows of one
        # executemany get consecutive rowids ending at last_insert_rowid().
        conn.execute(_INSERT_PLAIN, rows)
        last = conn.exec_driver_sql("SELECT last_insert_rowid()").scalar_one()
        return list(range(last - len(rows) + 1, last + 1))

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

    def append(
        self,
        stream_id: str,
        events: Iterable[NewEvent],
        expected_seq: int,
        side_effect: SideEffect | None = None,
    ) -> list[StoredEvent]:
        """Append in a transaction of its own (CLI tools; not the hot path)."""
        return self._single(AppendRequest.create(stream_id, events, expected_seq, side_effect))

    def call(self, fn: SideEffect) -> Any:
        """Run ``fn(conn)`` in a write transaction of its own."""
        return self._single(CallRequest(fn))

    def _single(self, req: Request) -> Any:
        try:
            with self.write_engine.connect() as conn:
                outcome = self.run_batch(conn, [req])
        except BaseException as e:
            if is_fatal_db_error(e):
                raise unavailable(e) from e
            raise
        result = outcome.results[0]
        if isinstance(result, BaseException):
            raise result
        return result

    # ------------------------------------------------------------------ reads

    def read_stream(
        self, stream_id: str, after_seq: int = 0, limit: int | None = None
    ) -> list[StoredEvent]:
        stmt = (
            sa.select(*_EVENT_COLUMNS)
            .where(_E.c.stream_id == stream_id, _E.c.seq > after_seq)
            .order_by(_E.c.seq)
        )
        if limit is not None:
            stmt = stmt.limit(limit)
        with self.engine.connect() as conn:
            return rows_to_events(conn.execute(stmt).all())

    def read_all(self, after_position: int = 0, limit: int = 1000) -> list[StoredEvent]:
        stmt = (
            sa.select(*_EVENT_COLUMNS)
            .where(_E.c.position > after_position)
            .order_by(_E.c.position)
            .limit(limit)
        )
        with self.engine.connect() as conn:
            return rows_to_events(conn.execute(stmt).all())

    def last_seq(self, stream_id: str) -> int:
        with self.engine.connect() as conn:
            return last_event(conn, stream_id)[0]

    def last_position(self) -> int:
        with self.engine.connect() as conn:
            return conn.execute(sa.select(sa.func.max(_E.c.position))).scalar() or 0

    def count_events(self) -> int:
        with self.engine.connect() as conn:
            return conn.execute(sa.select(sa.func.count()).select_from(_E)).scalar_one()

    def ping(self) -> None:
        with self.engine.connect() as conn:
            conn.execute(sa.text("SELECT 1"))

    # ------------------------------------------------------------------ snapshots

    def save_snapshot(self, stream_id: str, seq: int, data: dict[str, Any]) -> None:
        self.call(lambda conn: save_snapshot(conn, stream_id, seq, data))

    def load_snapshot(self, stream_id: str) -> Snapshot | None:
        with self.engine.connect() as conn:
            return load_snapshot(conn, stream_id)

    def load_checked_snapshot(self, stream_id: str) -> tuple[Snapshot | None, str | None]:
        with self.engine.connect() as conn:
            return load_checked_snapshot(conn, stream_id)

    # ------------------------------------------------------------------ artifacts / meta

    def put_artifact(self, channel: str, sha256: str, data: bytes) -> bool:
        return self.call(lambda conn: put_artifact(conn, channel, sha256, data))

    def get_artifact(self, channel: str, sha256: str) -> bytes | None:
        with self.engine.connect() as conn:
            return get_artifact(conn, channel, sha256)

    def list_artifacts(self, channel: str) -> dict[str, int]:
        with self.engine.connect() as conn:
            return list_artifacts(conn, channel)

    def artifact_sizes(self) -> dict[str, int]:
        with self.engine.connect() as conn:
            return artifact_sizes(conn)

    def get_meta(self, key: str) -> str | None:
        with self.engine.connect() as conn:
            return get_meta(conn, key)

    def put_meta_if_absent(self, key: str, value: str) -> str:
        return self.call(lambda conn: put_meta_if_absent(conn, key, value))

    # ------------------------------------------------------------------ verify

    def verify(
        self,
        chunk: int = 5000,
        advance: Callable[[int], None] | None = None,
        heads: dict[str, tuple[int, str]] | None = None,
    ) -> VerifyReport:
        """Recompute every hash chain (streams in ``stream_id`` order).

        Checks per stream: ``seq`` runs 1, 2, 3… without gaps, each
        ``prev_hash`` equals the previous event's ``hash`` ("" for seq 1) and
        each ``hash`` matches the recomputed one. Stops at the first broken
        event. Reads in keyset-paginated chunks, so memory stays flat;
        ``advance(n)`` is told after each chunk (progress bars). ``heads``, if
        given, receives each verified stream's last ``(seq, hash)`` (anchors).
        """
        streams = events_checked = 0
        cur_stream: str | None = None
        expect_seq, prev = 1, GENESIS_HASH
        last_key: tuple[str, int] | None = None
        cols = (_E.c.position, _E.c.stream_id, _E.c.seq, _E.c.type, _E.c.data, _E.c.prev_hash, _E.c.hash)
        while True:
            stmt = sa.select(*cols).order_by(_E.c.stream_id, _E.c.seq).limit(chunk)
            if last_key is not None:
                stmt = stmt.where(
                    sa.or_(
                        _E.c.stream_id > last_key[0],
                        sa.and_(_E.c.stream_id == last_key[0], _E.c.seq > last_key[1]),
                    )
                )
            with self.engine.connect() as conn:
                rows = conn.execute(stmt).all()
            if not rows:
                break
            for position, sid, seq, type_, data, prev_hash, h in rows:
                if sid != cur_stream:
                    cur_stream, expect_seq, prev = sid, 1, GENESIS_HASH
                    streams += 1
                events_checked += 1
                reason = None
                if seq != expect_seq:
                    reason = f"seq {seq} where {expect_seq} was expected"
                elif prev_hash != prev:
                    reason = f"seq {seq}: prev_hash does not match the previous event's hash"
                elif compute_hash(prev_hash, sid, seq, type_, data) != h:
                    reason = f"seq {seq}: hash mismatch (event content was altered)"
                if reason is not None:
                    return VerifyReport(False, streams, events_checked, sid, position, reason)
                expect_seq, prev = seq + 1, h
                if heads is not None:
                    heads[sid] = (seq, h)
            if advance is not None:
                advance(len(rows))
            last_key = (rows[-1][1], rows[-1][2])
        return VerifyReport(True, streams, events_checked)


def snapshot_digest(event_hash: str, data_text: str) -> str:
    """``sha256(event_hash ‖ "\\n" ‖ data_text)``: binds a snapshot's bytes to the event it covers.

    Keyless on purpose (ADR-0023): it catches a snapshot edited on its own,
    not one whose writer also recomputed this digest; ``journal verify``
    catches that by folding the events.
    """
    return hashlib.sha256(f"{event_hash}\n{data_text}".encode("utf-8")).hexdigest()


def event_hash_at(conn: Connection, stream_id: str, seq: int) -> str | None:
    return conn.execute(sa.select(_E.c.hash).where(_E.c.stream_id == stream_id, _E.c.seq == seq)).scalar()


def save_snapshot(conn: Connection, stream_id: str, seq: int, data: dict[str, Any]) -> None:
    """Store the state folded up to ``seq``, bound to the hash of the event at ``seq``.

    With no event at ``seq`` (tools and tests write such rows) it is stored
    unbound, and activation never uses it.
    """
    s = schema.snapshots
    event_hash = event_hash_at(conn, stream_id, seq)
    text = encode_data(data).decode("utf-8")
    values = {
        "seq": seq,
        "data": text,
        "recorded_at": time.time(),
        "event_hash": event_hash,
        "digest": None if event_hash is None else snapshot_digest(event_hash, text),
    }
    stmt = _dialect_insert(conn, s).values(stream_id=stream_id, **values)
    conn.execute(stmt.on_conflict_do_update(index_elements=["stream_id"], set_=values))


def load_snapshot(conn: Connection, stream_id: str) -> Snapshot | None:
    """The stream's snapshot as stored, unchecked (tools; actors use :func:`load_checked_snapshot`)."""
    s = schema.snapshots
    row = conn.execute(sa.select(s.c.seq, s.c.data).where(s.c.stream_id == stream_id)).first()
    return Snapshot(stream_id, row[0], orjson.loads(row[1])) if row is not None else None


def load_checked_snapshot(conn: Connection, stream_id: str) -> tuple[Snapshot | None, str | None]:
    """``(snapshot, None)`` when it matches its chain, else ``(None, why)``.

    ``why`` is None too when there is no snapshot at all. Checks: the stored
    digest matches the data and event hash, and the stream's event at ``seq``
    has that hash (a rewritten or truncated chain no longer matches).
    """
    s = schema.snapshots
    row = conn.execute(
        sa.select(s.c.seq, s.c.data, s.c.event_hash, s.c.digest).where(s.c.stream_id == stream_id)
    ).first()
    if row is None:
        return None, None
    seq, text, event_hash, digest = row
    if event_hash is None or digest is None:
        return None, "unbound (written before schema revision 0003)"
    if snapshot_digest(event_hash, text) != digest:
        return None, "its digest does not match its data"
    actual = event_hash_at(conn, stream_id, seq)
    if actual is None:
        return None, f"the stream has no event at its seq {seq}"
    if actual != event_hash:
        return None, f"the event at its seq {seq} has another hash"
    try:
        return Snapshot(stream_id, seq, orjson.loads(text)), None
    except orjson.JSONDecodeError:
        return None, "its data is not valid JSON"


_INSERT_ONE = _E.insert().returning(_E.c.position)
_PG_WRITE_LOCK = sa.text("SELECT pg_advisory_xact_lock(:k)")

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
