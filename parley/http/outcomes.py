"""The one mapping from a channel outcome to its HTTP status (ADR-0036).

The domain says what happened (``domain/outcomes.py``); this module says how
the wire reports it: the JSON routes, the artifact PUT and the channel
WebSocket's ``ack`` frames all take their status from :func:`status_of`. A
replay answers with the status of the route that first wrote it, plus
``Idempotent-Replayed: true`` (``"replayed": true`` in an ack).
"""

from __future__ import annotations

from ..domain.outcomes import (
    Appended,
    Archived,
    ArtifactKnown,
    ArtifactStored,
    Claimed,
    ClaimRefused,
    Created,
    Outcome,
    Replayed,
)
from .wire import json_response

#: channels.md §4.2: a new channel, message or artifact is 201; the rest 200.
STATUS: dict[type, int] = {
    Created: 201,
    Appended: 201,
    Claimed: 200,
    ClaimRefused: 200,
    ArtifactStored: 201,
    ArtifactKnown: 200,
    Archived: 200,
}
#: A replay answers as its route did: create and append with 201, claims 200.
REPLAY_STATUS = {"create": 201, "append": 201}


def status_of(outcome: Outcome) -> int:
    if isinstance(outcome, Replayed):
        return REPLAY_STATUS.get(outcome.route, 200)
    return STATUS[type(outcome)]


def outcome_response(outcome: Outcome):
    """The JSON response for ``outcome``, with the replay header when it is one."""
    headers = {"Idempotent-Replayed": "true"} if isinstance(outcome, Replayed) else None
    return json_response(status_of(outcome), outcome.body, headers)
