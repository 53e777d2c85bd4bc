"""Session handlers: discovery through entry points, and the pure digest summary."""

from __future__ import annotations

from parley.domain.handlers import Handler, TurnView, load_handlers
from parley.domain.handlers.digest import BODY_CHARS, summarize


def test_handlers_are_found_through_entry_points():
    handlers = load_handlers()
    assert {"inbox", "digest"} <= set(handlers)
    for name, handler in handlers.items():
        assert isinstance(handler, Handler)
        assert handler.name == name
    view = TurnView("ses_x", 1, {}, [], [])
    assert handlers["inbox"].decide(view) == {}
    assert handlers["digest"].decide(view) == {"digest": {}}


def _m(kind, who, **extra):
    return {"type": kind, "agent_id": who, "owner": who.upper(), "body": extra.pop("body", kind), **extra}


def test_digest_summary_follows_the_log():
    log = [
        _m("claim", "a", msg_id="1", target=" t "),
        _m("claim", "a", msg_id="2", target="t", assignee={"agent_id": "b", "owner": "B"}),
        _m("claim", "b", msg_id="3", target="u"),
        _m("claim", "b", msg_id="4", target="u", status="resolved"),
        _m("question", "c", msg_id="q1"),
        _m("question", "c", msg_id="q2"),
        _m("question", "c", msg_id="q3", body="x" * (BODY_CHARS + 5)),
        _m("question", "c", msg_id="q2", status="resolved"),
        _m("answer", "a", msg_id="5", reply_to="q1"),
        *[_m("finding", "d", msg_id=f"f{i}", body=f"f{i}") for i in range(7)],
    ]
    out = summarize(log)
    assert out["messages"] == len(log)
    assert out["by_type"] == {"claim": 4, "question": 4, "answer": 1, "finding": 7}
    assert [p["agent_id"] for p in out["participants"]] == ["a", "b", "c", "d"]
    assert out["claims"]["open"] == [
        {"target": "t", "holder": {"agent_id": "b", "owner": "B"}, "msg_id": "2", "ts": None}
    ]
    assert out["claims"]["resolved"] == [
        {"target": "u", "resolved_by": {"agent_id": "b", "owner": "B"}, "ts": None}
    ]
    assert [q["msg_id"] for q in out["unanswered_questions"]] == ["q3"]
    assert out["unanswered_questions"][0]["body"] == "x" * BODY_CHARS + "…"
    assert [f["body"] for f in out["latest_findings"]] == ["f2", "f3", "f4", "f5", "f6"]
