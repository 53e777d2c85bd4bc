"""The ``digest`` handler: a catch-me-up summary of every subscribed channel.

Delivery works exactly as in ``inbox``; each turn's ``output.digest`` adds,
per subscribed channel (subscription order), a summary of the channel's whole
log as it stands when the turn is decided:

``messages``            total count; ``by_type`` counts per message type
``participants``        ``{agent_id, owner}`` in order of first message
``claims.open``         claims whose latest message is not ``resolved``, with
                        the holder (the assignee after a reassign)
``claims.resolved``     claims marked done, with who resolved them
``unanswered_questions`` ``question`` messages that are not resolved and that
                        no later message answers with ``reply_to``
``latest_findings``     the last five ``finding`` messages, newest last

Claim state is read from the log, not the live ledger: a lease that lapsed
without a later claim message is still listed as open (the handler is pure
and has no clock). Bodies are cut to 200 characters.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from ..message import normalize_target
from . import TurnView

BODY_CHARS = 200
LATEST_FINDINGS = 5


def _cut(body: Any) -> str:
    text = body if isinstance(body, str) else ""
    return text if len(text) <= BODY_CHARS else text[:BODY_CHARS] + "…"


def _who(message: Mapping[str, Any]) -> dict[str, Any]:
    return {"agent_id": message.get("agent_id"), "owner": message.get("owner")}


def _brief(message: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "msg_id": message.get("msg_id"),
        **_who(message),
        "body": _cut(message.get("body")),
        "ts": message.get("ts"),
    }


def summarize(messages: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """The digest of one channel's log."""
    by_type: dict[str, int] = {}
    participants: dict[tuple[Any, Any], dict[str, Any]] = {}
    claims: dict[str, dict[str, Any]] = {}
    questions: dict[str, Mapping[str, Any]] = {}
    answered: set[str] = set()
    findings: list[Mapping[str, Any]] = []
    for message in messages:
        kind = message.get("type")
        if isinstance(kind, str):
            by_type[kind] = by_type.get(kind, 0) + 1
        who = _who(message)
        participants.setdefault((who["agent_id"], who["owner"]), who)
        reply_to = message.get("reply_to")
        if isinstance(reply_to, str):
            answered.add(reply_to)
        if kind == "claim" and isinstance(message.get("target"), str):
            try:
                target = normalize_target(message["target"])
            except Exception:  # the log only holds valid claims; be defensive anyway
                continue
            if message.get("status") == "resolved":
                claims[target] = {"target": target, "state": "resolved", "resolved_by": who, "ts": message.get("ts")}
            else:
                assignee = message.get("assignee")
                holder = (
                    {"agent_id": assignee.get("agent_id"), "owner": assignee.get("owner")}
                    if isinstance(assignee, Mapping)
                    else who
                )
                claims[target] = {
                    "target": target,
                    "state": "open",
                    "holder": holder,
                    "msg_id": message.get("msg_id"),
                    "ts": message.get("ts"),
                }
        elif kind == "question" and isinstance(message.get("msg_id"), str):
            if message.get("status") == "resolved":
                questions.pop(message["msg_id"], None)
            else:
                questions[message["msg_id"]] = message
        elif kind == "finding":
            findings.append(message)
    open_claims = [{k: v for k, v in c.items() if k != "state"} for c in claims.values() if c["state"] == "open"]
    resolved = [{k: v for k, v in c.items() if k != "state"} for c in claims.values() if c["state"] == "resolved"]
    return {
        "messages": len(messages),
        "by_type": by_type,
        "participants": list(participants.values()),
        "claims": {"open": open_claims, "resolved": resolved},
        "unanswered_questions": [_brief(q) for mid, q in questions.items() if mid not in answered],
        "latest_findings": [_brief(f) for f in findings[-LATEST_FINDINGS:]],
    }


class DigestHandler:
    name = "digest"
    wants_history = True

    def decide(self, view: TurnView) -> dict[str, Any]:
        return {
            "digest": {
                channel: summarize(view.history.get(channel, ())) for channel in view.subscriptions
            }
        }
