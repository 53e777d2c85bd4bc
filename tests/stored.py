"""What a database holds, read back for tests that compare journals row for row."""

from __future__ import annotations

import sqlalchemy as sa

from parley.journal.engine import make_engine


def event_rows(url: str) -> list[tuple]:
    """Every ``events`` row of the database at ``url``, in position order."""
    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            return [tuple(r) for r in conn.execute(sa.text("SELECT * FROM events ORDER BY position"))]
    finally:
        engine.dispose()
