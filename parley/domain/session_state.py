"""Session state as a fold over the ``session:<id>`` stream, and the pure checks on it.

Why a fold: a session must survive restarts and move between processes, so
its whole state is ``fold(apply, events)``; a snapshot is just a serialised
state, and ``fold(snapshot, tail) == fold(all)``.

Events (``data`` shapes; build them with the ``*_data`` helpers):

- ``session_started``: ``{session_id, agent_id, owner, handler, ts,
  start_idempotency: {key, fingerprint} | null, lease_epoch}``
- ``turn_committed``: ``{turn, token_digest, subscriptions: {channel: cursor},
  response, idempotency: {key, fingerprint} | null, lease_epoch, ts}`` where
  ``response`` is the turn response *without* ``continuationToken``: tokens
  are never journaled; the token is re-derived from (secret, id, turn) and put
  back by :func:`parley.domain.session.render_response`.
- ``session_closed``: ``{ts}``.

Turn 1 is the start turn. The token issued by turn N is
``derive_token(secret, id, N)``; ``token_digest`` is the digest of the token
issued by the latest turn (``""`` before turn 1 commits).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any, Final

from parley.domain.identity import Identity
from parley.domain.text import fragment
from parley.domain.tokens import digest_matches
from parley.errors import IdempotencyConflict, InternalError, MissingToken, StaleToken, UnknownSession

__all__ = [
    "IDEMPOTENCY_CONFLICT_MESSAGE",
    "SESSION_CLOSED",
    "SESSION_STARTED",
    "SNAPSHOT_VERSION",
    "TURN_COMMITTED",
    "IdempotencyRecord",
    "PROCEED",
    "Proceed",
    "Replay",
    "SessionState",
    "KeyedRequest",
    "apply",
    "check_continue",
    "check_owner",
    "check_start_replay",
    "fold",
    "from_snapshot",
    "session_closed_data",
    "session_started_data",
    "to_snapshot",
    "turn_committed_data",
    "unknown_session",
]

SESSION_STARTED: Final = "session_started"
TURN_COMMITTED: Final = "turn_committed"
SESSION_CLOSED: Final = "session_closed"
SNAPSHOT_VERSION: Final = 1
IDEMPOTENCY_CONFLICT_MESSAGE: Final = "Idempotency-Key was already used for a different request"


@dataclass(frozen=True, slots=True)
class KeyedRequest:
    """An ``Idempotency-Key`` and the fingerprint of the request that used it."""

    key: str
    fingerprint: str


@dataclass(frozen=True, slots=True)
class IdempotencyRecord:
    """The key of the most recent committed turn, if it had one.

    ``consumed_token_digest`` is the digest of the token that turn consumed
    (``None`` for the start turn, which consumes none).
    """

    key: str
    fingerprint: str
    consumed_token_digest: str | None


@dataclass(frozen=True, slots=True)
class SessionState:
    """Everything a session actor needs, rebuilt exactly by replay.

    Treat the dicts as immutable: :func:`apply` builds new ones and never
    mutates an old state. ``subscriptions`` keeps subscription order.
    ``last_response``/``start_response`` are stored responses (no token);
    ``start_response`` is kept only when the start had an Idempotency-Key.
    """

    session_id: str
    agent_id: str
    owner: str
    handler: str
    created_ts: str
    updated_ts: str
    subscriptions: dict[str, int] = field(default_factory=dict)
    turns: int = 0
    token_digest: str = ""
    last_response: dict[str, Any] | None = None
    last_idempotency: IdempotencyRecord | None = None
    start_idempotency: KeyedRequest | None = None
    start_response: dict[str, Any] | None = None
    closed: bool = False
    lease_epoch: int = 0


# -- event data builders -------------------------------------------------------


def session_started_data(
    session_id: str,
    identity: Identity,
    *,
    handler: str,
    ts: str,
    start_idempotency: KeyedRequest | None = None,
    lease_epoch: int = 0,
) -> dict[str, Any]:
    """Data of ``session_started`` (the start turn follows as ``turn_committed`` turn 1)."""
    return {
        "session_id": session_id,
        "agent_id": identity.agent_id,
        "owner": identity.owner,
        "handler": handler,
        "ts": ts,
        "start_idempotency": _idem_dict(start_idempotency),
        "lease_epoch": lease_epoch,
    }


def turn_committed_data(
    *,
    turn: int,
    token_digest: str,
    subscriptions: Mapping[str, int],
    response: Mapping[str, Any],
    ts: str,
    lease_epoch: int,
    idempotency: KeyedRequest | None = None,
) -> dict[str, Any]:
    """Data of ``turn_committed``; ``response`` must not hold a continuationToken."""
    if "continuationToken" in response:
        raise ValueError("tokens are never journaled: store the response without continuationToken")
    return {
        "turn": turn,
        "token_digest": token_digest,
        "subscriptions": dict(subscriptions),
        "response": dict(response),
        "idempotency": _idem_dict(idempotency),
        "lease_epoch": lease_epoch,
        "ts": ts,
    }


def session_closed_data(*, ts: str) -> dict[str, Any]:
    """Data of ``session_closed``."""
    return {"ts": ts}


def _idem_dict(value: KeyedRequest | None) -> dict[str, str] | None:
    return None if value is None else {"key": value.key, "fingerprint": value.fingerprint}


# -- the fold ------------------------------------------------------------------


def _corrupt(detail: str) -> InternalError:
    # A stream the fold refuses is a bug or corruption, never a caller error.
    return InternalError(f"session stream is inconsistent: {detail}")


def apply(state: SessionState | None, event_type: str, data: Mapping[str, Any]) -> SessionState:
    """The state after one event. Raises :class:`InternalError` on an impossible sequence.

    ``apply`` takes ownership of ``data["response"]``: never mutate it afterwards.
    """
    if event_type == SESSION_STARTED:
        if state is not None:
            raise _corrupt("session_started twice")
        start = data.get("start_idempotency")
        return SessionState(
            session_id=data["session_id"],
            agent_id=data["agent_id"],
            owner=data["owner"],
            handler=data["handler"],
            created_ts=data["ts"],
            updated_ts=data["ts"],
            start_idempotency=None if start is None else KeyedRequest(start["key"], start["fingerprint"]),
            lease_epoch=int(data.get("lease_epoch", 0)),
        )
    if state is None:
        raise _corrupt(f"{event_type} before session_started")
    if state.closed:
        raise _corrupt(f"{event_type} after session_closed")
    if event_type == TURN_COMMITTED:
        return _apply_turn(state, data)
    if event_type == SESSION_CLOSED:
        return replace(state, closed=True, updated_ts=data["ts"])
    raise _corrupt(f"unknown event type {event_type!r}")


def _apply_turn(state: SessionState, data: Mapping[str, Any]) -> SessionState:
    turn = int(data["turn"])
    if turn != state.turns + 1:
        raise _corrupt(f"turn {turn} after turn {state.turns}")
    idem = data.get("idempotency")
    record = None
    if idem is not None:
        consumed = state.token_digest if state.turns else None
        record = IdempotencyRecord(idem["key"], idem["fingerprint"], consumed)
    response = data["response"]
    keep_start = turn == 1 and state.start_idempotency is not None
    return replace(
        state,
        turns=turn,
        token_digest=data["token_digest"],
        subscriptions=dict(data["subscriptions"]),
        last_response=response,
        last_idempotency=record,
        start_response=response if keep_start else state.start_response,
        lease_epoch=int(data.get("lease_epoch", state.lease_epoch)),
        updated_ts=data["ts"],
    )


def fold(
    events: Iterable[tuple[str, Mapping[str, Any]]], state: SessionState | None = None
) -> SessionState | None:
    """Apply ``(event_type, data)`` pairs in order, from ``state`` (a snapshot) or from nothing."""
    for event_type, data in events:
        state = apply(state, event_type, data)
    return state


# -- snapshots -----------------------------------------------------------------


def to_snapshot(state: SessionState) -> dict[str, Any]:
    """A JSON-able dict with a version; :func:`from_snapshot` inverts it exactly."""
    li, si = state.last_idempotency, state.start_idempotency
    return {
        "v": SNAPSHOT_VERSION,
        "session_id": state.session_id,
        "agent_id": state.agent_id,
        "owner": state.owner,
        "handler": state.handler,
        "created_ts": state.created_ts,
        "updated_ts": state.updated_ts,
        # A list of pairs, so subscription order survives stores that reorder object keys.
        "subscriptions": [[channel, cursor] for channel, cursor in state.subscriptions.items()],
        "turns": state.turns,
        "token_digest": state.token_digest,
        "last_response": state.last_response,
        "last_idempotency": None
        if li is None
        else {
            "key": li.key,
            "fingerprint": li.fingerprint,
            "consumed_token_digest": li.consumed_token_digest,
        },
        "start_idempotency": _idem_dict(si),
        "start_response": state.start_response,
        "closed": state.closed,
        "lease_epoch": state.lease_epoch,
    }


def from_snapshot(snap: Mapping[str, Any]) -> SessionState:
    """The state a :func:`to_snapshot` dict describes; refuses an unknown version."""
    if snap.get("v") != SNAPSHOT_VERSION:
        raise _corrupt(f"unsupported snapshot version {snap.get('v')!r}")
    li, si = snap["last_idempotency"], snap["start_idempotency"]
    return SessionState(
        session_id=snap["session_id"],
        agent_id=snap["agent_id"],
        owner=snap["owner"],
        handler=snap["handler"],
        created_ts=snap["created_ts"],
        updated_ts=snap["updated_ts"],
        subscriptions={channel: int(cursor) for channel, cursor in snap["subscriptions"]},
        turns=int(snap["turns"]),
        token_digest=snap["token_digest"],
        last_response=snap["last_response"],
        last_idempotency=None
        if li is None
        else IdempotencyRecord(li["key"], li["fingerprint"], li["consumed_token_digest"]),
        start_idempotency=None if si is None else KeyedRequest(si["key"], si["fingerprint"]),
        start_response=snap["start_response"],
        closed=bool(snap["closed"]),
        lease_epoch=int(snap["lease_epoch"]),
    )


# -- decisions (refusal steps 4–7) ---------------------------------------------


@dataclass(frozen=True, slots=True)
class Proceed:
    """Run the turn."""


PROCEED: Final = Proceed()


@dataclass(frozen=True, slots=True)
class Replay:
    """Answer with a committed turn's response again; nothing is committed.

    ``response`` is the stored form (no token); the caller renders it with
    ``derive_token(secret, session_id, turn)`` and sets ``Idempotent-Replayed: true``.
    """

    response: dict[str, Any]
    turn: int


def unknown_session(session_id: str) -> UnknownSession:
    """The one 404 for unknown, closed and foreign sessions (same for all three)."""
    return UnknownSession(f"unknown session '{fragment(session_id)}'")


def check_owner(state: SessionState | None, identity: Identity, session_id: str) -> SessionState:
    """Step 4: the state if it exists, is open and belongs to ``identity``; else 404."""
    if (
        state is None
        or state.closed
        or state.agent_id != identity.agent_id
        or state.owner != identity.owner
    ):
        raise unknown_session(session_id)
    return state


def check_continue(
    state: SessionState,
    presented_token_digest: str | None,
    *,
    idempotency_key: str | None = None,
    request_fingerprint: str | None = None,
) -> Proceed | Replay:
    """Steps 5–7 for an owner-checked session: missing token, Idempotency-Key, stale token.

    With a key equal to the most recent turn's key: a different fingerprint →
    conflict; the token that turn consumed → replay; the current token →
    conflict (a key names one turn); any other token → stale. A key that is not
    the most recent turn's is a fresh key: the token must be current. Close
    uses this with no key (a retried close gets 404 from :func:`check_owner`).
    """
    if presented_token_digest is None:
        raise MissingToken()
    last = state.last_idempotency
    if idempotency_key is not None and last is not None and idempotency_key == last.key:
        if request_fingerprint != last.fingerprint:
            raise IdempotencyConflict(IDEMPOTENCY_CONFLICT_MESSAGE)
        if digest_matches(presented_token_digest, last.consumed_token_digest):
            assert state.last_response is not None
            return Replay(state.last_response, state.turns)
        if digest_matches(presented_token_digest, state.token_digest):
            raise IdempotencyConflict(IDEMPOTENCY_CONFLICT_MESSAGE)
        raise StaleToken()
    if not digest_matches(presented_token_digest, state.token_digest):
        raise StaleToken()
    return PROCEED


def check_start_replay(
    state: SessionState | None,
    identity: Identity,
    *,
    idempotency_key: str,
    request_fingerprint: str,
) -> Proceed | Replay:
    """A start with a key, given the session that key points at (if any).

    Same identity + key + fingerprint → replay the start response (turn 1's
    token, even if later turns made it stale: the client gets its sessionId
    back). Same key, other fingerprint → conflict. A closed session, another
    identity's session or no record → start a new session.
    """
    if (
        state is None
        or state.closed
        or state.agent_id != identity.agent_id
        or state.owner != identity.owner
        or state.start_idempotency is None
        or state.start_idempotency.key != idempotency_key
        or state.start_response is None
    ):
        return PROCEED
    if state.start_idempotency.fingerprint != request_fingerprint:
        raise IdempotencyConflict(IDEMPOTENCY_CONFLICT_MESSAGE)
    return Replay(state.start_response, 1)
