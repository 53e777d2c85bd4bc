"""The tool implementations and :func:`call`, the one place a tool call becomes a result.

Every result is one compact-JSON text (contracts/mcp.md §2); every refusal
is ``isError`` with the wire message. Arguments are validated against the
advertised schema first (:func:`parley.mcp.tools.validate`), so a bad call
sends nothing.
"""

from __future__ import annotations

import json
import logging
import unicodedata
from collections.abc import Awaitable, Callable
from typing import Any

from ..client import ParleyError, UnknownChannel, new_ulid
from . import artifacts, digest, sanitize, sessions, wait
from .agent import Agent, ToolError
from .tools import BY_NAME, normalise_int, validate

log = logging.getLogger("parley.mcp")

Handler = Callable[[Agent, dict[str, Any], Any], Awaitable[Any]]


def dumps(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def error_text(error: ParleyError) -> str:
    """The model-facing text of a backbone refusal (value-free)."""
    if error.code == "transport_error":
        return "could not reach the parley backbone"
    if error.code == "http_error":
        return f"backbone HTTP {error.status}"
    if error.status == 401:
        return "missing or invalid token"
    return error.message


def _outcome(answer: dict[str, Any]) -> dict[str, Any]:
    outcome = answer.get("outcome")
    if outcome == "granted":
        return {"outcome": "granted", "msg_id": answer["message"]["msg_id"], "cursor": answer["cursor"]}
    if outcome == "already_claimed":
        by = sanitize.holder(answer.get("by") or {})
        return {"outcome": "already_claimed", "by": {k: by.get(k) for k in ("agent_id", "owner", "ts", "msg_id")}}
    return {"outcome": outcome}


def _target(args: dict[str, Any]) -> str:
    target = unicodedata.normalize("NFC", args["target"].strip())
    if not target:
        raise ToolError("Malformed message: target must not be empty")
    return target


def _note(args: dict[str, Any], default: str) -> str:
    note = args.get("note")
    note = note.strip() if isinstance(note, str) else ""
    return note or default


def _stamp(agent: Agent, message: dict[str, Any]) -> dict[str, Any]:
    """A fresh msg_id and the placeholder identity (the backbone anchors the real one)."""
    message["msg_id"] = new_ulid()
    message["agent_id"] = agent.identity.agent_id
    message["owner"] = agent.identity.owner
    agent.written.add(message["msg_id"])
    return message


def _post(fixed_type: str | None) -> Handler:
    async def post(agent: Agent, args: dict[str, Any], _ctx: Any) -> dict[str, Any]:
        message: dict[str, Any] = {"type": fixed_type or args["type"], "body": args["body"]}
        for name in ("thread", "reply_to", "to", "artifact", "status"):
            if args.get(name) is not None:
                message[name] = args[name]
        channel = agent.guard(args.get("channel"))
        if agent.outbox is not None:
            return await _post_through_outbox(agent, channel, _stamp(agent, message))
        answer = await agent.client.append(channel, _stamp(agent, message))
        return {"msg_id": answer["message"]["msg_id"], "cursor": answer["cursor"]}

    return post


async def _post_through_outbox(agent: Agent, channel: str, message: dict[str, Any]) -> dict[str, Any]:
    """With ``PARLEY_OUTBOX`` set: durable on disk first, then one delivery attempt.

    The result says which happened (``"delivery": "delivered" | "queued"``); a
    queued post is sent by a later call or ``parley outbox drain``, with the same
    ``msg_id``, so it is stored once (ADR-0018). A refusal is the wire message.
    """
    client_id = agent.outbox.enqueue(channel, message)
    delivery = await agent.outbox.deliver(agent.client, client_id)
    if delivery.outcome == "delivered":
        return {"msg_id": client_id, "cursor": delivery.row.cursor, "delivery": "delivered"}
    if delivery.outcome == "queued":
        return {"msg_id": client_id, "cursor": None, "delivery": "queued"}
    row = delivery.row
    if row.error_status == 401:
        raise ToolError("missing or invalid token")
    text = row.last_error or f"the post was {delivery.outcome}"
    raise ToolError(text.split(": ", 1)[1] if text.startswith("HTTP ") and ": " in text else text)


async def status(agent: Agent, args: dict[str, Any], _ctx: Any) -> dict[str, Any]:
    try:
        head = (await agent.client.describe(agent.home)).get("head")
    except UnknownChannel:
        head = None
    identity = agent.identity
    return {"agent_id": identity.agent_id, "owner": identity.owner, "channel": agent.home, "head": head}


async def read_channel(agent: Agent, args: dict[str, Any], _ctx: Any) -> dict[str, Any]:
    channel = args.get("channel") or agent.home
    try:
        page = await agent.client.read(channel, args.get("since", 0), args.get("limit"))
    except UnknownChannel:
        return {"cursor": 0, "count": 0, "messages": []}
    messages = [sanitize.message(m) for m in page["messages"]]
    return {"cursor": page["cursor"], "count": len(messages), "messages": messages}


async def catch_me_up(agent: Agent, args: dict[str, Any], _ctx: Any) -> Any:
    channel = args.get("channel") or agent.home
    since = cursor = args.get("since", 0)
    messages: list[dict[str, Any]] = []
    try:
        while True:
            page = await agent.client.read(channel, cursor)
            if not page["messages"] or page["cursor"] <= cursor:
                break
            messages.extend(page["messages"])
            cursor = page["cursor"]
    except UnknownChannel:
        messages, cursor = [], since
    folded = digest.structured(messages, since, cursor)
    if args.get("format") != "markdown":
        return folded
    try:
        purpose = (await agent.client.describe(channel)).get("purpose")
    except ParleyError:
        purpose = None
    return digest.markdown(folded, channel, purpose)


async def claim(agent: Agent, args: dict[str, Any], _ctx: Any) -> dict[str, Any]:
    target = _target(args)
    message = {"type": "claim", "body": _note(args, f"claiming {target}"), "target": target}
    for name in ("thread", "reply_to"):
        if args.get(name) is not None:
            message[name] = args[name]
    channel = agent.guard(args.get("channel"))
    return _outcome(await agent.client.claim(channel, target, _stamp(agent, message)))


async def reassign(agent: Agent, args: dict[str, Any], _ctx: Any) -> dict[str, Any]:
    target = _target(args)
    message = {"type": "claim", "body": _note(args, f"reassigning {target}"), "target": target}
    assignee = {"agent_id": args["assignee_agent"], "owner": args["assignee_owner"]}
    channel = agent.guard(args.get("channel"))
    return _outcome(await agent.client.reassign(channel, target, assignee, _stamp(agent, message)))


async def mark_done(agent: Agent, args: dict[str, Any], _ctx: Any) -> dict[str, Any]:
    target = _target(args)
    message = {"type": "claim", "body": _note(args, f"resolved {target}"), "target": target}
    channel = agent.guard(args.get("channel"))
    return _outcome(await agent.client.done(channel, target, _stamp(agent, message)))


async def subscribe(agent: Agent, args: dict[str, Any], _ctx: Any) -> dict[str, Any]:
    return {"cursor": await agent.client.subscribe(agent.home)}


async def list_channels(agent: Agent, args: dict[str, Any], _ctx: Any) -> dict[str, Any]:
    channels = [sanitize.descriptor(d) for d in await agent.client.list_channels()]
    return {"count": len(channels), "channels": channels}


async def describe_channel(agent: Agent, args: dict[str, Any], _ctx: Any) -> dict[str, Any]:
    return sanitize.descriptor(await agent.client.describe(args.get("channel") or agent.home))


async def create_channel(agent: Agent, args: dict[str, Any], _ctx: Any) -> dict[str, Any]:
    created = await agent.client.create_channel(
        args["channel"], purpose=args["purpose"], created_by=agent.identity.owner
    )
    return sanitize.descriptor(created)


async def join_channel(agent: Agent, args: dict[str, Any], _ctx: Any) -> dict[str, Any]:
    channel = args["channel"]
    cursor = await agent.client.subscribe(channel)
    agent.join(channel, cursor)
    return {"channel": channel, "cursor": cursor, "head": cursor}


async def upload_artifact(agent: Agent, args: dict[str, Any], _ctx: Any) -> dict[str, Any]:
    return await artifacts.upload(agent, args)


async def fetch_artifact(agent: Agent, args: dict[str, Any], _ctx: Any) -> dict[str, Any]:
    return await artifacts.fetch(agent, args)


HANDLERS: dict[str, Handler] = {
    "parley_status": status,
    "parley_post": _post(None),
    "parley_post_finding": _post("finding"),
    "parley_steer": _post("steer"),
    "parley_read_channel": read_channel,
    "parley_catch_me_up": catch_me_up,
    "parley_claim": claim,
    "parley_reassign": reassign,
    "parley_mark_done": mark_done,
    "parley_subscribe": subscribe,
    "parley_list_channels": list_channels,
    "parley_describe_channel": describe_channel,
    "parley_create_channel": create_channel,
    "parley_join_channel": join_channel,
    "parley_upload_artifact": upload_artifact,
    "parley_fetch_artifact": fetch_artifact,
    "parley_wait": wait.wait_tool,
    "parley_session_start": sessions.start_tool,
    "parley_session_continue": sessions.continue_tool,
    "parley_session_close": sessions.close_tool,
}


async def call(agent: Agent, name: str, arguments: dict[str, Any] | None, ctx: Any = None) -> tuple[str, bool]:
    """``(text, is_error)`` for one ``tools/call``; never raises for a refusal."""
    tool = BY_NAME.get(name)
    if tool is None:
        return f"Unknown tool: {name}", True
    args = {k: normalise_int(v) for k, v in (arguments or {}).items() if k in tool.properties}
    invalid = validate(tool, args)
    if invalid is not None:
        return invalid, True
    args = {k: v for k, v in args.items() if v is not None}
    try:
        result = await HANDLERS[name](agent, args, ctx)
    except ToolError as refusal:
        return refusal.text, True
    except ParleyError as error:
        return error_text(error), True
    except Exception as error:  # a bug: one line on stderr, one line for the model, no traceback
        log.error("parley mcp: internal error in %s (%s)", name, type(error).__name__)
        return f"internal error in parley mcp ({type(error).__name__}); the call may be retried", True
    return (result if isinstance(result, str) else dumps(result)), False
