"""The OpenAPI half of a route table entry: :class:`Doc`, and the parts docs share.

Each :class:`parley.http.routing.Route` of :data:`parley.http.routes.ROUTES`
carries one :class:`Doc` (summary, tag, success responses, the wire codes it
can answer, request body, parameters); :mod:`parley.http.openapi` renders
them. The error sets below list the codes a family of routes shares (every
JSON-dispatched route buffers and parses the body, so every one can answer
``invalid_json``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

JSON = "application/json"
SSE = "text/event-stream"
OCTETS = "application/octet-stream"


def ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


#: ``{status: (description, content_type | None, schema | None)}``: every answer but the error envelope
Success = dict[int, tuple[str, str | None, dict[str, Any] | None]]


@dataclass(frozen=True)
class Doc:
    """One OpenAPI operation, less what the route itself says (method, path, auth, WebSocket)."""

    operation_id: str
    summary: str
    tag: str
    success: Success
    errors: tuple[str, ...]
    request: tuple[str, dict[str, Any]] | None = None
    request_required: bool = True
    idempotent_key: bool = False
    headers: tuple[dict[str, Any], ...] = ()
    query: tuple[dict[str, Any], ...] = ()
    description: str = ""
    extra: dict[str, Any] = field(default_factory=dict)


# -- error sets --------------------------------------------------------------------

BODY = ("invalid_json", "payload_too_large")  # every JSON-dispatched route buffers and parses the body
BASE = (*BODY, "invalid_request", "internal_error")
CHANNEL = ("invalid_channel_name", "unknown_channel")
READ = (*BASE, "unauthorized")  # unauthorized only with PARLEY_READ_AUTH=token
WRITE = (*BASE, "unauthorized", *CHANNEL, "idempotency_conflict", "unavailable")
MESSAGE_WRITE = (*WRITE, "invalid_message", "msg_id_conflict", "channel_archived", "channel_full", "rate_limited")
ADMIN = (*BASE, "unauthorized")
SESSION = (*BASE, "unauthorized", "unavailable")
TURN = (
    *SESSION,
    "unknown_session",
    "missing_token",
    "idempotency_conflict",
    "stale_token",
    "turn_in_flight",
)

# -- reusable parameters -------------------------------------------------------------

ASSET_PARAM = {
    "name": "asset",
    "in": "path",
    "required": True,
    "description": "A file of the web console (ADR-0017), e.g. `app.js`.",
    "schema": {"type": "string"},
}
CHANNEL_PARAM = {
    "name": "channel",
    "in": "path",
    "required": True,
    "description": "Channel slug (percent-decoded).",
    "schema": {"type": "string", "pattern": "^[a-z0-9][a-z0-9-]{0,63}$"},
}
SHA_PARAM = {
    "name": "sha256",
    "in": "path",
    "required": True,
    "description": "Lowercase hex SHA-256 of the blob.",
    "schema": {"type": "string", "pattern": "^[0-9a-f]{64}$"},
}
SESSION_PARAM = {
    "name": "id",
    "in": "path",
    "required": True,
    "description": "The sessionId (percent-decoded).",
    "schema": {"type": "string"},
}
IDEMPOTENCY_KEY = {
    "name": "Idempotency-Key",
    "in": "header",
    "required": False,
    "description": (
        "1-255 visible ASCII characters. A repeat with the same key and the same request replays the "
        "original answer (header `Idempotent-Replayed: true`) and writes nothing; the same key with a "
        "different request is 409 `idempotency_conflict`."
    ),
    "schema": {"type": "string", "pattern": "^[\\x21-\\x7e]{1,255}$"},
}
SINCE = {
    "name": "since",
    "in": "query",
    "required": False,
    "description": "Replay from this cursor (messages strictly after it); default: the head (live only).",
    "schema": {"type": "integer", "minimum": 0},
}
LAST_EVENT_ID = {
    "name": "Last-Event-ID",
    "in": "header",
    "required": False,
    "description": "Resume after this cursor (the `id:` of the last frame received); `since` wins.",
    "schema": {"type": "string", "pattern": "^\\d+$"},
}
CONTINUATION_HEADER = {
    "name": "x-continuation-token",
    "in": "header",
    "required": False,
    "description": "The continuation token, when not given in the body.",
    "schema": {"type": "string"},
}
ACCEPT_SSE = {
    "name": "Accept",
    "in": "header",
    "required": False,
    "description": "`text/event-stream` streams the turn as SSE events `record`, `delta`, `outcome` (or `error`).",
    "schema": {"type": "string"},
}


def _sse_event(name: str, payload: dict[str, Any]) -> dict[str, Any]:
    """One Server-Sent Event ``event: <name>`` + ``data: <JSON payload>``."""
    return {
        "type": "object",
        "required": ["event", "data"],
        "properties": {
            "event": {"const": name},
            "data": {"type": "string", "contentMediaType": JSON, "contentSchema": payload},
        },
    }


#: Each event of a streamed turn (sessions.md "Streaming"); `: keep-alive` comments are not events.
TURN_EVENTS = {
    "description": "One event of the streamed turn: `record` per committed journal event, `delta` per delivered "
                   "message, then a terminal `outcome` (the TurnResponse) or `error` (the turn failed after the "
                   "stream opened; the token is not rotated). `: keep-alive` comments while waiting.",
    "oneOf": [
        _sse_event("record", ref("TurnRecord")),
        _sse_event("delta", ref("Delivered")),
        _sse_event("outcome", ref("TurnResponse")),
        _sse_event("error", ref("TurnError")),
    ],
}

#: Each event of the channel tail (channels.md D7); `: keep-alive` comments are not events.
TAIL_EVENT = {
    "description": "One frame per message: `id: <cursor>` + `data: <message JSON>` (sanitised like reads).",
    "type": "object",
    "required": ["id", "data"],
    "properties": {
        "id": {"type": "string", "pattern": "^\\d+$"},
        "data": {"type": "string", "contentMediaType": JSON, "contentSchema": ref("Message")},
    },
}


def turn_success(first: bool) -> Success:
    what = "the first turn" if first else "the turn"
    return {
        200: (
            f"The response of {what} (`finished`, `parked` or `contended`); as SSE when requested.",
            JSON,
            ref("TurnResponse"),
        )
    }

