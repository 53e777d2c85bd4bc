"""The outbox's pure rules: the request fingerprint, the §4.5.1 lookup table, the retry verdict.

No I/O here (ADR-0018). :func:`fingerprint` says whether a re-enqueued
client id carries the same request; :func:`decide` is the lookup table
(existing row state × fingerprint match → outcome or conflict);
:func:`verdict` sorts a server answer into done / retry / dead.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ..errors import ParleyError
from ._outbox_store import Row

#: Bumped if the fingerprinted fields ever change (old rows then conflict, never silently match).
FINGERPRINT_VERSION = 1
#: Fields the server stamps or overwrites on append (contracts/channels.md §2.1), plus the id itself.
UNFINGERPRINTED = frozenset({"msg_id", "v", "ts", "agent_id", "owner"})
PREFIX_CHARS = 16


class OutboxConflict(ParleyError):
    """A client id already in the outbox that cannot be accepted again (the §4.5.1 table)."""

    code = "outbox_conflict"
    status = 409
    default_message = "client id already in the outbox"

    def __init__(self, message: str, *, reason: str, fingerprint_prefix: str, row: Row) -> None:
        super().__init__(message)
        #: ``outbox_<state>_fingerprint_<match|mismatch>``, the seed's reason names.
        self.reason = reason
        #: The first characters of the offered request's fingerprint.
        self.fingerprint_prefix = fingerprint_prefix
        self.row = row


class OutboxStateError(ParleyError):
    """An operator action (requeue, abort) that the row's state does not allow, or an unknown id."""

    code = "outbox_state"
    status = 409
    default_message = "the outbox row is not in a state that allows this"


def fingerprint(kind: str, lane: str, request: Mapping[str, Any]) -> str:
    """sha256 of the canonical JSON of what the server will act on.

    For an append: the channel and the message minus ``msg_id`` (the key
    itself) and the fields the server stamps over (``v``, ``ts``,
    ``agent_id``, ``owner``). For a turn: the session and the turn body minus
    ``continuationToken`` (the same rule as the server's turn fingerprint).
    """
    dropped = UNFINGERPRINTED if kind == "append" else frozenset({"continuationToken"})
    payload = {
        "v": FINGERPRINT_VERSION,
        "kind": kind,
        "lane": lane,
        "request": {k: v for k, v in request.items() if k not in dropped},
    }
    text = json.dumps(payload, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class Accepted:
    """A successful enqueue: ``outcome`` is ``accepted_pending`` / ``accepted_inflight`` / ``accepted_done``."""

    client_id: str
    outcome: str
    row: Row

    @property
    def cursor(self) -> int | None:
        return self.row.cursor


def decide(row: Row, offered: str) -> Accepted:
    """The §4.5.1 lookup table for a client id that already has ``row``; raises :class:`OutboxConflict`."""
    match = row.fingerprint == offered
    prefix = offered[:PREFIX_CHARS]
    if match and row.state in ("pending", "inflight", "done"):
        return Accepted(row.client_id, f"accepted_{row.state}", row)
    reason = f"outbox_{row.state}_fingerprint_{'match' if match else 'mismatch'}"
    if not match:
        message = (
            f"client id {row.client_id} is already in the outbox ({row.state}) with a different request "
            f"(fingerprint {prefix}…, stored {row.fingerprint[:PREFIX_CHARS]}…); send it with a new msg_id"
        )
    elif row.state == "dead":
        message = (
            f"client id {row.client_id} is dead in the outbox (fingerprint {prefix}…): {row.last_error}; "
            f"fix the cause, then `parley outbox requeue {row.client_id}`"
        )
    else:
        message = (
            f"client id {row.client_id} was aborted in the outbox (fingerprint {prefix}…); "
            f"`parley outbox requeue {row.client_id}` to send it after all"
        )
    raise OutboxConflict(message, reason=reason, fingerprint_prefix=prefix, row=row)


@dataclass(frozen=True)
class Verdict:
    """What an answer means for its row: ``done``, ``retry`` (after ``delay`` s) or ``dead``."""

    kind: str
    error: str | None = None
    code: str | None = None
    status: int | None = None
    delay: float | None = None  # the server's Retry-After, if it sent one


#: 4xx answers that are about timing, not about the request (408 timeout, 429 rate).
TRANSIENT_4XX = frozenset({408, 425, 429})
#: Refusal codes that clear by themselves: another process holds the session's turn.
TRANSIENT_CODES = frozenset({"turn_in_flight"})


def verdict(status: int, error: ParleyError | None, retry_after: float | None) -> Verdict:
    """Sort an HTTP answer (``error`` set for non-2xx) into done / retry / dead (ADR-0018)."""
    if error is None:
        return Verdict("done", status=status)
    text = f"HTTP {status} {error.code}: {error.message}"
    transient = status >= 500 or status in TRANSIENT_4XX or error.code in TRANSIENT_CODES
    kind = "retry" if transient else "dead"
    return Verdict(kind, text, error.code, status, retry_after)


__all__ = [
    "Accepted",
    "FINGERPRINT_VERSION",
    "OutboxConflict",
    "OutboxStateError",
    "Verdict",
    "decide",
    "fingerprint",
    "verdict",
]
