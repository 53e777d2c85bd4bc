"""snapshots.event_hash and snapshots.digest: bind a snapshot to its chain

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-01

A snapshot row used to be trusted as it stood: one ``UPDATE snapshots`` made
the server serve forged state. Each snapshot now records the hash of the event
at its ``seq`` and ``sha256(event_hash ‖ "\\n" ‖ data)``; activation refuses a
snapshot whose digest or event hash does not match (ADR-0023). Nullable: rows
written before this revision carry neither and are ignored at activation
(the state is folded from the events and a bound snapshot replaces them).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("snapshots") as batch:
        batch.add_column(sa.Column("event_hash", sa.Text(), nullable=True))
        batch.add_column(sa.Column("digest", sa.Text(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("snapshots") as batch:
        batch.drop_column("digest")
        batch.drop_column("event_hash")
