"""The session domain's public face: turn-response shapes, describe, and re-exports.

Why one place for shapes: the same response is sent once, journaled without
its token, and replayed byte-identically later. Every response goes through
:func:`render_response`, which fixes the key order, so the first answer and
every replay serialise to the same bytes (given a journal that keeps the
nested objects' key order; the top level and ``output``/``wait`` are re-ordered
here anyway).

Submodules: :mod:`~parley.domain.session_input` (turn body, token
presentation, Idempotency-Key, fingerprint), :mod:`~parley.domain.session_state`
(fold, snapshots, refusal steps 4–7), :mod:`~parley.domain.tokens` (token and
id maths).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Final, Literal

from parley.domain.session_input import (
    ACTION_KINDS,
    DEFAULT_HANDLER,
    MAX_ACTIONS,
    REST_FINGERPRINT_EXCLUDE,
    WS_FINGERPRINT_EXCLUDE,
    Action,
    TurnInput,
    canonical_json,
    check_idempotency_key,
    fingerprint,
    fragment,
    parse_turn_input,
    presented_token,
)
from parley.domain.session_state import (
    PROCEED,
    SESSION_CLOSED,
    SESSION_STARTED,
    TURN_COMMITTED,
    IdempotencyRecord,
    KeyedRequest,
    Proceed,
    Replay,
    SessionState,
    apply,
    check_continue,
    check_owner,
    check_start_replay,
    fold,
    from_snapshot,
    session_closed_data,
    session_started_data,
    to_snapshot,
    turn_committed_data,
    unknown_session,
)
from parley.domain.tokens import derive_token, digest_matches, new_session_id, token_digest

__all__ = [
    "ACTION_KINDS",
    "DEFAULT_HANDLER",
    "MAX_ACTIONS",
    "PROCEED",
    "REST_FINGERPRINT_EXCLUDE",
    "SESSION_CLOSED",
    "SESSION_STARTED",
    "TURN_COMMITTED",
    "WS_FINGERPRINT_EXCLUDE",
    "Action",
    "IdempotencyRecord",
    "KeyedRequest",
    "Proceed",
    "Replay",
    "SessionState",
    "TurnInput",
    "apply",
    "canonical_json",
    "check_continue",
    "check_idempotency_key",
    "check_owner",
    "check_start_replay",
    "contended",
    "delivered",
    "derive_token",
    "describe",
    "digest_matches",
    "finished",
    "fingerprint",
    "fold",
    "fragment",
    "from_snapshot",
    "new_session_id",
    "parked",
    "parse_turn_input",
    "presented_token",
    "render_response",
    "session_closed_data",
    "session_started_data",
    "stored_response",
    "to_snapshot",
    "token_digest",
    "turn_committed_data",
    "unknown_session",
]

_TOP_ORDER: Final = ("sessionId", "status", "continuationToken", "output", "wait", "current")
_OUTPUT_ORDER: Final = ("results", "messages", "cursors")
_WAIT_ORDER: Final = ("channels", "cursors")


def delivered(channel: str, cursor: int, message: Mapping[str, Any]) -> dict[str, Any]:
    """One ``output.messages`` element: the message and the channel cursor after it."""
    return {"channel": channel, "cursor": cursor, "message": message}


def _output(
    results: Iterable[Any], messages: Iterable[Mapping[str, Any]], cursors: Mapping[str, int]
) -> dict[str, Any]:
    return {"results": list(results), "messages": list(messages), "cursors": dict(cursors)}


def finished(
    session_id: str,
    continuation_token: str,
    *,
    results: Iterable[Any],
    messages: Iterable[Mapping[str, Any]],
    cursors: Mapping[str, int],
) -> dict[str, Any]:
    """A committed turn that did not wait (or whose wait was answered)."""
    return {
        "sessionId": session_id,
        "status": "finished",
        "continuationToken": continuation_token,
        "output": _output(results, messages, cursors),
    }


def parked(
    session_id: str,
    continuation_token: str,
    *,
    results: Iterable[Any],
    cursors: Mapping[str, int],
    messages: Iterable[Mapping[str, Any]] = (),
    wait_channels: Sequence[str] | None = None,
) -> dict[str, Any]:
    """A committed turn that waited and got nothing (or was ended by shutdown).

    ``wait.channels`` defaults to every subscribed channel (those of
    ``cursors``, in subscription order); ``wait.cursors`` are their cursors.
    """
    channels = list(cursors) if wait_channels is None else list(wait_channels)
    return {
        "sessionId": session_id,
        "status": "parked",
        "continuationToken": continuation_token,
        "output": _output(results, messages, cursors),
        "wait": {"channels": channels, "cursors": {c: cursors[c] for c in channels if c in cursors}},
    }


def contended(session_id: str, continuation_token: str, *, current: int) -> dict[str, Any]:
    """Nothing journaled: the presented token comes back unrotated (HTTP adds ``Retry-After: 1``)."""
    return {
        "sessionId": session_id,
        "status": "contended",
        "continuationToken": continuation_token,
        "current": current,
    }


def stored_response(response: Mapping[str, Any]) -> dict[str, Any]:
    """The journaled form of a finished/parked response: the same without its token."""
    return {k: v for k, v in response.items() if k != "continuationToken"}


def _ordered(obj: Mapping[str, Any], order: Sequence[str]) -> dict[str, Any]:
    out = {k: obj[k] for k in order if k in obj}
    out.update((k, v) for k, v in obj.items() if k not in out)
    return out


def render_response(stored: Mapping[str, Any], continuation_token: str) -> dict[str, Any]:
    """The wire response of a stored one, with the re-derived token, in canonical key order.

    Render the first answer through this too, so a replay is byte-identical.
    Keys unknown here (a handler's extension) follow, in stored order.
    """
    out = _ordered({**stored, "continuationToken": continuation_token}, _TOP_ORDER)
    if isinstance(out.get("output"), Mapping):
        out["output"] = _ordered(out["output"], _OUTPUT_ORDER)
    if isinstance(out.get("wait"), Mapping):
        out["wait"] = _ordered(out["wait"], _WAIT_ORDER)
    return out


def describe(state: SessionState, *, in_turn: bool) -> dict[str, Any]:
    """``GET /v1/session/{id}``: never shows a token or digest."""
    status: Literal["idle", "in_turn"] = "in_turn" if in_turn else "idle"
    return {
        "sessionId": state.session_id,
        "agent_id": state.agent_id,
        "owner": state.owner,
        "handler": state.handler,
        "turns": state.turns,
        "subscriptions": dict(state.subscriptions),
        "status": status,
        "created_ts": state.created_ts,
        "updated_ts": state.updated_ts,
    }
