"""Read models the server needs at start, answered by one query each.

The channel directory must not replay every channel to learn which exist and
how long they are: the first event of each ``channel:*`` stream is its
descriptor, and its head is the count of its ``message`` events.
"""

from __future__ import annotations

from typing import Any

import orjson
import sqlalchemy as sa

from . import migrate, schema

_E = schema.events


def channel_index(engine) -> list[tuple[str, dict[str, Any], int, bool, int]]:
    """``(stream_id, first event data, head, archived, last seq)`` in creation order."""
    with engine.connect() as conn:
        firsts = conn.execute(
            sa.select(_E.c.stream_id, _E.c.data)
            .where(_E.c.seq == 1, _E.c.type == "channel_created")
            .order_by(_E.c.position)
        ).all()
        heads = dict(
            conn.execute(
                sa.select(_E.c.stream_id, sa.func.count())
                .where(_E.c.type == "message", _E.c.stream_id.like("channel:%"))
                .group_by(_E.c.stream_id)
            ).all()
        )
        last_seqs = dict(
            conn.execute(
                sa.select(_E.c.stream_id, sa.func.max(_E.c.seq))
                .where(_E.c.stream_id.like("channel:%"))
                .group_by(_E.c.stream_id)
            ).all()
        )
        archived = {
            row[0]
            for row in conn.execute(
                sa.select(_E.c.stream_id).where(_E.c.type == "channel_archived")
            ).all()
        }
    return [
        (stream, orjson.loads(data), heads.get(stream, 0), stream in archived, last_seqs.get(stream, 1))
        for stream, data in firsts
    ]


def total_artifact_bytes(engine) -> int:
    with engine.connect() as conn:
        total = conn.execute(sa.select(sa.func.coalesce(sa.func.sum(schema.artifacts.c.size), 0))).scalar()
    return int(total or 0)


def readiness(engine) -> str | None:
    """``None`` when the database answers and is at the Alembic head, else why not."""
    try:
        if not migrate.is_at_head(engine):
            return "database schema is not at the current revision; run `parley db upgrade`"
    except Exception as exc:  # any failure to answer means not ready
        return f"database unavailable ({type(exc).__name__})"
    return None
