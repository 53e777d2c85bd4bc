"""SQLAlchemy Core tables of the journal.

These mirror ``migrations/versions``; the database schema itself is created
only by Alembic (``parley.journal.migrate.upgrade``), never by
``metadata.create_all``. ``tests/journal/test_migrations.py`` checks that the
two agree.
"""

from __future__ import annotations

import sqlalchemy as sa

metadata = sa.MetaData()

#: BIGINT on Postgres; on SQLite exactly ``INTEGER PRIMARY KEY`` (the rowid).
PositionType = sa.BigInteger().with_variant(sa.Integer(), "sqlite")

events = sa.Table(
    "events",
    metadata,
    sa.Column("position", PositionType, primary_key=True, autoincrement=True),
    sa.Column("stream_id", sa.Text(), nullable=False),
    sa.Column("seq", sa.Integer(), nullable=False),
    sa.Column("type", sa.Text(), nullable=False),
    sa.Column("data", sa.Text(), nullable=False),
    sa.Column("recorded_at", sa.Double(), nullable=False),
    sa.Column("prev_hash", sa.Text(), nullable=False),
    sa.Column("hash", sa.Text(), nullable=False),
    sa.UniqueConstraint("stream_id", "seq", name="uq_events_stream_seq"),
    # The events that are not messages, by type (migration 0002): what the
    # start-up read models look for. Used by queries carrying NOT_MESSAGE.
    sa.Index(
        "ix_events_nonmessage",
        "type",
        "stream_id",
        sqlite_where=sa.text("type <> 'message'"),
        postgresql_where=sa.text("type <> 'message'"),
    ),
    sqlite_autoincrement=True,
)

snapshots = sa.Table(
    "snapshots",
    metadata,
    sa.Column("stream_id", sa.Text(), primary_key=True),
    sa.Column("seq", sa.Integer(), nullable=False),
    sa.Column("data", sa.Text(), nullable=False),
    sa.Column("recorded_at", sa.Double(), nullable=False),
    # The hash of the event at ``seq`` and sha256(event_hash + "\n" + data)
    # (migration 0003, ADR-0023); NULL on rows written before it.
    sa.Column("event_hash", sa.Text(), nullable=True),
    sa.Column("digest", sa.Text(), nullable=True),
)

artifacts = sa.Table(
    "artifacts",
    metadata,
    sa.Column("channel", sa.Text(), primary_key=True),
    sa.Column("sha256", sa.Text(), primary_key=True),
    sa.Column("size", sa.Integer(), nullable=False),
    sa.Column("data", sa.LargeBinary(), nullable=False),
)

session_leases = sa.Table(
    "session_leases",
    metadata,
    sa.Column("session_id", sa.Text(), primary_key=True),
    sa.Column("holder", sa.Text(), nullable=False),
    sa.Column("expires_at", sa.Double(), nullable=False),
    sa.Column("epoch", sa.BigInteger(), nullable=False),
)

#: Every column of ``events`` in table order: a full event row.
EVENT_COLUMNS = (
    events.c.position,
    events.c.stream_id,
    events.c.seq,
    events.c.type,
    events.c.data,
    events.c.recorded_at,
    events.c.prev_hash,
    events.c.hash,
)

#: The literal term that lets a query use ``ix_events_nonmessage`` (SQLite
#: matches a partial index's WHERE term for term, and a bound parameter never
#: matches a literal).
NOT_MESSAGE = events.c.type != sa.literal_column("'message'")

meta = sa.Table(
    "meta",
    metadata,
    sa.Column("key", sa.Text(), primary_key=True),
    sa.Column("value", sa.Text(), nullable=False),
)

TABLE_NAMES = ("events", "snapshots", "artifacts", "session_leases", "meta")
