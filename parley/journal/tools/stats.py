"""``parley journal stats``: counts, sizes and time range in one pass over per-stream aggregates."""

from __future__ import annotations

import heapq
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from .. import schema
from ..engine import is_postgres

_E = schema.events


def stream_kind(stream_id: str) -> str:
    """``channel`` of ``channel:x``; a stream id without a colon is its own kind."""
    return stream_id.split(":", 1)[0] if ":" in stream_id else stream_id


def journal_stats(engine: Engine, *, top: int = 10) -> dict[str, Any]:
    """Counts, sizes and time range of the journal.

    ``bytes`` is the UTF-8 size of the stored ``data`` texts.
    """
    if is_postgres(engine):
        size = sa.func.octet_length(_E.c.data)
    else:
        size = sa.func.length(sa.cast(_E.c.data, sa.LargeBinary))
    per_stream = (
        sa.select(
            _E.c.stream_id,
            sa.func.count(),
            sa.func.coalesce(sa.func.sum(size), 0),
            sa.func.max(_E.c.seq),
        )
        .group_by(_E.c.stream_id)
    )
    totals = sa.select(
        sa.func.min(_E.c.recorded_at),
        sa.func.max(_E.c.recorded_at),
        sa.func.min(_E.c.position),
        sa.func.max(_E.c.position),
    )
    streams = events = total_bytes = 0
    kinds: dict[str, dict[str, int]] = {}
    largest: list[tuple[int, int, str]] = []
    with engine.connect() as conn:
        for sid, n, nbytes, _last in conn.execute(per_stream):
            n, nbytes = int(n), int(nbytes)
            streams += 1
            events += n
            total_bytes += nbytes
            k = kinds.setdefault(stream_kind(sid), {"streams": 0, "events": 0, "bytes": 0})
            k["streams"] += 1
            k["events"] += n
            k["bytes"] += nbytes
            item = (n, nbytes, sid)
            if len(largest) < top:
                heapq.heappush(largest, item)
            else:
                heapq.heappushpop(largest, item)
        oldest, newest, first_pos, last_pos = conn.execute(totals).one()
        snapshots = conn.execute(sa.select(sa.func.count()).select_from(schema.snapshots)).scalar_one()
    largest.sort(key=lambda t: (-t[0], -t[1], t[2]))
    return {
        "streams": streams,
        "events": events,
        "bytes": total_bytes,
        "snapshots": int(snapshots),
        "first_position": first_pos,
        "last_position": last_pos,
        "oldest_recorded_at": oldest,
        "newest_recorded_at": newest,
        "kinds": dict(sorted(kinds.items())),
        "largest_streams": [{"stream_id": s, "events": n, "bytes": b} for n, b, s in largest],
    }
