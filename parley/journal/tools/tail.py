"""``parley journal tail``: follow events as they commit, by position."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from .. import schema

_E = schema.events


def follow(
    engine: Engine,
    after_position: int,
    *,
    poll_interval: float = 0.25,
    max_events: int | None = None,
    batch: int = 1000,
    sleep: Callable[[float], None] = time.sleep,
) -> Iterator[sa.Row]:
    """Yield raw event rows after ``after_position`` as they commit, forever (or ``max_events``).

    Polls; positions are assigned in commit order by the writer (advisory lock
    on Postgres, the single SQLite writer), so a position-based tail does not
    skip a late commit.
    """
    seen = 0
    after = after_position
    while max_events is None or seen < max_events:
        limit = batch if max_events is None else min(batch, max_events - seen)
        stmt = sa.select(*schema.EVENT_COLUMNS).where(_E.c.position > after).order_by(_E.c.position).limit(limit)
        with engine.connect() as conn:
            rows = conn.execute(stmt).all()
        for row in rows:
            yield row
            after = row[0]
            seen += 1
        if len(rows) < limit:
            sleep(poll_interval)


def last_position(engine: Engine) -> int:
    with engine.connect() as conn:
        return conn.execute(sa.select(sa.func.max(_E.c.position))).scalar() or 0
