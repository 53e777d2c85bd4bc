"""Hypothesis: the session fold is deterministic, snapshot-transparent and pure."""

from __future__ import annotations

import json
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from parley.domain.session import finished, parked, stored_response
from parley.domain.identity import Identity
from parley.domain.session_state import (
    PROCEED,
    SESSION_CLOSED,
    SESSION_STARTED,
    TURN_COMMITTED,
    KeyedRequest,
    SessionState,
    apply,
    check_continue,
    fold,
    from_snapshot,
    session_started_data,
    to_snapshot,
    turn_committed_data,
)
from parley.domain.tokens import derive_token, token_digest
from parley.errors import IdempotencyConflict, StaleToken

SECRET = b"prop-secret"
SID = "ses_PROP"
Event = tuple[str, dict[str, Any]]


channels = st.text(alphabet="abcxyz-", min_size=1, max_size=6)
subs_st = st.dictionaries(channels, st.integers(0, 10**6), max_size=5)
keys = st.none() | st.sampled_from(["k1", "k2", "k3"])
json_scalars = st.none() | st.booleans() | st.integers(-100, 100) | st.text(max_size=8)
json_values = st.recursive(
    json_scalars,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3),
    max_leaves=10,
)


@st.composite
def event_streams(draw: st.DrawFn) -> list[Event]:
    start_key = draw(keys)
    events: list[Event] = [
        (
            SESSION_STARTED,
            session_started_data(
                SID,
                Identity(draw(st.text(min_size=1, max_size=5)), draw(st.text(min_size=1, max_size=5))),
                handler=draw(st.sampled_from(["inbox", "digest"])),
                ts="t0",
                start_idempotency=None if start_key is None else KeyedRequest(start_key, draw(st.sampled_from("ab"))),
                lease_epoch=draw(st.integers(0, 5)),
            ),
        )
    ]
    for turn in range(1, draw(st.integers(0, 10)) + 1):
        subs = draw(subs_st)
        token = derive_token(SECRET, SID, turn)
        results = draw(st.lists(json_values, max_size=3))
        if draw(st.booleans()):
            wire = finished(SID, token, results=results, messages=[], cursors=subs)
        else:
            wire = parked(SID, token, results=results, cursors=subs)
        key = draw(keys)
        events.append(
            (
                TURN_COMMITTED,
                turn_committed_data(
                    turn=turn,
                    token_digest=token_digest(token),
                    subscriptions=subs,
                    response=stored_response(wire),
                    ts=f"t{turn}",
                    lease_epoch=draw(st.integers(0, 100)),
                    idempotency=None if key is None else KeyedRequest(key, draw(st.sampled_from("ab"))),
                ),
            )
        )
    if draw(st.booleans()):
        events.append((SESSION_CLOSED, {"ts": "tz"}))
    return events


def snap_text(state: SessionState | None) -> str:
    # Order-sensitive comparison: subscription order is part of the state.
    assert state is not None
    return json.dumps(to_snapshot(state))


def via_journal(events: list[Event]) -> list[Event]:
    """The events as a JSON journal would hand them back."""
    return [(t, json.loads(json.dumps(d))) for t, d in events]


@given(event_streams())
def test_replay_from_scratch_is_deterministic(events: list[Event]) -> None:
    first = fold(events)
    assert fold(events) == first
    assert fold(via_journal(events)) == first
    assert snap_text(fold(via_journal(events))) == snap_text(first)


@given(event_streams(), st.data())
def test_snapshot_plus_tail_equals_full_fold(events: list[Event], data: st.DataObject) -> None:
    cut = data.draw(st.integers(1, len(events)))
    prefix_state = fold(events[:cut])
    assert prefix_state is not None
    snapshot = json.loads(json.dumps(to_snapshot(prefix_state)))
    resumed = fold(events[cut:], from_snapshot(snapshot))
    full = fold(events)
    assert resumed == full
    assert snap_text(resumed) == snap_text(full)


@given(event_streams())
def test_apply_never_mutates_the_previous_state(events: list[Event]) -> None:
    state: SessionState | None = None
    for event_type, data in events:
        before = None if state is None else snap_text(state)
        new = apply(state, event_type, data)
        if state is not None:
            assert snap_text(state) == before
        state = new


@given(event_streams(), st.integers(0, 12), keys)
def test_only_the_current_token_can_run_a_turn(events: list[Event], presented_turn: int, key: str | None) -> None:
    state = fold(events)
    assert state is not None
    if state.closed or state.turns == 0:
        return
    presented = token_digest(derive_token(SECRET, SID, presented_turn))
    last = state.last_idempotency
    try:
        result = check_continue(state, presented, idempotency_key=key, request_fingerprint="a")
    except (StaleToken, IdempotencyConflict):
        return
    if result is PROCEED:
        assert presented_turn == state.turns
        assert key is None or last is None or key != last.key
    else:  # a replay: exactly the retry of the last keyed turn
        assert last is not None and key == last.key and presented_turn == state.turns - 1
