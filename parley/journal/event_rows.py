"""Event rows on a connection: stream heads, hash-chained rows, rows to events.

The small pieces the batched append (:mod:`.batch`), the single-transaction
paths of :class:`~parley.journal.store.JournalStore` and the session side
tables share.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import orjson
import sqlalchemy as sa
from sqlalchemy.engine import Connection

from . import schema
from .engine import is_postgres
from .hashing import GENESIS_HASH, compute_hash
from .requests import AppendRequest
from .types import StoredEvent

_E = schema.events


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
