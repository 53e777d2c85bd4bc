"""Message schema and backbone boundary checks (contract §2.1-§2.10, §3, §4.3).

Issue strings are compared whole: Caucus clients parse them with regexes.
"""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from parley.domain.message import (
    MAX_BODY_CHARS,
    MAX_FIELD_CHARS,
    MAX_RECIPIENTS,
    MAX_REPORTED_ISSUES,
    MESSAGE_TYPES,
    SCHEMA_VERSION,
    SLUG_RE,
    STATUS_VALUES,
    ULID_RE,
    as_resolved,
    check_append,
    check_channel_name,
    check_claim,
    check_create_options,
    check_read_args,
    dup_key,
    normalize_target,
    sanitize_message_fields,
    stamp,
    validate,
    validate_assignee,
    with_version,
)
from parley.errors import InvalidChannelName, InvalidCursor, InvalidMessage

ULID = "01ARZ3NDEKTSV4RRFFQ69G5FAV"
ULID2 = "01BX5ZZKBKACTAV9WEVGEMMVRZ"
TYPES_ISSUE = "type must be one of finding, claim, status, question, answer, note, steer"
STATUS_ISSUE = "status must be one of needs-response, resolved, fyi"
BODY_CTRL = "body must not contain control characters (tab and newline are allowed)"
SLUG_HINT = " (must match ^[a-z0-9][a-z0-9-]{0,63}$)"


def note(**fields: Any) -> dict[str, Any]:
    msg: dict[str, Any] = {
        "v": 1, "type": "note", "agent_id": "agent-1", "owner": "alice", "msg_id": ULID,
        "body": "hello",
    }
    msg.update(fields)
    return msg


def claim(**fields: Any) -> dict[str, Any]:
    return note(**{"type": "claim", "target": "src/app.py", **fields})


def without(msg: dict[str, Any], *keys: str) -> dict[str, Any]:
    return {k: v for k, v in msg.items() if k not in keys}


def issues_of(exc: pytest.ExceptionInfo[InvalidMessage]) -> list[str]:
    assert exc.value.issues is not None
    return exc.value.issues


# ======================================================================= constants


def test_constants() -> None:
    assert SCHEMA_VERSION == 1
    assert MESSAGE_TYPES == ("finding", "claim", "status", "question", "answer", "note", "steer")
    assert STATUS_VALUES == ("needs-response", "resolved", "fyi")
    assert (MAX_BODY_CHARS, MAX_FIELD_CHARS, MAX_RECIPIENTS, MAX_REPORTED_ISSUES) == (
        16000, 1024, 32, 10)
    assert ULID_RE.pattern == "^[0-9A-HJKMNP-TV-Z]{26}$"
    assert SLUG_RE.pattern == "^[a-z0-9][a-z0-9-]{0,63}$"


# ======================================================================= validate: valid


@pytest.mark.parametrize("kind", [t for t in MESSAGE_TYPES if t != "claim"])
def test_every_non_claim_type_is_valid(kind: str) -> None:
    assert validate(note(type=kind)) == []


def test_full_valid_messages() -> None:
    assert validate(note(thread=ULID, reply_to=ULID2, to=["bob", "carol"], status="fyi",
                         artifact="caucus://artifact/x/" + "a" * 64, ts="t#1",
                         body="line 1\n\tline 2")) == []
    assert validate(claim(lease_ttl=60, heartbeat=True, status="resolved", to=["x"])) == []
    assert validate(claim(lease_ttl=1.0, heartbeat=False)) == []
    assert validate(note(v=1.0)) == []


def test_whitespace_only_body_is_not_empty() -> None:
    # Caucus: typeof body === "string" && body.length > 0 (no trim)
    assert validate(note(body="   ")) == []
    assert validate(note(body="\n")) == []


# ======================================================================= validate: issues


def test_not_an_object() -> None:
    for value in (None, [], "x", 1, True, [note()]):
        assert validate(value) == ["message must be a JSON object"]


def test_empty_object_lists_required_fields_in_order() -> None:
    assert validate({}) == [
        "v must be 1", TYPES_ISSUE, "agent_id must be a non-empty string",
        "owner must be a non-empty string", "msg_id must be a ULID",
        "body must be a non-empty string",
    ]


def test_issue_order_follows_caucus_validate() -> None:
    msg = {
        "ts": "", "heartbeat": 1, "artifact": "", "status": "done", "to": [], "reply_to": "r",
        "thread": "t", "body": "", "msg_id": "m", "owner": "", "agent_id": "", "type": "nope",
        "v": 0, "zz": 1,
    }
    assert validate(msg) == [
        'unknown field "zz"', "v must be 1", TYPES_ISSUE,
        "agent_id must be a non-empty string", "owner must be a non-empty string",
        "msg_id must be a ULID", "body must be a non-empty string", "thread must be a ULID",
        "reply_to must be a ULID", "to must be a non-empty array of non-empty strings",
        STATUS_ISSUE, "artifact must be a non-empty string", "ts must be a non-empty string",
        "heartbeat is only valid on claim messages",
    ]


def test_unknown_fields_are_listed_then_summarised() -> None:
    msg = note(**{f"k{i:02d}": i for i in range(13)})
    issues = validate(msg)
    assert issues[:10] == [f'unknown field "k{i:02d}"' for i in range(10)]
    assert issues[10] == "…and 3 more unknown fields"
    assert len(issues) == 11


def test_exactly_ten_unknown_fields_has_no_summary() -> None:
    issues = validate(note(**{f"k{i}": i for i in range(10)}))
    assert len(issues) == 10 and not any(i.startswith("…") for i in issues)


def test_unknown_field_key_is_stripped_and_capped() -> None:
    assert validate(note(**{"ev\x1b[2Jil\x9b": 1})) == ['unknown field "ev[2Jil"']
    assert validate(note(**{"k" * 500: 1})) == ['unknown field "' + "k" * 120 + '…"']


def test_unknown_fields_in_javascript_key_order() -> None:
    # Object.keys lists array-index keys first, ascending, then insertion order.
    msg = {"zeta": 1, "10": 1, **note(), "2": 1, "01": 1, "4294967295": 1, "4294967294": 1}
    assert validate(msg) == [
        'unknown field "2"', 'unknown field "10"', 'unknown field "4294967294"',
        'unknown field "zeta"', 'unknown field "01"', 'unknown field "4294967295"',
    ]


@pytest.mark.parametrize("v", [0, 2, True, "1", None, 1.5])
def test_v_must_be_one(v: Any) -> None:
    assert validate(note(v=v)) == ["v must be 1"]
    assert validate(without(note(), "v")) == ["v must be 1"]


@pytest.mark.parametrize("kind", ["", "Note", "claims", None, 1, ["note"]])
def test_type_enum(kind: Any) -> None:
    assert validate(note(type=kind)) == [TYPES_ISSUE]


@pytest.mark.parametrize("field", ["agent_id", "owner"])
def test_identity_fields_short_circuit(field: str) -> None:
    for bad in ("", None, 7, ["a"]):
        assert validate(note(**{field: bad})) == [f"{field} must be a non-empty string"]
    # control chars win over length
    assert validate(note(**{field: "\x1b" + "x" * 2000})) == [
        f"{field} must not contain control characters"]
    assert validate(note(**{field: "x" * 1025})) == [f"{field} exceeds 1024 characters (1025)"]
    assert validate(note(**{field: "x" * 1024})) == []
    # lengths are UTF-16 code units
    assert validate(note(**{field: "😀" * 512})) == []
    assert validate(note(**{field: "😀" * 513})) == [f"{field} exceeds 1024 characters (1026)"]
    assert validate(without(note(), field)) == [f"{field} must be a non-empty string"]


def test_identity_cap_is_a_parameter() -> None:
    assert validate(note(owner="abcdefgh"), max_field_chars=7) == ["owner exceeds 7 characters (8)"]


@pytest.mark.parametrize(
    "bad", [ULID.lower(), ULID[:-1], ULID + "0", "I" * 26, "L" * 26, "O" * 26, "U" * 26,
            ULID + "\n", None, 1, [ULID]],
)
def test_ulid_fields(bad: Any) -> None:
    assert validate(note(msg_id=bad)) == ["msg_id must be a ULID"]
    assert validate(note(thread=bad)) == ["thread must be a ULID"]
    assert validate(note(reply_to=bad)) == ["reply_to must be a ULID"]


def test_null_is_present_not_absent() -> None:
    assert validate(note(thread=None, to=None, status=None, artifact=None, ts=None)) == [
        "thread must be a ULID", "to must be a non-empty array of non-empty strings",
        STATUS_ISSUE, "artifact must be a non-empty string", "ts must be a non-empty string",
    ]
    assert validate(note(target=None, lease_ttl=None, heartbeat=None)) == [
        "target is only valid on claim messages", "lease_ttl is only valid on claim messages",
        "heartbeat is only valid on claim messages",
    ]


def test_body_rules() -> None:
    for bad in ("", None, 5, ["x"]):
        assert validate(note(body=bad)) == ["body must be a non-empty string"]
    for bad in ("a\rb", "crlf\r\n", "\x1b[31m", "x\x7f", "x\x9b", "\x00"):
        assert validate(note(body=bad)) == [BODY_CTRL]
    assert validate(note(body="tabs\tand\nnewlines")) == []
    # the schema has no body cap; the backbone adds one
    assert validate(note(body="x" * 20000)) == []


def test_to_rules() -> None:
    bad_shape = "to must be a non-empty array of non-empty strings"
    for bad in ([], "bob", ["bob", ""], ["bob", 1], [None], {"a": 1}):
        assert validate(note(to=bad)) == [bad_shape]
    assert validate(note(to=["a"] * 32)) == []
    assert validate(note(to=["a"] * 33)) == ["to[] has more than 32 recipients (33)"]
    # the count is checked before control characters
    assert validate(note(to=["\x1b"] * 33)) == ["to[] has more than 32 recipients (33)"]
    assert validate(note(to=["ok", "b\x1b", "c\x9b"])) == [
        "to entries must not contain control characters"]
    # the schema does not cap entry length; the backbone does
    assert validate(note(to=["x" * 5000])) == []


def test_status_rules() -> None:
    for good in STATUS_VALUES:
        assert validate(note(status=good)) == []
    for bad in ("Resolved", "", 1, ["fyi"]):
        assert validate(note(status=bad)) == [STATUS_ISSUE]


def test_artifact_rules() -> None:
    assert validate(note(artifact="")) == ["artifact must be a non-empty string"]
    assert validate(note(artifact=3)) == ["artifact must be a non-empty string"]
    assert validate(note(artifact="https://x/\x1b")) == [
        "artifact must not contain control characters"]
    assert validate(note(artifact="😀" * 513)) == ["artifact exceeds 1024 characters (1026)"]


def test_ts_rules() -> None:
    assert validate(note(ts="anything")) == []
    assert validate(note(ts="")) == ["ts must be a non-empty string"]
    assert validate(note(ts=5)) == ["ts must be a non-empty string"]
    assert validate(note(ts="\x1b")) == []  # overwritten on append; no control check


def test_claim_target_rules() -> None:
    missing = "claim requires a non-empty target"
    assert validate(without(claim(), "target")) == [missing]
    for bad in ("", "   ", "\ufeff\u3000", "\t\n", None, 5, ["x"]):
        assert validate(claim(target=bad)) == [missing]
    assert validate(claim(target="a\x1bb")) == ["target must not contain control characters"]
    # \x1c is not JS whitespace: not empty after trim, but a control char
    assert validate(claim(target="\x1c")) == ["target must not contain control characters"]
    assert validate(claim(target="  padded  ")) == []
    assert validate(claim(target="x" * 5000)) == []  # cap is the backbone's


@pytest.mark.parametrize("ttl", [0, -1, 1.5, True, False, "60", None, [60], float("inf")])
def test_lease_ttl_must_be_positive_integer(ttl: Any) -> None:
    assert validate(claim(lease_ttl=ttl)) == ["lease_ttl must be a positive integer (seconds)"]


@pytest.mark.parametrize("ttl", [1, 1.0, 3600, 2**60, 1e20])
def test_lease_ttl_accepts_js_integers(ttl: Any) -> None:
    assert validate(claim(lease_ttl=ttl)) == []


@pytest.mark.parametrize("hb", [1, 0, "true", None, []])
def test_heartbeat_must_be_boolean(hb: Any) -> None:
    assert validate(claim(heartbeat=hb)) == ["heartbeat must be a boolean"]


def test_claim_issue_order() -> None:
    assert validate(claim(target="", lease_ttl=0, heartbeat="y")) == [
        "claim requires a non-empty target", "lease_ttl must be a positive integer (seconds)",
        "heartbeat must be a boolean",
    ]


def test_claim_only_fields_rejected_on_other_types() -> None:
    assert validate(note(heartbeat=True, lease_ttl=5, target="t")) == [
        "target is only valid on claim messages", "lease_ttl is only valid on claim messages",
        "heartbeat is only valid on claim messages",
    ]


def test_invalid_type_with_claim_fields_reports_them_as_non_claim() -> None:
    assert validate(note(type="bogus", target="t")) == [
        TYPES_ISSUE, "target is only valid on claim messages"]


# ======================================================================= assignee


def test_validate_assignee() -> None:
    assert validate_assignee({"agent_id": "bob-1", "owner": "bob"}) == []
    assert validate_assignee({}) == [
        "assignee.agent_id must be a non-empty string", "assignee.owner must be a non-empty string"]
    assert validate_assignee(None) == validate_assignee("x") == validate_assignee({})
    assert validate_assignee({"agent_id": "a\x1b", "owner": "o" * 1025}) == [
        "assignee.agent_id must not contain control characters",
        "assignee.owner exceeds 1024 characters (1025)",
    ]


# ======================================================================= check_append


def test_check_append_returns_version_stamped_copy() -> None:
    msg = without(note(), "v")
    out = check_append(msg)
    assert out == {**msg, "v": 1} and list(out)[-1] == "v"
    assert "v" not in msg  # not mutated


def test_check_append_overwrites_client_v_in_place() -> None:
    msg = {"v": 0, **without(note(), "v")}
    out = check_append(msg)
    assert out["v"] == 1 and list(out)[0] == "v"


def test_check_append_refuses_claims_before_validating() -> None:
    with pytest.raises(InvalidMessage) as exc:
        check_append({"type": "claim", "junk": 1})
    assert issues_of(exc) == ["use claim() for claim messages"]
    assert exc.value.message == "Invalid message: use claim() for claim messages"
    assert exc.value.code == "invalid_message" and exc.value.status == 400


def test_check_append_raises_all_schema_issues() -> None:
    with pytest.raises(InvalidMessage) as exc:
        check_append(note(body="", msg_id="x", extra=1))
    assert issues_of(exc) == [
        'unknown field "extra"', "msg_id must be a ULID", "body must be a non-empty string"]
    assert exc.value.message == (
        'Invalid message: unknown field "extra"; msg_id must be a ULID; '
        "body must be a non-empty string")
    assert exc.value.envelope()["error"]["issues"] == issues_of(exc)


def test_check_append_body_cap_in_utf16_units() -> None:
    check_append(note(body="x" * 16000))
    check_append(note(body="😀" * 8000))
    for body in ("x" * 16001, "😀" * 8001):
        with pytest.raises(InvalidMessage) as exc:
            check_append(note(body=body))
        assert issues_of(exc) == ["body exceeds 16000 characters"]


def test_check_append_to_entry_cap() -> None:
    check_append(note(to=["x" * 1024]))
    with pytest.raises(InvalidMessage) as exc:
        check_append(note(to=["ok", "😀" * 513]))
    assert issues_of(exc) == ["to[] entry exceeds 1024 characters"]


def test_check_append_body_cap_before_to_cap_and_schema_before_both() -> None:
    with pytest.raises(InvalidMessage) as exc:
        check_append(note(body="x" * 16001, to=["x" * 2000]))
    assert issues_of(exc) == ["body exceeds 16000 characters"]
    with pytest.raises(InvalidMessage) as exc:
        check_append(note(body="x" * 16001, status="nope"))
    assert issues_of(exc) == [STATUS_ISSUE]


def test_check_append_caps_are_parameters() -> None:
    with pytest.raises(InvalidMessage) as exc:
        check_append(note(body="abcdef"), max_body_chars=5)
    assert issues_of(exc) == ["body exceeds 5 characters"]
    with pytest.raises(InvalidMessage) as exc:
        check_append(note(to=["abcdefgh"]), max_field_chars=7)
    assert issues_of(exc) == ["to[] entry exceeds 7 characters"]
    check_append(note(body="x" * 20000), max_body_chars=20000)


# ======================================================================= check_claim


@pytest.mark.parametrize(
    ("op", "issue"),
    [("claim", 'claim() requires type "claim"'),
     ("reassign", 'reassignClaim() requires type "claim"'),
     ("done", 'markClaimDone() requires type "claim"')],
)
def test_check_claim_requires_claim_type_first(op: Any, issue: str) -> None:
    with pytest.raises(InvalidMessage) as exc:
        check_claim({"type": "note", "junk": True}, op)
    assert issues_of(exc) == [issue]
    assert exc.value.message == "Invalid message: " + issue


def test_check_claim_rejects_unknown_op() -> None:
    with pytest.raises(ValueError):
        check_claim(claim(), "steal")  # type: ignore[arg-type]


@pytest.mark.parametrize("op", ["claim", "reassign", "done"])
def test_check_claim_returns_normalised_key(op: Any) -> None:
    assert check_claim(claim(target="  cafe\u0301 "), op) == "caf\u00e9"


def test_check_claim_validates_whole_message() -> None:
    with pytest.raises(InvalidMessage) as exc:
        check_claim(claim(target=" ", lease_ttl=0, v=0), "claim")
    assert issues_of(exc) == [
        "claim requires a non-empty target", "lease_ttl must be a positive integer (seconds)"]


def test_check_claim_done_forces_resolved_status() -> None:
    assert check_claim(claim(status="bogus"), "done") == "src/app.py"
    with pytest.raises(InvalidMessage) as exc:
        check_claim(claim(status="bogus"), "claim")
    assert issues_of(exc) == [STATUS_ISSUE]
    assert as_resolved(claim())["status"] == "resolved"
    assert list(as_resolved(claim(status="fyi", extra_order=1)))[-2:] == ["status", "extra_order"]


def test_check_claim_caps_in_order() -> None:
    with pytest.raises(InvalidMessage) as exc:
        check_claim(claim(body="x" * 16001, target="t" * 1025, to=["x" * 1025]), "claim")
    assert issues_of(exc) == ["body exceeds 16000 characters"]
    with pytest.raises(InvalidMessage) as exc:
        check_claim(claim(target="😀" * 513, to=["x" * 1025]), "reassign")
    assert issues_of(exc) == ["target exceeds 1024 characters"]
    with pytest.raises(InvalidMessage) as exc:
        check_claim(claim(to=["x" * 1025]), "done")
    assert issues_of(exc) == ["to[] entry exceeds 1024 characters"]
    assert check_claim(claim(target="t" * 1024, to=["x" * 1024]), "claim") == "t" * 1024


def test_check_claim_caps_are_parameters() -> None:
    with pytest.raises(InvalidMessage) as exc:
        check_claim(claim(target="abcdefgh"), "claim", max_field_chars=7)
    assert issues_of(exc) == ["target exceeds 7 characters"]
    with pytest.raises(InvalidMessage) as exc:
        check_claim(claim(body="abcdef"), "claim", max_body_chars=5)
    assert issues_of(exc) == ["body exceeds 5 characters"]


def test_with_version_keeps_position() -> None:
    assert list(with_version({"a": 1, "v": 0, "b": 2})) == ["a", "v", "b"]
    assert with_version({"a": 1}) == {"a": 1, "v": 1}


# ======================================================================= normalize_target


def test_normalize_target() -> None:
    assert normalize_target("  Src/App.py\n") == "Src/App.py"  # case kept
    assert normalize_target("e\u0301") == normalize_target("\u00e9") == "\u00e9"
    assert normalize_target("a\u200bb") != normalize_target("ab")  # zero-width kept
    assert normalize_target("\ufeffx\u3000") == "x"
    assert normalize_target("\x1cx") == "\x1cx"  # \x1c is not JS whitespace


@pytest.mark.parametrize("raw", ["", "   ", "\u2028\ufeff"])
def test_normalize_target_empty(raw: str) -> None:
    with pytest.raises(InvalidMessage) as exc:
        normalize_target(raw)
    assert issues_of(exc) == ["target must not be empty"]


# ======================================================================= channel names


@pytest.mark.parametrize("name", ["a", "0", "war-room-incident-42", "a-", "a" * 64, "x--y"])
def test_valid_channel_names(name: str) -> None:
    assert check_channel_name(name) == name


@pytest.mark.parametrize(
    ("name", "shown"),
    [("", '""'), ("-a", '"-a"'), ("A", '"A"'), ("a" * 65, '"' + "a" * 65 + '"'),
     ("war room", '"war room"'), ("ok\n", '"ok"'), ('a"b', '"a\\"b"'), ("é", '"é"'),
     ("bad\x1b[2J", '"bad[2J"'), ("x" * 300, '"' + "x" * 120 + '…"')],
)
def test_invalid_channel_names(name: str, shown: str) -> None:
    with pytest.raises(InvalidChannelName) as exc:
        check_channel_name(name)
    assert exc.value.message == "Invalid channel name: " + shown + SLUG_HINT
    assert exc.value.code == "invalid_channel_name" and exc.value.status == 400


@pytest.mark.parametrize("name", [None, 5, ["a"], {"a": 1}, True])
def test_non_string_channel_name_is_400_not_500(name: Any) -> None:
    with pytest.raises(InvalidChannelName) as exc:
        check_channel_name(name)
    assert exc.value.message == (
        "Invalid channel name: channel must be a string (must match ^[a-z0-9][a-z0-9-]{0,63}$)")


def test_channel_name_message_is_parsable_by_caucus_client() -> None:
    # HttpBackbone takes the channel name from the first "…" token.
    with pytest.raises(InvalidChannelName) as exc:
        check_channel_name("Bad-Name")
    assert exc.value.message.split('"')[1] == "Bad-Name"


# ======================================================================= createChannel options


def test_create_defaults() -> None:
    assert check_create_options({"channel": "x"}) == {
        "verbosity": "quiet", "renderBudgetChars": 200}


def test_create_passes_through_and_ignores_unknown() -> None:
    out = check_create_options({"purpose": "Fix\tthe\nbuild", "verbosity": "chatty",
                                "renderBudgetChars": 8000.0, "created_by": "alice",
                                "expected_types": ["x"], "kind": "durable"})
    assert out == {"purpose": "Fix\tthe\nbuild", "verbosity": "chatty", "renderBudgetChars": 8000}
    assert type(out["renderBudgetChars"]) is int


@pytest.mark.parametrize("verbosity", ["loud", 3, ["x"], {"a": 1}, False])
def test_create_verbosity_is_not_validated(verbosity: Any) -> None:
    assert check_create_options({"verbosity": verbosity})["verbosity"] == verbosity


def test_create_null_verbosity_defaults_to_quiet() -> None:
    assert check_create_options({"verbosity": None})["verbosity"] == "quiet"


def _create_issue(body: dict[str, Any]) -> list[str]:
    with pytest.raises(InvalidMessage) as exc:
        check_create_options(body)
    return issues_of(exc)


def test_create_purpose_checks() -> None:
    for bad in (None, 5, ["x"]):
        assert _create_issue({"purpose": bad}) == ["purpose must be a string"]
    assert _create_issue({"purpose": "😀" * 513}) == ["purpose exceeds 1024 characters"]
    assert _create_issue({"purpose": "x\r"}) == [
        "purpose must not contain control characters (tab and newline are allowed)"]
    # length before control characters
    assert _create_issue({"purpose": "\x1b" * 1025}) == ["purpose exceeds 1024 characters"]
    assert check_create_options({"purpose": ""})["purpose"] == ""
    assert check_create_options({"purpose": "x" * 1024})["purpose"] == "x" * 1024


def test_create_created_by_checks() -> None:
    assert _create_issue({"created_by": None}) == ["created_by must be a string"]
    assert _create_issue({"created_by": "al\tice"}) == [
        "created_by must not contain control characters"]
    assert "created_by" not in check_create_options({"created_by": "x" * 5000})  # no cap


@pytest.mark.parametrize("budget", [0, 8001, 1.5, True, "200", None, -1, float("nan")])
def test_create_render_budget_range(budget: Any) -> None:
    assert _create_issue({"renderBudgetChars": budget}) == [
        "renderBudgetChars must be an integer in [1, 8000]"]


def test_create_check_order() -> None:
    assert _create_issue({"purpose": 1, "created_by": 1, "renderBudgetChars": 0}) == [
        "purpose must be a string"]
    assert _create_issue({"created_by": 1, "renderBudgetChars": 0}) == [
        "created_by must be a string"]


def test_create_purpose_cap_is_a_parameter() -> None:
    with pytest.raises(InvalidMessage) as exc:
        check_create_options({"purpose": "abcd"}, max_field_chars=3)
    assert issues_of(exc) == ["purpose exceeds 3 characters"]


# ======================================================================= dup key


def test_dup_key() -> None:
    assert dup_key(note(body="  same \n")) == "note same"
    assert dup_key(note(body="same")) == dup_key(note(body="\ufeffsame\u3000"))
    assert dup_key(note(type="finding", body="same")) != dup_key(note(body="same"))
    assert dup_key(note(body="same\x1c")) != dup_key(note(body="same"))  # JS keeps \x1c


# ======================================================================= read layer


def test_sanitize_message_fields() -> None:
    stored = {"v": 1, "type": "claim", "agent_id": "a\x1bgent", "owner": "ow\x9bner",
              "msg_id": ULID, "body": "l1\n\tl2\r\x1b[2J", "to": ["b\x07ob", "carol"],
              "target": "t\x00", "artifact": "u\x7f", "status": "resolved",
              "ts": "2026\x1b#1", "thread": ULID}
    out = sanitize_message_fields(stored)
    assert out == {"v": 1, "type": "claim", "agent_id": "agent", "owner": "owner",
                   "msg_id": ULID, "body": "l1\n\tl2[2J", "to": ["bob", "carol"],
                   "target": "t", "artifact": "u", "status": "resolved",
                   "ts": "2026\x1b#1", "thread": ULID}
    assert list(out) == list(stored)
    assert stored["body"] == "l1\n\tl2\r\x1b[2J"  # input untouched


def test_sanitize_message_fields_leaves_clean_and_absent_fields() -> None:
    msg = {**note(), "ts": "t"}
    assert sanitize_message_fields(msg) == msg
    assert "to" not in sanitize_message_fields(msg)


@given(st.text(max_size=40), st.lists(st.text(max_size=10), max_size=3))
def test_sanitized_frames_have_no_control_chars(body: str, to: list[str]) -> None:
    out = sanitize_message_fields(note(body=body, to=to, owner=body, agent_id=body))
    strip = str.maketrans("", "", "\t\n")
    for value in (out["owner"], out["agent_id"], out["body"].translate(strip), *out["to"]):
        assert not any(ord(c) < 0x20 or 0x7F <= ord(c) <= 0x9F for c in value)


# ======================================================================= read args


def test_read_args_defaults_and_clamping() -> None:
    assert check_read_args({"cursor": 0}, 10, 500) == (0, 500)
    assert check_read_args({"cursor": 10}, 10, 500) == (10, 500)
    assert check_read_args({"cursor": 3, "limit": 2}, 10, 500) == (3, 2)
    assert check_read_args({"cursor": 3, "limit": 10**6}, 10, 500) == (3, 500)
    assert check_read_args({"cursor": 3.0, "limit": 2.0}, 10, 500) == (3, 2)
    assert check_read_args({"cursor": -0.0}, 0, 500) == (0, 500)
    assert check_read_args({"cursor": 0, "limit": 1e300}, 0, 7) == (0, 7)
    cursor, limit = check_read_args({"cursor": 1.0, "limit": 5.0}, 1, 500)
    assert type(cursor) is int and type(limit) is int


@pytest.mark.parametrize("body", [{}, {"cursor": None}, {"cursor": -1}, {"cursor": 11},
                                  {"cursor": 1.5}, {"cursor": True}, {"cursor": "0"},
                                  {"cursor": [0]}, {"cursor": float("inf")},
                                  {"cursor": None, "limit": 0}])
def test_read_args_bad_cursor(body: dict[str, Any]) -> None:
    with pytest.raises(InvalidCursor) as exc:
        check_read_args(body, 10, 500)
    assert exc.value.message == "cursor must be an integer in [0, 10]"
    assert exc.value.code == "invalid_cursor" and exc.value.status == 400


@pytest.mark.parametrize("limit", [None, 0, -1, 1.5, True, "5", [5]])
def test_read_args_bad_limit(limit: Any) -> None:
    with pytest.raises(InvalidCursor) as exc:
        check_read_args({"cursor": 0, "limit": limit}, 10, 500)
    assert exc.value.message == "limit must be a positive integer"


# ======================================================================= stamp


def test_stamp_format() -> None:
    assert stamp(1781100120000, 42) == "2026-06-10T14:02:00.000Z#000000000042"
    assert stamp(0, 1) == "1970-01-01T00:00:00.000Z#000000000001"
    assert stamp(1781100120999, 7) == "2026-06-10T14:02:00.999Z#000000000007"
    assert stamp(-1, 0) == "1969-12-31T23:59:59.999Z#000000000000"
    assert stamp(0, 10**13) == "1970-01-01T00:00:00.000Z#10000000000000"  # pad, never cut


@given(st.integers(0, 253402300799999), st.integers(0, 10**12 - 2))
def test_stamps_sort_in_order(now_ms: int, seq: int) -> None:
    a, b = stamp(now_ms, seq), stamp(now_ms, seq + 1)
    assert a < b and len(a) == len(b) == 37
