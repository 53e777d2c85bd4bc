"""Session side tables: turn leases and start Idempotency-Key reservations.

The session service decides *when* to take or give back a lease; the rows
and the compare-and-set live here (ADR-0026). Every write runs on the
connection of one savepoint of a write batch (:meth:`Journal.take_lease`,
:meth:`Journal.reserve_start_key`), or as the :class:`~.effects.ReleaseLease`
effect of a turn's commit, where a moved epoch rolls the commit back.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from . import schema
from .errors import ConcurrencyError

__all__ = [
    "Lease",
    "cas_lease",
    "get_lease",
    "lease_and_head",
    "release_lease",
    "reserve_start_key",
    "take_lease",
]

#: What :func:`take_lease` answers: the new epoch, ``None`` (held elsewhere)
#: or ``"moved"`` (the stream is past the caller's seq; nothing was taken).
TakeResult = int | Literal["moved"] | None


@dataclass(frozen=True, slots=True)
class Lease:
    session_id: str
    holder: str
    expires_at: float
    epoch: int

    def held_by_other(self, holder: str, now: float, holder_is_dead: Callable[[str], bool]) -> bool:
        """True while someone other than ``holder`` holds it live."""
        return bool(self.holder) and self.holder != holder and self.expires_at > now and not holder_is_dead(self.holder)


def get_lease(conn: Connection, session_id: str) -> Lease | None:
    t = schema.session_leases
    row = conn.execute(
        sa.select(t.c.holder, t.c.expires_at, t.c.epoch).where(t.c.session_id == session_id)
    ).first()
    return Lease(session_id, row[0], row[1], row[2]) if row is not None else None


def _insert(conn: Connection, table: sa.Table):
    from .store import _dialect_insert

    return _dialect_insert(conn, table)


def cas_lease(
    conn: Connection, session_id: str, *, expected_epoch: int, holder: str, expires_at: float
) -> int:
    """Compare-and-set a session lease; returns the new epoch.

    ``expected_epoch`` is 0 when no lease row exists yet. On mismatch raises
    ``ConcurrencyError("lease:<id>", expected_epoch, actual_epoch)``.
    """
    t = schema.session_leases
    new_epoch = expected_epoch + 1
    if expected_epoch == 0:
        stmt = (
            _insert(conn, t)
            .values(session_id=session_id, holder=holder, expires_at=expires_at, epoch=1)
            .on_conflict_do_nothing(index_elements=["session_id"])
            .returning(t.c.epoch)
        )
    else:
        stmt = (
            sa.update(t)
            .where(t.c.session_id == session_id, t.c.epoch == expected_epoch)
            .values(holder=holder, expires_at=expires_at, epoch=new_epoch)
            .returning(t.c.epoch)
        )
    if conn.execute(stmt).first() is None:
        current = get_lease(conn, session_id)
        raise ConcurrencyError(f"lease:{session_id}", expected_epoch, current.epoch if current else 0)
    return new_epoch


def take_lease(
    conn: Connection,
    session_id: str,
    *,
    holder: str,
    now: float,
    expires_at: float,
    base_seq: int,
    holder_is_dead: Callable[[str], bool],
) -> TakeResult:
    """Take the lease of ``session:<id>`` unless another live holder has it or
    the stream moved past ``base_seq``; one transaction, so both checks hold
    at the moment of the compare-and-set."""
    from .store import last_event

    lease = get_lease(conn, session_id)
    if lease is not None and lease.held_by_other(holder, now, holder_is_dead):
        return None
    if last_event(conn, f"session:{session_id}")[0] != base_seq:
        return "moved"
    expected = 0 if lease is None else lease.epoch
    return cas_lease(conn, session_id, expected_epoch=expected, holder=holder, expires_at=expires_at)


def release_lease(conn: Connection, session_id: str, epoch: int) -> None:
    """Clear our lease; ``ConcurrencyError`` if its epoch moved (someone took it)."""
    t = schema.session_leases
    result = conn.execute(
        sa.update(t).where(t.c.session_id == session_id, t.c.epoch == epoch).values(holder="", expires_at=0.0)
    )
    if result.rowcount != 1:
        raise ConcurrencyError(f"lease:{session_id}", epoch, -1)


def reserve_start_key(conn: Connection, key: str, expected_old: str | None, session_id: str) -> bool:
    """Point the start key ``key`` at ``session_id``: first writer wins when
    ``expected_old`` is None, else only if it still names ``expected_old``."""
    from .store import put_meta_if_absent

    if expected_old is None:
        return put_meta_if_absent(conn, key, session_id) == session_id
    m = schema.meta
    result = conn.execute(sa.update(m).where(m.c.key == key, m.c.value == expected_old).values(value=session_id))
    return result.rowcount == 1


def lease_and_head(engine: Engine, session_id: str) -> tuple[Lease | None, int]:
    """The session's lease and its stream's last seq, in one read."""
    from .store import last_event

    with engine.connect() as conn:
        return get_lease(conn, session_id), last_event(conn, f"session:{session_id}")[0]
