"""``parley_catch_me_up``: a pure projection of a window of messages (contracts/mcp.md §4).

No I/O and no model call: :func:`structured` folds the messages into the
contract's object (key order included); :func:`markdown` renders it.
Claims are rebuilt from the log, not the ledger, so after a reassign the
holder shown is the reassigner (the contract keeps the reference's rule).
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Mapping, Sequence
from typing import Any

TYPES = ("finding", "claim", "status", "question", "answer", "note", "steer")
KEY_FINDINGS = 20
CUT = 280
_CONTROL_NOT_SPACE = re.compile(r"[\x00-\x08\x0e-\x1f\x7f-\x84\x86-\x9f]")
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f]")
_SPACE = re.compile(r"\s+")
_MD_SPECIAL = re.compile(r"([\\`*_{}\[\]#!|>])")


def one_line(value: Any) -> str:
    text = value if isinstance(value, str) else ""
    text = _CONTROL_NOT_SPACE.sub("", text)
    text = _SPACE.sub(" ", text).strip()
    text = _CONTROL.sub("", text)
    return text if len(text) <= CUT else text[:CUT] + "\u2026"


def _target_key(value: Any) -> str | None:
    if not isinstance(value, str):
        return None
    key = unicodedata.normalize("NFC", value.strip())
    return key or None


def _who(msg: Mapping[str, Any]) -> dict[str, Any]:
    return {"owner": one_line(msg.get("owner")), "agent_id": one_line(msg.get("agent_id")), "ts": msg.get("ts")}


def structured(messages: Sequence[Mapping[str, Any]], from_cursor: int, to_cursor: int) -> dict[str, Any]:
    by_type = dict.fromkeys(TYPES, 0)
    participants: dict[str, dict[str, Any]] = {}
    claims: dict[str, Mapping[str, Any]] = {}
    questions: list[Mapping[str, Any]] = []
    answered: set[str] = set()
    findings: list[Mapping[str, Any]] = []
    for msg in messages:
        kind = msg.get("type")
        if kind in by_type:
            by_type[kind] += 1
        owner = one_line(msg.get("owner"))
        entry = participants.setdefault(owner, {"owner": owner, "message_count": 0, "agent_ids": []})
        entry["message_count"] += 1
        agent = one_line(msg.get("agent_id"))
        if agent not in entry["agent_ids"]:
            entry["agent_ids"].append(agent)
        if kind == "claim":
            key = _target_key(msg.get("target"))
            if key is not None:
                claims[key] = msg  # latest wins; the dict keeps the first appearance's place
        elif kind == "question":
            questions.append(msg)
        elif kind == "answer" and msg.get("status") == "resolved":
            for ref in (msg.get("thread"), msg.get("reply_to")):
                if isinstance(ref, str) and ref:
                    answered.add(ref)
        elif kind == "finding":
            findings.append(msg)
    open_claims, resolved_claims = [], []
    for latest in claims.values():  # dict order = first appearance of the target
        if latest.get("status") == "resolved":
            resolved_claims.append({"target": one_line(latest.get("target")), "resolved_by": _who(latest)})
        else:
            open_claims.append({"target": one_line(latest.get("target")), "holder": _who(latest)})
    unanswered = [q for q in questions if q.get("msg_id") not in answered]
    key = findings[-KEY_FINDINGS:]
    return {
        "window": {"from_cursor": from_cursor, "to_cursor": to_cursor, "message_count": len(messages)},
        "by_type": by_type,
        "by_participant": list(participants.values()),
        "open_claims": open_claims,
        "resolved_claims": resolved_claims,
        "unanswered_questions": [
            {"msg_id": q.get("msg_id"), "owner": one_line(q.get("owner")), "body": one_line(q.get("body")), "ts": q.get("ts")}
            for q in unanswered
        ],
        "answered_questions_count": len(questions) - len(unanswered),
        "key_findings": [
            {
                "msg_id": f.get("msg_id"),
                "owner": one_line(f.get("owner")),
                "body": one_line(f.get("body")),
                "has_artifact": isinstance(f.get("artifact"), str) and f.get("artifact") != "",
                "ts": f.get("ts"),
            }
            for f in key
        ],
        "findings_overflow": len(findings) - len(key),
    }


def md(value: Any) -> str:
    """One-lined and markdown-escaped (``( ) + - .`` are left alone)."""
    return _MD_SPECIAL.sub(r"\\\1", one_line(value))


def markdown(digest: Mapping[str, Any], channel: str, purpose: str | None) -> str:
    title = f"# {md(channel)}" + (f" \u2014 {md(purpose)}" if purpose and one_line(purpose) else "")
    lines = [title, f"_Parley {md(channel)} digest._", "", "## Participants"]
    people = digest["by_participant"]
    lines += [
        f"- {md(p['owner'])} \u2014 {p['message_count']} (as {', '.join(md(a) for a in p['agent_ids'])})" for p in people
    ] or ["_No participants yet._"]
    lines += ["", "## Timeline of findings"]
    lines += [
        f"- {md(f['owner'])} \u00b7 {md(f['body'])}" + (" \u2197artifact" if f["has_artifact"] else "")
        for f in digest["key_findings"]
    ] or ["_No findings yet._"]
    if digest["findings_overflow"]:
        lines.append(f"_+{digest['findings_overflow']} older findings \u2014 parley_read_channel_")
    lines += ["", "## Claims", "### Open"]
    lines += [f"- {md(c['target'])} \u2014 {md(c['holder']['owner'])}" for c in digest["open_claims"]] or ["_None._"]
    lines += ["### Resolved"]
    lines += [f"- {md(c['target'])} \u2014 {md(c['resolved_by']['owner'])}" for c in digest["resolved_claims"]] or [
        "_None._"
    ]
    lines += ["", "## Open questions"]
    lines += [f"- {md(q['owner'])} \u00b7 {md(q['body'])}" for q in digest["unanswered_questions"]] or [
        "_No open questions._"
    ]
    counts = [f"{kind}: {n}" for kind, n in digest["by_type"].items() if n]
    lines += ["", "## Counts", " \u00b7 ".join(counts) if counts else "_none_"]
    window = digest["window"]
    lines += [
        "",
        "---",
        f"_Parley digest \u00b7 resume with since={window['to_cursor']} \u00b7 "
        f"{window['message_count']} messages in this window._",
    ]
    return "\n".join(lines)
