"""The 20 tool definitions (contracts/mcp.md §3, §8.1, §8.2) and argument validation.

:data:`TOOLS` is the single source of ``tools/list`` (in the contract's
order) and of the docs page's tool table. :func:`validate` checks arguments
against the advertised schema and returns the contract's
``Invalid arguments: …`` text, or None; unknown keys are ignored.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

STR = {"type": "string", "minLength": 1}
STRING = {"type": "string"}
CHANNEL = {"type": "string", "minLength": 1, "description": "Channel (default: your home channel)."}
POST_TYPES = ["finding", "status", "question", "answer", "note", "steer"]
STATUSES = ["needs-response", "resolved", "fyi"]
FROM = {
    "description": '"head" (future messages), "start" (everything) or a cursor.',
    "anyOf": [{"type": "string", "enum": ["head", "start"]}, {"type": "integer", "minimum": 0}],
}


@dataclass(frozen=True)
class ToolDef:
    name: str
    description: str
    properties: dict[str, Any] = field(default_factory=dict)
    required: tuple[str, ...] = ()

    @property
    def input_schema(self) -> dict[str, Any]:
        schema: dict[str, Any] = {"type": "object", "properties": self.properties}
        if self.required:
            schema["required"] = list(self.required)
        return schema


def _post_props(*, with_type: bool, with_status: bool) -> dict[str, Any]:
    props: dict[str, Any] = {}
    if with_type:
        props["type"] = {"type": "string", "enum": POST_TYPES, "description": "Message type (claims go through parley_claim)."}
    props["body"] = {**STR, "description": "The message text. Never include secrets."}
    props["thread"] = {**STRING, "description": "msg_id (ULID) of the thread root."}
    props["reply_to"] = {**STRING, "description": "msg_id (ULID) this replies to."}
    props["to"] = {"type": "array", "items": STRING, "minItems": 1, "description": "agent_ids addressed."}
    props["artifact"] = {**STRING, "description": "An artifact URI from parley_upload_artifact."}
    props["channel"] = CHANNEL
    if with_status:
        props["status"] = {"type": "string", "enum": STATUSES}
    return props


_GUARD = "Other channels must be joined first with parley_join_channel."

TOOLS: tuple[ToolDef, ...] = (
    ToolDef(
        "parley_status",
        "Show your identity, home channel and its head cursor. Cheap; use it to orient yourself.",
    ),
    ToolDef(
        "parley_post",
        "Post a message to the channel (finding, status, question, answer, note, steer). Read the channel "
        "first (parley_read_channel or parley_catch_me_up), post sparingly, never post secrets. Use "
        f"parley_claim, not a post, to take a task. {_GUARD}",
        _post_props(with_type=True, with_status=True),
        ("type", "body"),
    ),
    ToolDef(
        "parley_post_finding",
        f"Post a finding: something you learned that others should know. Post sparingly, never post secrets. {_GUARD}",
        _post_props(with_type=False, with_status=False),
        ("body",),
    ),
    ToolDef(
        "parley_steer",
        f"Post a steer: a directive for the other agents (a human's instruction relayed). Never post secrets. {_GUARD}",
        _post_props(with_type=False, with_status=True),
        ("body",),
    ),
    ToolDef(
        "parley_read_channel",
        "Read one page of messages after cursor `since` (default 0). Read before you claim or post.",
        {
            "since": {"type": "integer", "minimum": 0, "description": "Cursor to read after (default 0)."},
            "limit": {"type": "integer", "minimum": 1, "description": "Page size (the server caps it)."},
            "channel": CHANNEL,
        },
    ),
    ToolDef(
        "parley_catch_me_up",
        "A digest of everything after cursor `since`: participants, findings, open and resolved claims, "
        "open questions. Use it when you join or return; resume later with the cursor it names.",
        {
            "since": {"type": "integer", "minimum": 0, "description": "Cursor to start after (default 0)."},
            "channel": CHANNEL,
            "format": {"type": "string", "enum": ["structured", "markdown"], "description": "Default structured."},
        },
    ),
    ToolDef(
        "parley_claim",
        "Claim a target (task) before working on it: first writer wins. If someone else holds it you get "
        f"already_claimed naming them: pick something else. Read the channel before claiming. {_GUARD}",
        {
            "target": {**STR, "description": "What you are taking (a short name)."},
            "note": {**STR, "description": "Optional body (default: claiming <target>)."},
            "thread": STRING,
            "reply_to": STRING,
            "channel": CHANNEL,
        },
        ("target",),
    ),
    ToolDef(
        "parley_reassign",
        f"Hand a target you hold to another agent (an unheld target is granted to them). {_GUARD}",
        {
            "target": STR,
            "assignee_owner": {**STR, "description": "The new holder's owner."},
            "assignee_agent": {**STR, "description": "The new holder's agent_id."},
            "note": STR,
            "channel": CHANNEL,
        },
        ("target", "assignee_owner", "assignee_agent"),
    ),
    ToolDef(
        "parley_mark_done",
        f"Mark a target you hold as resolved (releases the claim). {_GUARD}",
        {"target": STR, "note": STR, "channel": CHANNEL},
        ("target",),
    ),
    ToolDef("parley_subscribe", "The home channel's head cursor now (read or wait from there for new messages only)."),
    ToolDef("parley_list_channels", "List every channel with its descriptor."),
    ToolDef(
        "parley_describe_channel",
        "Describe a channel (purpose, verbosity, head). Reading is never gated.",
        {"channel": CHANNEL},
    ),
    ToolDef(
        "parley_create_channel",
        "Create a channel. Creating does not join it: call parley_join_channel before posting there.",
        {"channel": {**STR, "description": "Slug ^[a-z0-9][a-z0-9-]{0,63}$."}, "purpose": STR},
        ("channel", "purpose"),
    ),
    ToolDef(
        "parley_join_channel",
        "Join a channel so you can post, claim, upload and wait there in this session.",
        {"channel": STR},
        ("channel",),
    ),
    ToolDef(
        "parley_upload_artifact",
        "Upload a blob (a local file `path` or text `content`, exactly one; at most 1 MiB) and get its "
        f"URI to cite in a post's `artifact`. Never upload secrets. {_GUARD}",
        {"path": {**STR, "description": "A local file."}, "content": STR, "channel": CHANNEL},
    ),
    ToolDef(
        "parley_fetch_artifact",
        "Fetch an artifact by its URI (from a channel you are in) to a local file.",
        {"uri": STR, "path": {**STR, "description": "Where to write (default: a fresh temp dir)."}},
        ("uri",),
    ),
    ToolDef(
        "parley_wait",
        "Block until a new message arrives on your home or joined channels (not your own posts), or until "
        "`timeout` seconds pass. Use it instead of polling parley_read_channel.",
        {
            "timeout": {"type": "integer", "minimum": 0, "maximum": 300, "description": "Seconds (default 30)."},
            "channel": {**STR, "description": "Watch only this channel (home or joined)."},
        },
    ),
    ToolDef(
        "parley_session_start",
        "Start a parley session (server-side cursors that survive restarts); this MCP server keeps its "
        "token. Returns the first turn's messages.",
        {
            "channels": {"type": "array", "items": STR, "minItems": 1, "maxItems": 20, "description": "Default: [home]."},
            "from": FROM,
            "wait": {"type": "integer", "minimum": 0, "maximum": 60, "description": "Seconds to wait for messages."},
            "max": {"type": "integer", "minimum": 1, "maximum": 500},
            "handler": STR,
        },
    ),
    ToolDef(
        "parley_session_continue",
        "Continue the held parley session: new messages since the last turn; optionally subscribe or unsubscribe channels.",
        {
            "wait": {"type": "integer", "minimum": 0, "maximum": 60},
            "max": {"type": "integer", "minimum": 1, "maximum": 500},
            "subscribe": {"type": "array", "items": STR},
            "unsubscribe": {"type": "array", "items": STR},
            "from": FROM,
        },
    ),
    ToolDef("parley_session_close", "Close the held parley session."),
)

BY_NAME: dict[str, ToolDef] = {tool.name: tool for tool in TOOLS}

_TYPE_NAMES = {"string": "a string", "integer": "a number", "number": "a number", "array": "an array", "boolean": "a boolean", "object": "an object"}


def _is_type(value: Any, kind: str) -> bool:
    if kind == "string":
        return isinstance(value, str)
    if kind in ("integer", "number"):
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if kind == "array":
        return isinstance(value, list)
    if kind == "boolean":
        return isinstance(value, bool)
    return isinstance(value, dict)


def _check(name: str, value: Any, schema: Mapping[str, Any]) -> str | None:
    """One clause for the first problem of ``value``, or None."""
    if "anyOf" in schema:
        if any(_check(name, value, option) is None for option in schema["anyOf"]):
            return None
        return f'`{name}` must be "head", "start" or a number'
    kind = schema.get("type")
    if kind is not None and not _is_type(value, kind):
        return f"`{name}` must be {_TYPE_NAMES[kind]}"
    if "enum" in schema and value not in schema["enum"]:
        return f"`{name}` must be one of: " + ", ".join(f"`{option}`" for option in schema["enum"])
    if kind == "integer" and isinstance(value, float) and not value.is_integer():
        return f"`{name}`: must be an integer"
    if "minimum" in schema and value < schema["minimum"]:
        return f"`{name}`: must be at least {schema['minimum']}"
    if "maximum" in schema and value > schema["maximum"]:
        return f"`{name}`: must be at most {schema['maximum']}"
    if "minLength" in schema and len(value) < schema["minLength"]:
        return f"`{name}`: must not be empty"
    if kind == "array":
        if "minItems" in schema and len(value) < schema["minItems"]:
            return f"`{name}`: must have at least {schema['minItems']} item(s)"
        if "maxItems" in schema and len(value) > schema["maxItems"]:
            return f"`{name}`: must have at most {schema['maxItems']} items"
        items = schema.get("items")
        if items is not None and any(_check(name, item, items) is not None for item in value):
            return f"`{name}`: every item must be {_TYPE_NAMES[items['type']]}" + (
                " (non-empty)" if items.get("minLength") else ""
            )
    return None


def validate(tool: ToolDef, arguments: Mapping[str, Any]) -> str | None:
    """The ``Invalid arguments: …`` text for ``arguments``, or None when they fit the schema."""
    clauses: list[str] = []
    for name, schema in tool.properties.items():
        if name not in arguments or arguments[name] is None and name not in tool.required:
            if name in tool.required:
                clauses.append(f"`{name}` is required")
            continue
        clause = _check(name, arguments[name], schema)
        if clause is not None:
            clauses.append(clause)
    if not clauses:
        return None
    return "Invalid arguments: " + "; ".join(clauses) + "."


def _describe_arg(name: str, schema: Mapping[str, Any], required: bool) -> str:
    if "anyOf" in schema:
        kind = '"head", "start" or an integer ≥ 0'
    elif "enum" in schema:
        kind = "one of " + ", ".join(f"`{v}`" for v in schema["enum"])
    else:
        kind = schema.get("type", "any")
        if kind == "array":
            kind = "array of string"
    return f"`{name}`{' (required)' if required else ''}: {kind}"


def markdown_table() -> str:
    """The docs' tool table (docs/connect-an-agent.md), generated from :data:`TOOLS`."""
    lines = ["| tool | arguments | what it does |", "|---|---|---|"]
    for tool in TOOLS:
        args = "; ".join(_describe_arg(n, s, n in tool.required) for n, s in tool.properties.items()) or "none"
        description = tool.description.replace("|", "\\|")
        lines.append(f"| `{tool.name}` | {args} | {description} |")
    return "\n".join(lines)


def normalise_int(value: Any) -> Any:
    """An integral float (``3.0``) as the int it spells."""
    return int(value) if isinstance(value, float) and value.is_integer() else value


if __name__ == "__main__":  # python -m parley.mcp.tools: print the table for the docs
    print(markdown_table())
