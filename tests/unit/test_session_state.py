"""The session fold, snapshots and refusal steps 4–7."""

from __future__ import annotations

from typing import Any

import pytest

from parley.domain.session import finished, render_response, stored_response
from parley.domain.identity import Identity
from parley.domain.session_state import (
    PROCEED,
    SESSION_CLOSED,
    SESSION_STARTED,
    TURN_COMMITTED,
    IdempotencyRecord,
    KeyedRequest,
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
)
from parley.domain.tokens import derive_token, token_digest
from parley.errors import IdempotencyConflict, InternalError, MissingToken, StaleToken, UnknownSession

SECRET = b"k" * 32
SID = "ses_01TEST"


ALICE = Identity("alice", "team-a")


def tok(turn: int) -> str:
    return derive_token(SECRET, SID, turn)


def dig(turn: int) -> str:
    return token_digest(tok(turn))


def turn_event(turn: int, *, key: str | None = None, fp: str = "fp", subs: dict[str, int] | None = None) -> tuple[str, dict[str, Any]]:
    subs = {"c": turn} if subs is None else subs
    wire = finished(SID, tok(turn), results=[{"n": turn}], messages=[], cursors=subs)
    data = turn_committed_data(
        turn=turn,
        token_digest=dig(turn),
        subscriptions=subs,
        response=stored_response(wire),
        ts=f"ts{turn}",
        lease_epoch=turn * 10,
        idempotency=None if key is None else KeyedRequest(key, fp),
    )
    return TURN_COMMITTED, data


def started(start_key: str | None = None, fp: str = "sfp") -> tuple[str, dict[str, Any]]:
    idem = None if start_key is None else KeyedRequest(start_key, fp)
    return SESSION_STARTED, session_started_data(SID, ALICE, handler="inbox", ts="ts0", start_idempotency=idem)


def session(*events: tuple[str, dict[str, Any]]) -> SessionState:
    state = fold(events)
    assert state is not None
    return state


# -- the fold -----------------------------------------------------------------


def test_started_then_first_turn() -> None:
    s0 = session(started())
    assert (s0.turns, s0.token_digest, s0.last_response, s0.subscriptions) == (0, "", None, {})
    assert (s0.agent_id, s0.owner, s0.handler, s0.created_ts, s0.updated_ts) == ("alice", "team-a", "inbox", "ts0", "ts0")
    s1 = apply(s0, *turn_event(1, key="k1"))
    assert s1.turns == 1 and s1.token_digest == dig(1) and s1.subscriptions == {"c": 1}
    assert s1.lease_epoch == 10 and s1.updated_ts == "ts1" and s1.created_ts == "ts0"
    assert s1.last_idempotency == IdempotencyRecord("k1", "fp", None)
    assert s1.start_response is None  # start had no key
    assert s0.turns == 0  # apply never mutates


def test_turn_records_consumed_token_and_forgets_key_of_unkeyed_turn() -> None:
    s2 = session(started(), turn_event(1), turn_event(2, key="k2"))
    assert s2.last_idempotency == IdempotencyRecord("k2", "fp", dig(1))
    s3 = apply(s2, *turn_event(3))
    assert s3.last_idempotency is None


def test_start_response_kept_only_with_a_start_key() -> None:
    s = session(started("sk"), turn_event(1), turn_event(2))
    assert s.start_idempotency == KeyedRequest("sk", "sfp")
    assert s.start_response == turn_event(1)[1]["response"]
    assert s.last_response == turn_event(2)[1]["response"]


def test_subscriptions_keep_order() -> None:
    s = session(started(), turn_event(1, subs={"z": 1, "a": 2, "m": 0}))
    assert list(s.subscriptions) == ["z", "a", "m"]


def test_closed() -> None:
    s = session(started(), turn_event(1), (SESSION_CLOSED, session_closed_data(ts="tsX")))
    assert s.closed and s.updated_ts == "tsX"


@pytest.mark.parametrize(
    "events",
    [
        [turn_event(1)],
        [(SESSION_CLOSED, {"ts": "t"})],
        [started(), started()],
        [started(), turn_event(2)],
        [started(), turn_event(1), turn_event(1)],
        [started(), (SESSION_CLOSED, {"ts": "t"}), turn_event(1)],
        [started(), ("mystery", {})],
    ],
)
def test_impossible_sequences_are_loud(events: list[tuple[str, dict[str, Any]]]) -> None:
    with pytest.raises(InternalError):
        fold(events)


def test_tokens_are_never_journaled() -> None:
    with pytest.raises(ValueError):
        turn_committed_data(
            turn=1, token_digest="d", subscriptions={}, response={"continuationToken": "ct"}, ts="t", lease_epoch=1
        )
    _, data = turn_event(1)
    assert tok(1) not in repr(data)


def test_replayed_response_is_identical_to_the_first() -> None:
    wire = finished(SID, tok(1), results=[{"ok": True}], messages=[], cursors={"c": 3})
    assert render_response(stored_response(wire), tok(1)) == wire
    s = session(started(), turn_event(1))
    assert s.last_response is not None and "continuationToken" not in s.last_response


# -- snapshots ----------------------------------------------------------------


def test_snapshot_roundtrip_and_version() -> None:
    s = session(started("sk"), turn_event(1), turn_event(2, key="k", subs={"b": 1, "a": 2}))
    assert from_snapshot(to_snapshot(s)) == s
    assert list(from_snapshot(to_snapshot(s)).subscriptions) == ["b", "a"]
    with pytest.raises(InternalError):
        from_snapshot({**to_snapshot(s), "v": 99})


# -- step 4: owner ------------------------------------------------------------


def test_check_owner() -> None:
    s = session(started(), turn_event(1))
    assert check_owner(s, ALICE, SID) is s
    closed = apply(s, SESSION_CLOSED, {"ts": "t"})
    answers = []
    for state, who in ((None, ALICE), (closed, ALICE), (s, Identity("bob", "team-a")), (s, Identity("alice", "team-b"))):
        with pytest.raises(UnknownSession) as info:
            check_owner(state, who, SID)
        answers.append((info.value.status, info.value.envelope()))
    assert answers == [(404, {"error": {"code": "unknown_session", "message": f"unknown session '{SID}'"}})] * 4


def test_unknown_session_message_is_fragmented() -> None:
    with pytest.raises(UnknownSession) as info:
        check_owner(None, ALICE, "a\x00\x1b" + "x" * 130)
    assert info.value.message == "unknown session 'a" + "x" * 119 + "…'"


# -- steps 5–7: continue ------------------------------------------------------


def cont(state: SessionState, token: str | None, key: str | None = None, fp: str | None = None) -> object:
    return check_continue(
        state, None if token is None else token_digest(token), idempotency_key=key, request_fingerprint=fp
    )


def test_missing_token_first() -> None:
    s = session(started(), turn_event(1, key="k"))
    with pytest.raises(MissingToken) as info:
        cont(s, None, "k", "other")
    assert info.value.envelope() == {"error": {"code": "missing_token", "message": "missing continuationToken"}}


def test_current_token_proceeds_stale_refused() -> None:
    s = session(started(), turn_event(1), turn_event(2))
    assert cont(s, tok(2)) is PROCEED
    for bad in (tok(1), tok(3), "ct_forged", ""):
        with pytest.raises(StaleToken) as info:
            cont(s, bad)
        assert info.value.message == "stale or invalid continuationToken" and info.value.status == 409


def test_fresh_key_with_current_token_proceeds() -> None:
    s = session(started(), turn_event(1), turn_event(2, key="k2"))
    assert cont(s, tok(2), "k3", "fp") is PROCEED
    with pytest.raises(StaleToken):
        cont(s, tok(1), "k3", "fp")


def test_retry_of_last_turn_replays() -> None:
    s = session(started(), turn_event(1), turn_event(2, key="k2"))
    result = cont(s, tok(1), "k2", "fp")
    assert result == Replay(turn_event(2)[1]["response"], 2)
    assert isinstance(result, Replay)
    assert render_response(result.response, derive_token(SECRET, SID, result.turn))["continuationToken"] == tok(2)


def test_same_key_other_fingerprint_conflicts() -> None:
    s = session(started(), turn_event(1), turn_event(2, key="k2"))
    for token in (tok(1), tok(2), "ct_forged"):
        with pytest.raises(IdempotencyConflict) as info:
            cont(s, token, "k2", "different")
        assert info.value.status == 409 and info.value.code == "idempotency_conflict"


def test_same_key_reused_with_current_token_conflicts() -> None:
    s = session(started(), turn_event(1), turn_event(2, key="k2"))
    with pytest.raises(IdempotencyConflict):
        cont(s, tok(2), "k2", "fp")


def test_same_key_with_some_older_token_is_stale() -> None:
    s = session(started(), turn_event(1), turn_event(2), turn_event(3, key="k3"))
    with pytest.raises(StaleToken):
        cont(s, tok(1), "k3", "fp")


def test_key_of_an_older_turn_is_stale() -> None:
    s = session(started(), turn_event(1), turn_event(2, key="k2"), turn_event(3, key="k3"))
    with pytest.raises(StaleToken):
        cont(s, tok(1), "k2", "fp")


def test_without_key_a_stale_token_is_always_stale() -> None:
    s = session(started(), turn_event(1), turn_event(2, key="k2"))
    with pytest.raises(StaleToken):
        cont(s, tok(1))


def test_start_key_cannot_be_reused_for_a_continue() -> None:
    s = session(started("sk"), turn_event(1, key="sk", fp="sfp"))
    with pytest.raises(IdempotencyConflict):
        cont(s, tok(1), "sk", "sfp")
    with pytest.raises(StaleToken):
        cont(s, "ct_other", "sk", "sfp")


# -- start replay -------------------------------------------------------------


def test_start_replay() -> None:
    s = session(started("sk"), turn_event(1, key="sk", fp="sfp"), turn_event(2))
    result = check_start_replay(s, ALICE, idempotency_key="sk", request_fingerprint="sfp")
    assert result == Replay(turn_event(1)[1]["response"], 1)
    with pytest.raises(IdempotencyConflict):
        check_start_replay(s, ALICE, idempotency_key="sk", request_fingerprint="other")


def test_start_replay_proceeds_otherwise() -> None:
    s = session(started("sk"), turn_event(1))
    closed = apply(s, SESSION_CLOSED, {"ts": "t"})
    assert check_start_replay(None, ALICE, idempotency_key="sk", request_fingerprint="sfp") is PROCEED
    assert check_start_replay(closed, ALICE, idempotency_key="sk", request_fingerprint="sfp") is PROCEED
    assert check_start_replay(s, Identity("bob", "x"), idempotency_key="sk", request_fingerprint="sfp") is PROCEED
    assert check_start_replay(s, ALICE, idempotency_key="other", request_fingerprint="sfp") is PROCEED
    unkeyed = session(started(), turn_event(1))
    assert check_start_replay(unkeyed, ALICE, idempotency_key="sk", request_fingerprint="sfp") is PROCEED
