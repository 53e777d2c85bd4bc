"""How journal streams are named: ``channel:<slug>``, ``session:<id>``, ``tokens``.

One home for the naming, so the actors that write streams, the tailer that
routes other processes' events and the journal's queries that filter by
prefix cannot drift apart.
"""

from __future__ import annotations

CHANNEL_PREFIX = "channel:"
SESSION_PREFIX = "session:"
TOKENS = "tokens"


def channel_stream(name: str) -> str:
    """The stream of channel ``name`` (a checked slug)."""
    return CHANNEL_PREFIX + name


def session_stream(session_id: str) -> str:
    return SESSION_PREFIX + session_id


def channel_of(stream_id: str) -> str | None:
    """The channel a stream belongs to, or ``None`` for any other stream."""
    return stream_id[len(CHANNEL_PREFIX) :] if stream_id.startswith(CHANNEL_PREFIX) else None


def session_of(stream_id: str) -> str | None:
    """The session id of a session stream, or ``None`` for any other stream."""
    return stream_id[len(SESSION_PREFIX) :] if stream_id.startswith(SESSION_PREFIX) else None
