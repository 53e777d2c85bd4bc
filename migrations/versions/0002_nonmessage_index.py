"""partial index events(type, stream_id) WHERE type <> 'message'

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-23

At start the server loads the channel directory
(``parley.journal.queries.channel_index``): the ``channel_created`` event of
every channel and the counts of the other non-message events of channel
streams. Without an index on ``type`` that was four full scans of ``events``:
3.2 s of a 4.6 s restart of a 1,000,000-event SQLite journal
(``benchmarks/state_bench.py restart``; 0.7 s after this revision).

Partial: message events, nearly all of a journal, are not indexed, so appends
of messages pay nothing for it (an index on every event cost the journal
writer 15-30% of its SQLite throughput in ``benchmarks/journal_bench.py``). A
query uses it when its WHERE clause carries the literal term
``type <> 'message'`` (SQLite matches partial-index terms literally;
Postgres proves implication and also uses it for ``type = 'x'``).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

NOT_MESSAGE = "type <> 'message'"


def upgrade() -> None:
    op.create_index(
        "ix_events_nonmessage",
        "events",
        ["type", "stream_id"],
        sqlite_where=sa.text(NOT_MESSAGE),
        postgresql_where=sa.text(NOT_MESSAGE),
    )


def downgrade() -> None:
    op.drop_index("ix_events_nonmessage", table_name="events")
