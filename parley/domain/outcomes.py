"""What a channel decision came to, in domain words (no HTTP status here).

Every accepted or answered channel write ends as one of these values; a
refusal is a :class:`parley.errors.ParleyError` carrying its ``code``. The
http layer turns an outcome into a status (``parley/http/outcomes.py``, the
one mapping), the WebSocket ack carries the same status, and the session
service only reads ``body``. Keeping statuses out of the domain means a new
transport (MCP, a batch frame) maps the same outcomes without re-deciding.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

__all__ = [
    "Appended",
    "Archived",
    "ArtifactKnown",
    "ArtifactStored",
    "ClaimRefused",
    "Claimed",
    "Created",
    "Outcome",
    "Replayed",
]


@dataclass(frozen=True, slots=True)
class Created:
    """A new channel; ``body`` is its descriptor with ``head`` 0."""

    body: dict[str, Any]


@dataclass(frozen=True, slots=True)
class Appended:
    """A message joined the log through the append route."""

    body: dict[str, Any]


@dataclass(frozen=True, slots=True)
class Claimed:
    """A claim, reassign or done was granted and logged (``outcome: granted``)."""

    body: dict[str, Any]


@dataclass(frozen=True, slots=True)
class ClaimRefused:
    """The ledger said no (``already_claimed`` / ``not_held``); nothing logged
    but, at most, a lapse the decision found."""

    body: dict[str, Any]


@dataclass(frozen=True, slots=True)
class Replayed:
    """An earlier write (same ``msg_id`` or ``Idempotency-Key``) answered again.

    ``route`` is the route that first wrote it (``create``, ``append``,
    ``claim``, ``reassign``, ``done``): the replay answers as that route did.
    """

    route: str
    body: dict[str, Any]


@dataclass(frozen=True, slots=True)
class ArtifactStored:
    """New artifact bytes, stored with the ``artifact_stored`` event."""

    body: dict[str, Any]


@dataclass(frozen=True, slots=True)
class ArtifactKnown:
    """The channel already holds these bytes (dedup): nothing written."""

    body: dict[str, Any]


@dataclass(frozen=True, slots=True)
class Archived:
    """The channel is archived (now, or it already was); ``body`` describes it."""

    body: dict[str, Any]


Outcome = Created | Appended | Claimed | ClaimRefused | Replayed | ArtifactStored | ArtifactKnown | Archived
