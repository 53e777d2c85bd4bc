"""What the group-commit writer is asked to do, and what a batch answers.

An :class:`AppendRequest` is encoded once when it is made (its bytes are
what gets hashed and stored); a :class:`CallRequest` is journal-internal (a
typed operation's write on the batch connection). Both run in one savepoint
of a batch each, so a failing request is rolled back alone.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.engine import Connection

from .hashing import encode_data
from .types import NewEvent, StoredEvent

SideEffect = Callable[[Connection], Any]


@dataclass(slots=True)
class AppendRequest:
    """One append: events for one stream at an expected version.

    ``expected_seq`` is the stream's last ``seq`` the caller decided against
    (0 for a new stream). ``side_effect(conn)`` runs in the same savepoint,
    after the events are inserted.
    """

    stream_id: str
    events: Sequence[NewEvent]
    expected_seq: int
    side_effect: SideEffect | None = None
    encoded: list[bytes] = field(default_factory=list)

    @classmethod
    def create(
        cls,
        stream_id: str,
        events: Iterable[NewEvent],
        expected_seq: int,
        side_effect: SideEffect | None = None,
    ) -> AppendRequest:
        evs = checked_events(stream_id, events, expected_seq)
        return cls(stream_id, evs, expected_seq, side_effect, [encode_data(ev.data) for ev in evs])


def checked_events(stream_id: str, events: Iterable[NewEvent], expected_seq: int) -> list[NewEvent]:
    """The arguments of an append, checked the same way by every backend (ValueError/TypeError)."""
    if not isinstance(stream_id, str) or not stream_id:
        raise ValueError("stream_id must be a non-empty string")
    if not isinstance(expected_seq, int) or expected_seq < 0:
        raise ValueError("expected_seq must be an int >= 0")
    evs = list(events)
    for ev in evs:
        if not isinstance(ev, NewEvent):
            raise TypeError(f"events must be NewEvent, not {type(ev).__name__}")
        if not isinstance(ev.type, str) or not ev.type:
            raise ValueError("event type must be a non-empty string")
    return evs


@dataclass(slots=True)
class CallRequest:
    """Run ``fn(conn)`` in its own savepoint of a write batch; result = its return."""

    fn: SideEffect


Request = AppendRequest | CallRequest


@dataclass(slots=True)
class BatchOutcome:
    #: Per request: list[StoredEvent] (append), the return value (call), or
    #: the exception that failed that request.
    results: list[Any]
    #: Every event committed by the batch, in position order.
    committed: list[StoredEvent]
    heads: dict[str, tuple[int, str]]


class StaleConnection(Exception):
    """The write connection was found dead before the batch wrote anything
    (e.g. the server closed an idle connection); retrying the whole batch on a
    fresh connection is safe."""
