"""Seatbelt windows and session slots shared by every process on one database.

Each server keeps its seatbelt in memory (``domain/seatbelt.py``); on its own
that lets N processes allow N x every cap (issue 20, item 10). On Postgres
the actor therefore passes the posts and creates it just admitted as a
:class:`WindowCharge` list, and :func:`charge_windows` checks and records
them in the ``meta`` table inside the very transaction that appends them.
Every write batch holds the journal's advisory write lock (ADR-0002), so
this read-modify-write is atomic across processes: a window can never hold
more than its cap, and a refused charge rolls its append back with it.

Session slots do the same for ``session_limit``: a start reserves a slot
(``session-slot/<identity digest>/<session id>`` -> expiry) after counting
the identity's open sessions in the journal and the live slots of starts
still running anywhere.

Rows are keyed by a digest (ids can be long) and hold a JSON list of
millisecond stamps. ADR-0025 describes the boundaries.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence

import orjson
import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.engine import Connection

from . import schema
from .effects import WindowCharge
from .errors import WindowFull
from .store import _dialect_insert, set_meta
from .stream_ids import SESSION_PREFIX

__all__ = [
    "WindowCharge",
    "WindowFull",
    "charge_windows",
    "release_session_slot",
    "reserve_session_slot",
]


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:40]


def window_key(scope: str, key: str) -> str:
    return f"seatbelt/{scope}/{_digest(key)}"


def charge_windows(charges: Sequence[WindowCharge], window_ms: int) -> Callable[[Connection], None]:
    """The append side effect that records ``charges`` or raises :class:`WindowFull`.

    Pruning and the cap follow the in-memory seatbelt: stamps ``<= now -
    window`` are dropped (now = the newest stamp charged) and a window may
    hold at most ``cap`` live stamps. Two statements per append whatever the
    number of windows: one read of every row, one multi-row upsert.
    """

    def charge(conn: Connection) -> None:
        m = schema.meta
        keys = {window_key(item.scope, item.key): item for item in charges}
        stored = dict(conn.execute(sa.select(m.c.key, m.c.value).where(m.c.key.in_(keys))).all())
        rows = []
        for meta_key, item in keys.items():
            now_ms = max(item.stamps)
            old = stored.get(meta_key)
            live = [s for s in (orjson.loads(old) if old else []) if s > now_ms - window_ms]
            if len(live) + len(item.stamps) > item.cap:
                raise WindowFull(item.scope, item.key, sorted(live))
            rows.append({"key": meta_key, "value": orjson.dumps(sorted(live + list(item.stamps))).decode()})
        if rows:
            stmt = _dialect_insert(conn, m).values(rows)
            conn.execute(stmt.on_conflict_do_update(index_elements=["key"], set_={"value": stmt.excluded.value}))

    return charge


def _slot_prefix(agent_id: str, owner: str) -> str:
    return f"session-slot/{_digest(agent_id + chr(0) + owner)}/"


def _sessions_of(conn: Connection, agent_id: str, owner: str, started: str, closed: str) -> tuple[set[str], set[str]]:
    """Stream ids of the identity's started sessions, and of those not closed (Postgres)."""
    e = schema.events
    data = sa.cast(e.c.data, JSONB)
    streams = set(
        conn.execute(
            sa.select(e.c.stream_id).where(
                schema.NOT_MESSAGE,
                e.c.type == started,
                data["agent_id"].astext == agent_id,
                data["owner"].astext == owner,
            )
        ).scalars()
    )
    open_streams = set(streams)
    if streams:
        open_streams -= set(
            conn.execute(
                sa.select(e.c.stream_id).where(schema.NOT_MESSAGE, e.c.type == closed, e.c.stream_id.in_(streams))
            ).scalars()
        )
    return streams, open_streams


def reserve_session_slot(
    agent_id: str,
    owner: str,
    session_id: str,
    *,
    limit: int,
    now_ms: int,
    expires_ms: int,
    started_type: str = "session_started",
    closed_type: str = "session_closed",
) -> Callable[[Connection], bool]:
    """A write that reserves a start slot for ``session_id``; False when the identity is at ``limit``.

    A slot stops counting once its session's ``session_started`` is in the
    journal (it is then an open session) or once it expires (its start
    crashed); both are deleted here, lazily.
    """

    def reserve(conn: Connection) -> bool:
        m = schema.meta
        prefix = _slot_prefix(agent_id, owner)
        all_streams, open_streams = _sessions_of(conn, agent_id, owner, started_type, closed_type)
        started = {s.removeprefix(SESSION_PREFIX) for s in all_streams}
        stale, pending = [], 0
        for key, value in conn.execute(sa.select(m.c.key, m.c.value).where(m.c.key.startswith(prefix, autoescape=True))):
            sid = key[len(prefix) :]
            if int(value) <= now_ms or sid in started:
                stale.append(key)
            else:
                pending += 1
        if stale:
            conn.execute(sa.delete(m).where(m.c.key.in_(stale)))
        if len(open_streams) + pending >= limit:
            return False
        set_meta(conn, prefix + session_id, str(expires_ms))
        return True

    return reserve


def release_session_slot(agent_id: str, owner: str, session_id: str) -> Callable[[Connection], None]:
    """A write that gives back the slot of a start that did not commit."""

    def release(conn: Connection) -> None:
        m = schema.meta
        conn.execute(sa.delete(m).where(m.c.key == _slot_prefix(agent_id, owner) + session_id))

    return release
