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
from collections.abc import Callable, Iterable
from typing import Any

import orjson
import sqlalchemy as sa
from sqlalchemy.engine import Connection

from . import schema
from .batch import WRITE_LOCK_KEY, BatchAppender
from .engine import make_engine
from .event_rows import _dialect_insert, chain_rows, last_event, read_heads, row_to_event, rows_to_events
from .failures import is_fatal_db_error, unavailable
from .hashing import GENESIS_HASH, compute_hash, encode_data
from .requests import AppendRequest, BatchOutcome, CallRequest, Request, SideEffect, StaleConnection
from .side_tables import (
    WRITER_BUSY_TIMEOUT_MS,
    artifact_sizes,
    delete_meta,
    get_artifact,
    get_meta,
    list_artifacts,
    prepare_writer_connection,
    probe_write,
    put_artifact,
    put_meta_if_absent,
    read_meta,
    remove_meta,
    set_meta,
)
from .types import NewEvent, Snapshot, StoredEvent, VerifyReport

# The names below were all defined here before the split (ADR-0027); the
# tools, tests and older call sites keep importing them from this module.
__all__ = [
    "GENESIS_HASH",
    "WRITER_BUSY_TIMEOUT_MS",
    "WRITE_LOCK_KEY",
    "AppendRequest",
    "BatchOutcome",
    "CallRequest",
    "JournalStore",
    "Request",
    "SideEffect",
    "StaleConnection",
    "artifact_sizes",
    "chain_rows",
    "compute_hash",
    "delete_meta",
    "encode_data",
    "event_hash_at",
    "get_artifact",
    "get_meta",
    "is_fatal_db_error",
    "last_event",
    "list_artifacts",
    "load_checked_snapshot",
    "load_snapshot",
    "prepare_writer_connection",
    "probe_write",
    "put_artifact",
    "put_meta_if_absent",
    "read_heads",
    "read_meta",
    "remove_meta",
    "row_to_event",
    "rows_to_events",
    "save_snapshot",
    "set_meta",
    "snapshot_digest",
    "unavailable",
]

_E = schema.events
_EVENT_COLUMNS = schema.EVENT_COLUMNS


# --------------------------------------------------------------------------- the store


class JournalStore(BatchAppender):
    """Sync access to the journal tables of one database.

    Thread-safety: read methods may be called from any thread (each opens its
    own connection); the batched append and the per-stream head cache
    (:class:`~parley.journal.batch.BatchAppender`) belong to one writer
    thread at a time.
    """

    @classmethod
    def open(cls, url: str, **engine_kwargs: Any) -> JournalStore:
        return cls(make_engine(url, **engine_kwargs))

    def dispose(self) -> None:
        self.engine.dispose()

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
