"""Fold every stream of a journal with today's domain code (for old-journal checks)."""

from __future__ import annotations

from typing import Any

from parley.domain import channel as channel_rules
from parley.domain import session_state
from parley.journal.store import JournalStore


def fold_all(engine) -> dict[str, Any]:
    store = JournalStore(engine)
    streams: dict[str, list] = {}
    position = 0
    while True:
        events = store.read_all(position, 1000)
        if not events:
            break
        for event in events:
            streams.setdefault(event.stream_id, []).append(event)
        position = events[-1].position
    out: dict[str, Any] = {}
    for stream_id, events in sorted(streams.items()):
        if stream_id.startswith("channel:"):
            state = channel_rules.ChannelState(stream_id.split(":", 1)[1])
            for event in events:
                channel_rules.apply(state, event.type, event.data)
            out[stream_id] = channel_rules.to_snapshot(state)
        elif stream_id.startswith("session:"):
            folded = None
            for event in events:
                folded = session_state.apply(folded, event.type, event.data)
            out[stream_id] = session_state.to_snapshot(folded)
        else:
            out[stream_id] = [[e.type, e.data] for e in events]
    return out
