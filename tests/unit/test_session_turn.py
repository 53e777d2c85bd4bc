"""The pure turn planner (parley.domain.session_turn): plain calls and hypothesis, no server."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from parley.domain import session_turn as T
from parley.domain.identity import Identity
from parley.domain.session_state import KeyedRequest, Replay, SessionState, check_continue
from parley.domain.tokens import derive_token, token_digest
from parley.errors import (
    IdempotencyConflict,
    InternalError,
    InvalidCursor,
    InvalidRequest,
    MissingToken,
    StaleToken,
    TurnInFlight,
    UnknownSession,
)

SECRET = b"turn-secret"
SID = "ses_01TURNTURNTURNTURNTURNTURN"
ALICE = Identity("agent-a", "alice")

channels = st.text(alphabet="abcxyz-", min_size=1, max_size=6)
subs_st = st.dictionaries(channels, st.integers(0, 10**6), max_size=5)
idem_keys = st.none() | st.sampled_from(["k1", "k2"])


def token(turn: int) -> str:
    return derive_token(SECRET, SID, turn)


def item(channel: str, cursor: int, counter: int) -> dict[str, Any]:
    return {"channel": channel, "cursor": cursor, "message": {"ts": f"2026-12-02T00:00:00Z#{counter}"}}


def run_turn(
    state: SessionState | None,
    plan: T.TurnPlan,
    *,
    results: list[Any] | None = None,
    messages: list[dict[str, Any]] | None = None,
    parked: bool = False,
    extras: dict[str, Any] | None = None,
) -> tuple[T.ComposedTurn, SessionState]:
    """What the runner does around the I/O, with the I/O's answers given."""
    subscriptions = T.advance_cursors(plan.subscriptions, messages or [])
    composed = T.compose(
        plan,
        token=token(plan.turn),
        ts=f"t{plan.turn}",
        results=results or [],
        messages=messages or [],
        subscriptions=subscriptions,
        parked_=parked,
        extras=extras,
    )
    return composed, T.commit(state, composed.events)


def started(subscriptions: dict[str, int] | None = None, idem: str | None = None) -> SessionState:
    plan = T.plan_start(None, SID, ALICE, "inbox", idem_key=idem, fingerprint="fp")
    return run_turn(None, replace(plan, subscriptions=subscriptions or {}))[1]


# -- decisions -------------------------------------------------------------------


def test_a_start_is_turn_one_without_a_lease() -> None:
    plan = T.plan_start(None, SID, ALICE, "inbox")
    assert (plan.turn, plan.base_seq, plan.start, plan.needs_lease) == (1, 0, True, False)
    state = run_turn(None, plan)[1]
    assert (state.turns, state.token_digest, state.handler) == (1, token_digest(token(1)), "inbox")


def test_a_start_on_a_taken_id_is_a_collision() -> None:
    with pytest.raises(InternalError):
        T.plan_start(started(), SID, ALICE, "inbox")
    with pytest.raises(InternalError):
        T.plan_start(None, SID, ALICE, "inbox", in_flight=True)


def test_refusal_steps_come_in_contract_order() -> None:
    state = started()
    with pytest.raises(UnknownSession):  # step 4 before everything
        T.decide_continue(state, SID, 2, Identity("other", "alice"), None, in_flight=True)
    with pytest.raises(MissingToken):  # step 5 before step 8
        T.decide_continue(state, SID, 2, ALICE, None, in_flight=True)
    with pytest.raises(StaleToken):
        T.decide_continue(state, SID, 2, ALICE, "ct_nope", in_flight=True)
    with pytest.raises(TurnInFlight):  # step 8 last
        T.decide_continue(state, SID, 2, ALICE, token(1), in_flight=True)


def test_a_held_connection_presents_the_current_token() -> None:
    state = started()
    plan = T.decide_continue(state, SID, 2, ALICE, None, held=True)
    assert isinstance(plan, T.TurnPlan) and plan.turn == 2
    with pytest.raises(MissingToken):
        T.decide_continue(state, SID, 2, ALICE, None, held=False)


def test_a_replay_is_answered_even_while_a_turn_is_in_flight() -> None:
    state = started()
    plan = T.decide_continue(state, SID, 2, ALICE, token(1), idem_key="k", fingerprint="f")
    assert isinstance(plan, T.TurnPlan)
    composed, after = run_turn(state, plan, results=[{"cursor": 0}])
    again = T.decide_continue(after, SID, 3, ALICE, token(1), idem_key="k", fingerprint="f", in_flight=True)
    assert again == Replay(composed.stored, 2)
    with pytest.raises(IdempotencyConflict):
        T.decide_continue(after, SID, 3, ALICE, token(1), idem_key="k", fingerprint="other")


def test_the_lease_epoch_travels_into_the_commit() -> None:
    plan = T.decide_continue(started(), SID, 2, ALICE, token(1))
    assert isinstance(plan, T.TurnPlan) and plan.needs_lease and not plan.leased
    leased = T.with_lease(plan, 7)
    composed, after = run_turn(started(), leased)
    assert leased.leased and composed.events[-1][1]["lease_epoch"] == 7
    assert after.lease_epoch == 7


# -- actions and delivery --------------------------------------------------------


def test_subscribe_cursor_rules() -> None:
    assert T.subscribe_cursor(None, 5) == 5
    assert T.subscribe_cursor("head", 5) == 5
    assert T.subscribe_cursor("start", 5) == 0
    assert T.subscribe_cursor(3, 5) == 3
    with pytest.raises(InvalidCursor, match=r"\[0, 5\]"):
        T.subscribe_cursor(6, 5)


@pytest.mark.parametrize("assignee", [None, {}, {"agent_id": "a"}, {"agent_id": "", "owner": "o"}, {"agent_id": 1, "owner": "o"}])
def test_reassign_needs_a_full_assignee(assignee: Any) -> None:
    with pytest.raises(InvalidRequest, match="non-empty agent_id and owner"):
        T.reassign_target(assignee)


def test_reassign_keeps_only_the_identity() -> None:
    assert T.reassign_target({"agent_id": "a", "owner": "o", "x": 1}) == {"agent_id": "a", "owner": "o"}


@given(st.lists(st.lists(st.integers(0, 1000), max_size=6), max_size=4), st.integers(1, 20))
def test_merge_keeps_each_channel_in_order_and_honours_max(counters: list[list[int]], max_: int) -> None:
    per_channel = [
        [item(f"c{i}", n + 1, counter) for n, counter in enumerate(sorted(page))] for i, page in enumerate(counters)
    ]
    merged = T.merge_deliverable(per_channel, max_)
    assert len(merged) == min(max_, sum(len(p) for p in per_channel))
    stamps = [T.stamp_key(m)[0] for m in merged]
    assert stamps == sorted(stamps)
    for i, page in enumerate(per_channel):
        mine = [m for m in merged if m["channel"] == f"c{i}"]
        assert mine == page[: len(mine)]


@given(subs_st, st.lists(st.tuples(channels, st.integers(0, 10**6)), max_size=8))
def test_cursors_advance_to_the_last_delivered(subscriptions: dict[str, int], delivered: list[tuple[str, int]]) -> None:
    after = T.advance_cursors(subscriptions, [{"channel": c, "cursor": n} for c, n in delivered])
    expected = dict(subscriptions)
    expected.update(dict(delivered))
    assert after == expected
    assert subscriptions == dict(subscriptions)  # the input is not mutated


# -- compose and commit ------------------------------------------------------------


@given(subs_st, st.booleans(), idem_keys, st.dictionaries(st.sampled_from(["results", "digest", "extra"]), st.integers()))
def test_a_committed_turn_is_what_the_state_replays(
    subscriptions: dict[str, int], parked: bool, idem: str | None, extras: dict[str, int]
) -> None:
    state = started(subscriptions)
    plan = T.decide_continue(state, SID, 2, ALICE, token(1), idem_key=idem, fingerprint="fp")
    assert isinstance(plan, T.TurnPlan)
    composed, after = run_turn(state, plan, results=[{"ok": True}], parked=parked, extras=extras)
    assert composed.response["continuationToken"] == token(2)
    assert composed.response["status"] == ("parked" if parked else "finished")
    assert composed.response["output"]["results"] == [{"ok": True}]  # extras never replace it
    assert {k: v for k, v in extras.items() if k != "results"}.items() <= composed.response["output"].items()
    assert "continuationToken" not in composed.stored
    assert (after.turns, after.token_digest, after.subscriptions) == (2, token_digest(token(2)), subscriptions)
    assert after.last_response == composed.stored
    # The new token is current; the consumed one is stale, or a replay under the same key.
    check_continue(after, token_digest(token(2)))
    if idem is None:
        with pytest.raises(StaleToken):
            check_continue(after, token_digest(token(1)))
    else:
        replay = check_continue(after, token_digest(token(1)), idempotency_key=idem, request_fingerprint="fp")
        assert replay == Replay(composed.stored, 2)


@given(st.lists(subs_st, min_size=1, max_size=5))
def test_a_chain_of_turns_numbers_them_and_rotates_the_token(cursor_sets: list[dict[str, int]]) -> None:
    state = started()
    seq = 2
    for n, cursors in enumerate(cursor_sets, start=2):
        plan = T.decide_continue(state, SID, seq, ALICE, token(n - 1))
        assert isinstance(plan, T.TurnPlan) and (plan.turn, plan.base_seq) == (n, seq)
        composed, state = run_turn(state, replace(plan, subscriptions=cursors))
        assert [type_ for type_, _ in composed.events] == ["turn_committed"]
        seq += 1
        assert state.turns == n and state.subscriptions == cursors


def test_a_start_commits_session_started_then_turn_one() -> None:
    plan = T.plan_start(None, SID, ALICE, "digest", idem_key="s", fingerprint="fp")
    composed, state = run_turn(None, plan)
    assert [type_ for type_, _ in composed.events] == ["session_started", "turn_committed"]
    assert state.start_idempotency == KeyedRequest("s", "fp")
    assert composed.events[1][1]["idempotency"] is None  # a start's key lives on session_started
