"""``parley_catch_me_up``'s digests are a pure fold (contracts/mcp.md §4): no server needed."""

from __future__ import annotations

from parley.mcp import digest

CONTRACT_MARKDOWN = """# war-room — parley session channel (auto-created at startup)
_Parley war-room digest._

## Participants
- alice — 7 (as alice-agent)
- bob — 1 (as bob-agent)

## Timeline of findings
- alice · db pool exhausted at 14:02 (max 10 conns)
- alice · repro script attached ↗artifact

## Claims
### Open
_None._
### Resolved
- db-pool exhaustion — bob

## Open questions
- alice · who owns the pool config?

## Counts
finding: 2 · claim: 3 · status: 1 · question: 1 · steer: 1

---
_Parley digest · resume with since=8 · 8 messages in this window._"""


def msg(n: int, type_: str, body: str, owner: str = "alice", **extra) -> dict:
    return {"type": type_, "body": body, "owner": owner, "agent_id": f"{owner}-agent", "msg_id": f"m{n}", "ts": f"t{n}", **extra}


def the_contract_window() -> list[dict]:
    return [
        msg(1, "finding", "db pool exhausted at 14:02 (max 10 conns)"),
        msg(2, "finding", "repro script attached", artifact="caucus://artifact/war-room/" + "a" * 64),
        msg(3, "claim", "claiming db-pool exhaustion", target="db-pool exhaustion"),
        msg(4, "claim", "reassigning", target="db-pool exhaustion", assignee={"agent_id": "bob-agent", "owner": "bob"}),
        msg(5, "status", "looking"),
        msg(6, "question", "who owns the pool config?"),
        msg(7, "steer", "check the deploy"),
        msg(8, "claim", "done", owner="bob", target=" db-pool exhaustion ", status="resolved"),
    ]


def test_the_contract_example_renders_byte_for_byte():
    folded = digest.structured(the_contract_window(), 0, 8)
    purpose = "parley session channel (auto-created at startup)"
    assert digest.markdown(folded, "war-room", purpose) == CONTRACT_MARKDOWN


def test_the_structured_digest_keeps_the_contract_key_order_and_rules():
    window = the_contract_window()
    window[3:3] = [msg(9, "answer", "me", thread="m6", status="fyi")]  # not resolved: still open
    folded = digest.structured(window, 0, 9)
    assert list(folded) == [
        "window", "by_type", "by_participant", "open_claims", "resolved_claims",
        "unanswered_questions", "answered_questions_count", "key_findings", "findings_overflow",
    ]
    assert list(folded["by_type"]) == list(digest.TYPES) and folded["by_type"]["note"] == 0
    assert folded["resolved_claims"] == [
        {"target": "db-pool exhaustion", "resolved_by": {"owner": "bob", "agent_id": "bob-agent", "ts": "t8"}}
    ]
    assert [q["msg_id"] for q in folded["unanswered_questions"]] == ["m6"]
    resolved = folded_with(window + [msg(10, "answer", "me", reply_to="m6", status="resolved")])
    assert resolved["unanswered_questions"] == [] and resolved["answered_questions_count"] == 1
    assert [f["has_artifact"] for f in folded["key_findings"]] == [False, True]


def folded_with(window):
    return digest.structured(window, 0, len(window))


def test_after_a_reassign_the_holder_shown_is_the_reassigner():
    window = the_contract_window()[:4]
    folded = folded_with(window)
    assert folded["open_claims"] == [
        {"target": "db-pool exhaustion", "holder": {"owner": "alice", "agent_id": "alice-agent", "ts": "t4"}}
    ]


def test_text_is_one_lined_cut_and_escaped():
    long = "x" * 300
    assert digest.one_line(" a\n\tb\x1b  c ") == "a b c"
    assert digest.one_line(long) == "x" * 280 + "…"
    assert digest.md("a*b_[c]#!|>`\\ (ok) + - .") == "a\\*b\\_\\[c\\]\\#\\!\\|\\>\\`\\\\ (ok) + - ."


def test_empty_forms_and_overflow():
    assert digest.markdown(folded_with([]), "room", "") == "\n".join(
        [
            "# room", "_Parley room digest._", "", "## Participants", "_No participants yet._", "",
            "## Timeline of findings", "_No findings yet._", "", "## Claims", "### Open", "_None._",
            "### Resolved", "_None._", "", "## Open questions", "_No open questions._", "", "## Counts",
            "_none_", "", "---", "_Parley digest · resume with since=0 · 0 messages in this window._",
        ]
    )
    many = folded_with([msg(i, "finding", f"f{i}") for i in range(25)])
    assert [f["body"] for f in many["key_findings"]] == [f"f{i}" for i in range(5, 25)]
    assert many["findings_overflow"] == 5
    assert "_+5 older findings — parley_read_channel_" in digest.markdown(many, "room", None)
