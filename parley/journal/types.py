"""Value types of the journal (frozen, slotted dataclasses)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True, slots=True)
class NewEvent:
    """An event to append. ``data`` must be JSON-serialisable by orjson."""

    type: str
    data: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class StoredEvent:
    """A committed event.

    ``position`` is the global order (strictly increasing in commit order;
    on Postgres there may be holes where a rolled-back insert drew a number).
    ``seq`` is 1-based and gap-free per stream.
    """

    position: int
    stream_id: str
    seq: int
    type: str
    data: dict[str, Any]
    recorded_at: float
    prev_hash: str
    hash: str


@dataclass(frozen=True, slots=True)
class Snapshot:
    """Folded state of ``stream_id`` up to and including ``seq``."""

    stream_id: str
    seq: int
    data: dict[str, Any]


@dataclass(frozen=True, slots=True)
class VerifyReport:
    """Result of recomputing every hash chain.

    On failure ``broken_stream``/``broken_position`` name the first bad event
    found (streams are checked in ``stream_id`` order) and ``reason`` says why;
    checking stops there.
    """

    ok: bool
    streams_checked: int
    events_checked: int
    broken_stream: str | None = None
    broken_position: int | None = None
    reason: str | None = None
