"""The side tables next to ``events``: artifacts (content-addressed bytes) and ``meta``.

Functions of a connection, run by the writer inside a batch savepoint (or
in a transaction of their own by tools). Artifact bytes are checked against
their sha256 on the way in and on every read (ADR-0023). Snapshots live with
the store (:mod:`parley.journal.store`), leases in :mod:`.leases`, seatbelt
windows and session slots in :mod:`.windows`.
"""

from __future__ import annotations

import hashlib
import time

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from . import schema
from .engine import write_engine
from .errors import IntegrityFailure
from .event_rows import _dialect_insert


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
