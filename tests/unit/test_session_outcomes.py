"""Turn-response shapes, rendering and describe."""

from __future__ import annotations

import json

from parley.domain.session import (
    contended,
    delivered,
    describe,
    finished,
    parked,
    render_response,
    stored_response,
)
from parley.domain.session_state import KeyedRequest, SessionState


def dumps(obj: object) -> str:
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":"))


def test_finished_shape_and_order() -> None:
    msg = delivered("c", 18, {"type": "note", "body": "hi"})
    out = finished("ses_1", "ct_a", results=[{"ok": True}], messages=[msg], cursors={"c": 18})
    assert dumps(out) == (
        '{"sessionId":"ses_1","status":"finished","continuationToken":"ct_a",'
        '"output":{"results":[{"ok":true}],"messages":[{"channel":"c","cursor":18,'
        '"message":{"type":"note","body":"hi"}}],"cursors":{"c":18}}}'
    )


def test_parked_shape() -> None:
    out = parked("ses_1", "ct_a", results=[], cursors={"b": 2, "a": 1})
    assert out == {
        "sessionId": "ses_1",
        "status": "parked",
        "continuationToken": "ct_a",
        "output": {"results": [], "messages": [], "cursors": {"b": 2, "a": 1}},
        "wait": {"channels": ["b", "a"], "cursors": {"b": 2, "a": 1}},
    }
    assert list(out) == ["sessionId", "status", "continuationToken", "output", "wait"]
    narrowed = parked("ses_1", "ct_a", results=[], cursors={"b": 2, "a": 1}, wait_channels=["a"])
    assert narrowed["wait"] == {"channels": ["a"], "cursors": {"a": 1}}


def test_contended_shape() -> None:
    out = contended("ses_1", "ct_same", current=41)
    assert dumps(out) == '{"sessionId":"ses_1","status":"contended","continuationToken":"ct_same","current":41}'


def test_helpers_copy_their_inputs() -> None:
    cursors = {"c": 1}
    results: list[object] = []
    out = finished("s", "t", results=results, messages=[], cursors=cursors)
    cursors["c"] = 99
    results.append(1)
    assert out["output"]["cursors"] == {"c": 1} and out["output"]["results"] == []


def test_render_of_stored_is_byte_identical() -> None:
    for wire in (
        finished("s", "ct_1", results=[{"z": 1, "a": 2}], messages=[delivered("c", 1, {"b": 1, "a": 0})], cursors={"c": 1}),
        parked("s", "ct_1", results=[], cursors={"c": 1}),
    ):
        stored = stored_response(wire)
        assert "continuationToken" not in stored
        assert dumps(render_response(stored, "ct_1")) == dumps(wire)
        # a store that reorders the top-level keys still renders the same bytes
        shuffled = dict(reversed(list(stored.items())))
        shuffled["output"] = dict(reversed(list(stored["output"].items())))
        assert dumps(render_response(shuffled, "ct_1")) == dumps(wire)


def test_render_keeps_unknown_keys_after_known_ones() -> None:
    out = render_response({"digest": "x", "status": "finished", "sessionId": "s"}, "ct")
    assert list(out) == ["sessionId", "status", "continuationToken", "digest"]


def test_describe_never_shows_tokens() -> None:
    state = SessionState(
        session_id="ses_1",
        agent_id="a",
        owner="o",
        handler="inbox",
        created_ts="t0",
        updated_ts="t1",
        subscriptions={"c": 3},
        turns=2,
        token_digest="DIGEST",
        last_response={"x": 1},
        start_idempotency=KeyedRequest("k", "f"),
    )
    body = describe(state, in_turn=False)
    assert body == {
        "sessionId": "ses_1",
        "agent_id": "a",
        "owner": "o",
        "handler": "inbox",
        "turns": 2,
        "subscriptions": {"c": 3},
        "status": "idle",
        "created_ts": "t0",
        "updated_ts": "t1",
    }
    assert "DIGEST" not in dumps(body)
    assert describe(state, in_turn=True)["status"] == "in_turn"
