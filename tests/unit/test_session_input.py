"""Turn input parsing, token presentation, Idempotency-Key and fingerprint."""

from __future__ import annotations

import hashlib
import json

import pytest

from parley.domain.session_input import (
    Action,
    TurnInput,
    canonical_json,
    check_idempotency_key,
    fingerprint,
    fragment,
    parse_turn_input,
    presented_token,
)
from parley.errors import InvalidRequest

SHAPE = "must be an object with exactly one of subscribe, unsubscribe, append, claim, reassign, done"


def refused(body: object, *, start: bool = False, ws: bool = False) -> str:
    with pytest.raises(InvalidRequest) as info:
        parse_turn_input(body, start=start, allow_ws_fields=ws)
    assert info.value.code == "invalid_request" and info.value.status == 400
    return info.value.message


# -- fragment -----------------------------------------------------------------


def test_fragment_strips_c0_del_c1_and_keeps_the_rest() -> None:
    assert fragment("a\x00b\x1fc\x7fd\x80e\x9ff\u00a0g") == "abcdef\u00a0g"


def test_fragment_cuts_to_120_plus_ellipsis_after_stripping() -> None:
    assert fragment("x" * 120) == "x" * 120
    assert fragment("x" * 121) == "x" * 120 + "…"
    assert fragment("\x01" * 50 + "y" * 120) == "y" * 120


# -- defaults and happy paths -------------------------------------------------


def test_empty_body_defaults() -> None:
    assert parse_turn_input({}, start=False) == TurnInput((), 0, 100, None, None)
    assert parse_turn_input({}, start=True) == TurnInput((), 0, 100, None, "inbox")


def test_full_continue_body() -> None:
    msg = {"type": "note", "body": "hi"}
    body = {
        "actions": [
            {"subscribe": {"channel": "c"}},
            {"subscribe": {"channel": "d", "from": "start"}},
            {"subscribe": {"channel": "e", "from": 17}},
            {"subscribe": {"channel": "e", "from": 3.0}},
            {"unsubscribe": {"channel": "c"}},
            {"append": {"channel": "c", "message": msg}},
            {"claim": {"channel": "c", "message": msg}},
            {"reassign": {"channel": "c", "message": msg, "assignee": {"agent_id": "a", "owner": "o"}}},
            {"done": {"channel": "c", "message": msg}},
        ],
        "wait": 60,
        "max": 500,
        "continuationToken": "ct_x",
    }
    ti = parse_turn_input(body, start=False)
    assert ti.wait == 60 and ti.max == 500 and ti.continuation_token == "ct_x" and ti.handler is None
    assert ti.actions == (
        Action("subscribe", "c", from_="head"),
        Action("subscribe", "d", from_="start"),
        Action("subscribe", "e", from_=17),
        Action("subscribe", "e", from_=3),
        Action("unsubscribe", "c"),
        Action("append", "c", message=msg),
        Action("claim", "c", message=msg),
        Action("reassign", "c", message=msg, assignee={"agent_id": "a", "owner": "o"}),
        Action("done", "c", message=msg),
    )
    assert type(ti.actions[3].from_) is int


def test_channel_and_message_contents_are_not_checked_here() -> None:
    ti = parse_turn_input({"actions": [{"append": {"channel": "NOT A SLUG!", "message": {"junk": 1}}}]}, start=False)
    assert ti.actions[0].channel == "NOT A SLUG!"


def test_start_handler() -> None:
    assert parse_turn_input({"handler": "digest"}, start=True).handler == "digest"
    for bad in ("", 1, None, True, ["inbox"]):
        assert refused({"handler": bad}, start=True) == "handler must be a non-empty string"


def test_handler_is_unknown_when_continuing() -> None:
    assert refused({"handler": "inbox"}) == 'unknown field "handler"'


# -- top-level refusals -------------------------------------------------------


@pytest.mark.parametrize("body", [[], "x", 1, None, True])
def test_body_must_be_an_object(body: object) -> None:
    assert refused(body) == "request body must be a JSON object"


def test_unknown_field_named_and_fragmented() -> None:
    assert refused({"x": 1}) == 'unknown field "x"'
    assert refused({"a\x00b": 1}) == 'unknown field "ab"'
    assert refused({"k" * 200: 1}) == 'unknown field "' + "k" * 120 + '…"'


def test_first_unknown_field_in_body_order() -> None:
    assert refused({"wait": 1, "zzz": 1, "aaa": 2}) == 'unknown field "zzz"'


def test_unknown_field_never_echoes_value() -> None:
    assert "SECRET" not in refused({"x": "SECRET"})


def test_start_refuses_continuation_token_whatever_its_value() -> None:
    for value in ("ct_x", "", None, 5):
        assert refused({"continuationToken": value}, start=True) == (
            "continuationToken is not allowed when starting a session"
        )


def test_ws_fields_only_when_allowed() -> None:
    assert refused({"sessionId": "s"}) == 'unknown field "sessionId"'
    assert refused({"idempotencyKey": "k"}) == 'unknown field "idempotencyKey"'
    ti = parse_turn_input({"sessionId": "ses_1", "idempotencyKey": "k-1"}, start=False, allow_ws_fields=True)
    assert ti.session_id == "ses_1" and ti.idempotency_key == "k-1"


def test_ws_field_types() -> None:
    assert refused({"sessionId": 5}, ws=True) == "sessionId must be a string"
    assert refused({"sessionId": None}, ws=True) == "sessionId must be a string"
    for bad in ("", "a b", "é", 5, None, "k" * 256):
        assert refused({"idempotencyKey": bad}, ws=True) == "idempotencyKey must be 1-255 visible ASCII characters"


@pytest.mark.parametrize("value", [-1, 61, 1.5, True, False, None, "1", [], float("nan"), float("inf"), 1e300])
def test_wait_refusals(value: object) -> None:
    assert refused({"wait": value}) == "wait must be an integer between 0 and 60"


@pytest.mark.parametrize("value", [0, -1, 501, 2.5, True, None, "100", {}])
def test_max_refusals(value: object) -> None:
    assert refused({"max": value}) == "max must be an integer between 1 and 500"


def test_js_integers_are_integers() -> None:
    ti = parse_turn_input({"wait": 2.0, "max": 1.0}, start=False)
    assert (ti.wait, ti.max) == (2, 1) and type(ti.wait) is int and type(ti.max) is int
    assert parse_turn_input({"wait": 0, "max": 1}, start=False).max == 1


@pytest.mark.parametrize("value", [None, 5, True, [], {}])
def test_non_string_token_refused(value: object) -> None:
    assert refused({"continuationToken": value}) == "continuationToken must be a string"


def test_empty_token_string_parses_and_is_missing_later() -> None:
    ti = parse_turn_input({"continuationToken": ""}, start=False)
    assert ti.continuation_token == ""
    assert presented_token(ti.continuation_token, "ct_header") is None


def test_scalar_checks_come_before_actions() -> None:
    assert refused({"actions": 5, "wait": -1}) == "wait must be an integer between 0 and 60"


# -- actions ------------------------------------------------------------------


@pytest.mark.parametrize("value", [{}, "x", 5, None, {"subscribe": {"channel": "c"}}])
def test_actions_must_be_an_array(value: object) -> None:
    assert refused({"actions": value}) == "actions must be an array of at most 100 actions"


def test_at_most_100_actions() -> None:
    ok = [{"unsubscribe": {"channel": "c"}}] * 100
    assert len(parse_turn_input({"actions": ok}, start=False).actions) == 100
    assert refused({"actions": ok + ok[:1]}) == "actions has more than 100 entries (101)"


@pytest.mark.parametrize(
    "item",
    [
        5,
        "subscribe",
        None,
        [],
        {},
        {"subscribe": {"channel": "c"}, "unsubscribe": {"channel": "c"}},
        {"publish": {"channel": "c"}},
        {"Subscribe": {"channel": "c"}},
    ],
)
def test_action_shape(item: object) -> None:
    body = {"actions": [{"unsubscribe": {"channel": "ok"}}, item]}
    assert refused(body) == f"actions[1] {SHAPE}"


def test_action_shape_never_echoes_the_key() -> None:
    assert "SECRETKIND" not in refused({"actions": [{"SECRETKIND": {}}]})


@pytest.mark.parametrize("kind", ["subscribe", "unsubscribe", "append", "claim", "reassign", "done"])
def test_action_value_must_be_an_object(kind: str) -> None:
    for bad in (None, "c", [], 1):
        assert refused({"actions": [{kind: bad}]}) == f"actions[0].{kind} must be an object"


@pytest.mark.parametrize(
    ("kind", "spec", "extra"),
    [
        ("subscribe", {"channel": "c", "extra": 1}, "extra"),
        ("unsubscribe", {"channel": "c", "from": "head"}, "from"),
        ("append", {"channel": "c", "message": {}, "assignee": {}}, "assignee"),
        ("claim", {"channel": "c", "message": {}, "from": 1}, "from"),
        ("done", {"channel": "c", "message": {}, "extra": 1}, "extra"),
        ("reassign", {"channel": "c", "message": {}, "assignee": {}, "extra": 1}, "extra"),
    ],
)
def test_extra_keys_inside_an_action(kind: str, spec: dict[str, object], extra: str) -> None:
    assert refused({"actions": [{kind: spec}]}) == f'unknown field "actions[0].{kind}.{extra}"'


def test_extra_key_inside_action_is_fragmented() -> None:
    body = {"actions": [{"subscribe": {"channel": "c", "\x07" + "z" * 130: 1}}]}
    assert refused(body) == 'unknown field "actions[0].subscribe.' + "z" * 120 + '…"'


@pytest.mark.parametrize("kind", ["subscribe", "unsubscribe", "append", "claim", "reassign", "done"])
def test_channel_must_be_a_string(kind: str) -> None:
    for spec in ({}, {"channel": None}, {"channel": 5}, {"channel": ["c"]}):
        assert refused({"actions": [{kind: spec}]}) == f"actions[0].{kind}.channel must be a string"


@pytest.mark.parametrize("value", ["HEAD", "end", "", -1, 1.5, True, None, [], {}])
def test_subscribe_from_refusals(value: object) -> None:
    body = {"actions": [{"unsubscribe": {"channel": "c"}}] * 3 + [{"subscribe": {"channel": "c", "from": value}}]}
    assert refused(body) == 'actions[3].subscribe.from must be "head", "start" or a non-negative integer'


@pytest.mark.parametrize("kind", ["append", "claim", "reassign", "done"])
def test_message_must_be_an_object(kind: str) -> None:
    for spec in ({"channel": "c"}, {"channel": "c", "message": None}, {"channel": "c", "message": []}):
        spec = {**spec, "assignee": {}} if kind == "reassign" else spec
        assert refused({"actions": [{kind: spec}]}) == f"actions[0].{kind}.message must be an object"


def test_assignee_must_be_an_object() -> None:
    for spec in ({"channel": "c", "message": {}}, {"channel": "c", "message": {}, "assignee": "bob"}):
        assert refused({"actions": [{"reassign": spec}]}) == "actions[0].reassign.assignee must be an object"


def test_first_bad_action_reported() -> None:
    body = {"actions": [{"unsubscribe": {"channel": "c"}}, {"append": {"channel": 1}}, 5]}
    assert refused(body) == "actions[1].append.channel must be a string"


# -- token presentation -------------------------------------------------------


def test_presented_token_rules() -> None:
    assert presented_token("ct_b", "ct_h") == "ct_b"
    assert presented_token(None, "ct_h") == "ct_h"
    assert presented_token("", "ct_h") is None
    assert presented_token(None, None) is None
    assert presented_token(None, "") is None
    assert presented_token("", None) is None
    with pytest.raises(InvalidRequest):
        presented_token(5, "ct_h")


# -- Idempotency-Key ----------------------------------------------------------


def test_idempotency_key_accepts_visible_ascii() -> None:
    assert check_idempotency_key(None) is None
    assert check_idempotency_key("a") == "a"
    visible = "".join(chr(c) for c in range(0x21, 0x7F))
    assert check_idempotency_key(visible) == visible
    assert check_idempotency_key("k" * 255) == "k" * 255


@pytest.mark.parametrize("raw", ["", " ", "a b", "a\tb", "k" * 256, "é", "\x7f", "a\x00", 5])
def test_idempotency_key_refusals(raw: object) -> None:
    with pytest.raises(InvalidRequest) as info:
        check_idempotency_key(raw)
    assert info.value.message == "Idempotency-Key must be 1-255 visible ASCII characters"


# -- fingerprint --------------------------------------------------------------


def test_canonical_json_form() -> None:
    assert canonical_json({"b": [1, {"d": 1, "c": "é"}], "a": None}) == '{"a":null,"b":[1,{"c":"é","d":1}]}'.encode()


def test_fingerprint_excludes_token_and_ignores_key_order() -> None:
    a = {"wait": 1, "actions": [], "continuationToken": "ct_1"}
    b = {"actions": [], "wait": 1}
    assert fingerprint(a) == fingerprint(b)
    expected = hashlib.sha256(b'{"actions":[],"wait":1}').hexdigest()
    assert fingerprint(b) == expected
    assert fingerprint({"wait": 2}) != fingerprint({"wait": 1})


def test_ws_fingerprint_excludes_ws_fields() -> None:
    from parley.domain.session_input import WS_FINGERPRINT_EXCLUDE

    frame = {"sessionId": "s", "idempotencyKey": "k", "continuationToken": "t", "wait": 1}
    assert fingerprint(frame, exclude=WS_FINGERPRINT_EXCLUDE) == fingerprint({"wait": 1})
    assert fingerprint(frame) != fingerprint({"wait": 1})


def test_fingerprint_survives_lone_surrogates() -> None:
    body = json.loads('{"x": "\\ud800"}')
    assert len(fingerprint(body)) == 64
