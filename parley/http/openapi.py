"""The OpenAPI 3.1 description of every route parley serves (``GET /openapi.json``).

:data:`ROUTES` is the explicit route list — one :class:`Route` per
(method, path) the dispatcher in :mod:`parley.http.app` answers, plus the two
WebSocket routes (marked ``x-websocket: true``). :func:`document` renders it.
``tests/api/test_openapi.py`` keeps the list honest in both directions: every
documented route is exercised against a live server (it must not answer
``404 not_found "no such route"``), and every route the dispatcher knows
(its action tables, the segment literals in its source, the Quart
WebSocket rules) must be documented, so adding a route without documenting
it fails a test.

Errors use one envelope ``{"error": {"code", "message", "issues"?}}``; each
operation lists the wire codes it can answer (``x-error-codes``) and one
response per status whose schema narrows ``code`` to that route's codes.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any

from .. import __version__
from ..errors import STATUS_BY_CODE

JSON = "application/json"
SSE = "text/event-stream"
OCTETS = "application/octet-stream"


def ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


@dataclass(frozen=True)
class Route:
    method: str
    path: str
    operation_id: str
    summary: str
    tag: str
    #: ``none`` | ``read`` (bearer only with PARLEY_READ_AUTH=token) | ``write`` | ``admin`` | ``session``
    auth: str
    #: ``{status: (description, content_type | None, schema | None)}``
    success: dict[int, tuple[str, str | None, dict[str, Any] | None]]
    errors: tuple[str, ...]
    request: tuple[str, dict[str, Any]] | None = None
    request_required: bool = True
    idempotent_key: bool = False
    headers: tuple[dict[str, Any], ...] = ()
    query: tuple[dict[str, Any], ...] = ()
    websocket: bool = False
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

# -- the route list --------------------------------------------------------------------


def _turn_success(first: bool) -> dict[int, tuple[str, str | None, dict[str, Any] | None]]:
    what = "the first turn" if first else "the turn"
    return {
        200: (
            f"The response of {what} (`finished`, `parked` or `contended`); as SSE when requested.",
            JSON,
            ref("TurnResponse"),
        )
    }


ROUTES: list[Route] = [
    # operations
    Route("GET", "/healthz", "healthz", "Liveness", "ops", "none",
          {200: ("Alive.", JSON, ref("Ok"))}, BASE),
    Route("GET", "/readyz", "readyz", "Readiness (database reachable, not shutting down)", "ops", "none",
          {200: ("Ready.", JSON, ref("Ok"))}, (*BASE, "unavailable")),
    Route("GET", "/metrics", "metrics", "Prometheus metrics", "ops", "none",
          {200: ("Prometheus text exposition.", "text/plain", {"type": "string"})}, BASE),
    Route("GET", "/openapi.json", "openapi", "This document", "ops", "none",
          {200: ("The OpenAPI 3.1 document.", JSON, {"type": "object"})}, BASE),
    Route("GET", "/v1/peers", "listPeers", "Agents seen recently (presence, ADR-0010)", "ops", "read",
          {200: ("Most recently seen first; status active or idle after the TTL.", JSON,
                 {"type": "object", "properties": {"peers": {"type": "array", "items": {
                     "type": "object", "required": ["agent_id", "owner", "last_seen", "status"],
                     "properties": {"agent_id": {"type": "string"}, "owner": {"type": "string"},
                                    "last_seen": {"type": "string"},
                                    "status": {"enum": ["active", "idle"]}}}}}})}, READ),
    # the web console (ADR-0017): static files, same-origin only (a strict Content-Security-Policy)
    Route("GET", "/ui", "consolePage", "The web console's page", "ops", "none",
          {200: ("The console's HTML page.", "text/html", {"type": "string"})}, ("not_found", "internal_error")),
    Route("GET", "/ui/{asset}", "consoleAsset", "A static file of the web console", "ops", "none",
          {200: ("The file (JavaScript, CSS or SVG, by its extension).", None, None)},
          ("not_found", "internal_error")),
    # channels
    Route("POST", "/channels", "createChannel", "Create a channel", "channels", "write",
          {201: ("The new channel's descriptor.", JSON, ref("ChannelDescriptor"))},
          (*WRITE, "invalid_message", "channel_exists", "channel_limit", "rate_limited"),
          request=(JSON, ref("CreateChannel")), idempotent_key=True,
          description="`created_by` is always the token's owner. 400 `invalid_channel_name` when `channel` "
                      "is missing or not a slug."),
    Route("GET", "/channels", "listChannels", "List channels", "channels", "read",
          {200: ("Every channel, in creation order.", JSON, ref("ChannelList"))}, READ),
    Route("GET", "/channels/{channel}", "describeChannel", "Describe a channel", "channels", "read",
          {200: ("The descriptor with the live head.", JSON, ref("ChannelDescriptor"))}, (*READ, *CHANNEL)),
    Route("POST", "/channels/{channel}/subscribe", "subscribe", "The channel head (a cursor for future messages)",
          "channels", "read", {200: ("The head cursor.", JSON, ref("Cursor"))}, (*READ, *CHANNEL),
          request=(JSON, {"description": "ignored"}), request_required=False),
    Route("POST", "/channels/{channel}/append", "append", "Append a message", "channels", "write",
          {201: ("The stored message (identity anchored, `v`/`ts` stamped) and the new head.", JSON,
                 ref("AppendResult"))},
          (*MESSAGE_WRITE, "duplicate_post"), request=(JSON, ref("Message")), idempotent_key=True,
          description="A repeated `msg_id` with identical content replays the original answer "
                      "(`Idempotent-Replayed: true`); with different content it is 409 `msg_id_conflict`. "
                      "Claims must use /claim."),
    Route("POST", "/channels/{channel}/read", "read", "Read a page after a cursor", "channels", "read",
          {200: ("Messages strictly after `cursor` (an empty page means caught up).", JSON, ref("ReadPage"))},
          (*READ, *CHANNEL, "invalid_cursor"), request=(JSON, ref("ReadRequest")),
          description="`cursor` is required: an absent body is treated as `{}` and gives 400 `invalid_cursor` "
                      "(channels.md §2.11)."),
    Route("POST", "/channels/{channel}/claim", "claim", "Claim a target (first write wins)", "claims", "write",
          {200: ("`granted` (with the claim message and head) or `already_claimed` (with the holder).", JSON,
                 ref("ClaimOutcome"))},
          MESSAGE_WRITE, request=(JSON, ref("ClaimMessage")), idempotent_key=True),
    Route("POST", "/channels/{channel}/reassign", "reassign", "Hand a claim to another identity", "claims",
          "write", {200: ("`granted` or `already_claimed`.", JSON, ref("ClaimOutcome"))}, MESSAGE_WRITE,
          request=(JSON, ref("ReassignRequest")), idempotent_key=True),
    Route("POST", "/channels/{channel}/done", "done", "Release a claim (status forced to resolved)", "claims",
          "write", {200: ("`granted`, `already_claimed` or `not_held`.", JSON, ref("ClaimOutcome"))},
          MESSAGE_WRITE, request=(JSON, ref("ClaimMessage")), idempotent_key=True),
    Route("GET", "/channels/{channel}/claims", "claims", "Live claims (the lease ledger)", "claims", "read",
          {200: ("Every live claim.", JSON, ref("ClaimList"))}, (*READ, *CHANNEL)),
    Route("POST", "/channels/{channel}/archive", "archive", "Archive a channel (creating owner only)",
          "channels", "write", {200: ("The descriptor, now `archived: true`.", JSON, ref("ChannelDescriptor"))},
          (*WRITE, "forbidden"), request=(JSON, {"description": "ignored"}), request_required=False,
          description="Read-only afterwards; still readable and replayable. Archiving twice is a no-op."),
    Route("GET", "/channels/{channel}/stream", "stream", "Live tail (Server-Sent Events)", "channels", "read",
          {200: ("`: keep-alive` first, then one `id: <cursor>` + `data: <message JSON>` frame per message "
                 "(backlog first when resuming), pushed as each write commits; a keep-alive every 15 s.",
                 SSE, TAIL_EVENT)},
          ("invalid_request", "unauthorized", *CHANNEL, "invalid_cursor", "stream_capacity", "internal_error"),
          headers=(LAST_EVENT_ID,), query=(SINCE,)),
    Route("PUT", "/channels/{channel}/artifacts/{sha256}", "putArtifact", "Store a content-addressed blob",
          "artifacts", "write",
          {201: ("Stored.", JSON, ref("ArtifactRef")), 200: ("Already stored (deduplicated).", JSON,
                                                             ref("ArtifactRef"))},
          ("invalid_request", "unauthorized", *CHANNEL, "artifact_integrity", "artifact_too_large", "unavailable",
           "internal_error"),
          request=(OCTETS, {"type": "string", "contentMediaType": OCTETS}),
          description="At most 1 MiB per blob, 16 MiB per channel, 128 MiB in total (configurable)."),
    Route("GET", "/channels/{channel}/artifacts/{sha256}", "getArtifact", "Fetch a blob", "artifacts", "read",
          {200: ("The bytes.", OCTETS, {"type": "string", "contentMediaType": OCTETS})},
          ("invalid_request", "unauthorized", *CHANNEL, "not_found", "internal_error"),
          description="404 `not_found` `no such artifact` when the channel holds no such blob."),
    Route("GET", "/channels/{channel}/ws", "channelWebSocket", "Live tail over WebSocket", "channels", "read",
          {101: ("Switching protocols; the server sends one text frame per message.", None, None)},
          ("upgrade_required", "method_not_allowed", "invalid_request", "unauthorized", *CHANNEL, "invalid_cursor",
           "stream_capacity"),
          query=(SINCE,), websocket=True,
          description="Frames are JSON text `{\"cursor\": N, \"message\": {…}}` (message sanitised like SSE). "
                      "A refusal is a plain HTTP error before any 101; `PARLEY_WEBSOCKETS=0` answers 426. "
                      "A plain (non-upgrade) GET is 405 `method_not_allowed`, like any GET on "
                      "`/channels/{channel}/<action>` (channels.md §4.2).",
          extra={"x-websocket-frames": {"server": ref("TailFrame")}}),
    # admin
    Route("POST", "/admin/tokens", "mintToken", "Mint a token", "admin", "admin",
          {201: ("The new token (shown once).", JSON, ref("Token"))}, ADMIN, request=(JSON, ref("Identity"))),
    Route("POST", "/admin/tokens/revoke", "revokeToken", "Revoke minted tokens", "admin", "admin",
          {200: ("Whether anything was revoked (no oracle for seed/unknown tokens).", JSON, ref("Revoked"))},
          ADMIN, request=(JSON, ref("RevokeRequest"))),
    Route("POST", "/admin/tokens/rotate", "rotateToken", "Rotate an agent's token", "admin", "admin",
          {201: ("The new token; the old ones are revoked.", JSON, ref("Token"))}, ADMIN,
          request=(JSON, ref("RotateRequest"))),
    # sessions
    Route("POST", "/v1/session", "startSession", "Start a session (runs the first turn)", "sessions", "session",
          _turn_success(True), (*SESSION, "idempotency_conflict", "session_limit", "unavailable"),
          request=(JSON, ref("StartInput")), request_required=False, idempotent_key=True, headers=(ACCEPT_SSE,),
          description="With an `Idempotency-Key`, the same identity + key + body returns the same start "
                      "response for as long as the session exists."),
    Route("POST", "/v1/session/{id}/message", "continueSession", "Run one turn", "sessions", "session",
          _turn_success(False), TURN, request=(JSON, ref("TurnInput")), request_required=False,
          idempotent_key=True, headers=(CONTINUATION_HEADER, ACCEPT_SSE),
          description="Present the current continuation token (body or header). The token rotates only on a "
                      "committed turn. `contended` answers carry `Retry-After: 1` and the same token."),
    Route("GET", "/v1/session/{id}", "describeSession", "Describe a session (never shows a token)", "sessions",
          "session", {200: ("The session.", JSON, ref("SessionDescription"))},
          (*SESSION, "unknown_session")),
    Route("DELETE", "/v1/session/{id}", "closeSession", "Close a session (final)", "sessions", "session",
          {200: ("Closed; later requests get 404 `unknown_session`.", JSON, ref("Closed"))},
          (*SESSION, "unknown_session", "missing_token", "stale_token", "turn_in_flight"),
          request=(JSON, ref("CloseRequest")), request_required=False, headers=(CONTINUATION_HEADER,)),
    Route("GET", "/v1/sessions", "listSessions", "The bearer's own open sessions, newest first (ADR-0017)",
          "sessions", "session",
          {200: ("The identity and its open sessions (at most 100, each as describe shows it).", JSON,
                 ref("SessionList"))}, SESSION),
    Route("GET", "/v1/ws", "sessionWebSocket", "Session turns over one WebSocket", "sessions", "session",
          {101: ("Switching protocols; each client text frame is a turn input.", None, None)},
          ("unauthorized", "upgrade_required"), websocket=True,
          description="Auth on the upgrade: `Authorization: Bearer` or `Sec-WebSocket-Protocol: bearer, <token>`. "
                      "A frame without a token starts a session bound to the connection; a frame with "
                      "`sessionId` + `continuationToken` resumes one. Server frames are `record`, `delta`, "
                      "`error` and `outcome`; errors never close the socket; frames over 4 MiB close with 1009. "
                      "A plain (non-upgrade) HTTP request is answered 426 `upgrade_required`.",
          extra={"x-websocket-frames": {"client": ref("WsTurnFrame"), "server": ref("WsServerFrame")}}),
]


# -- component schemas -------------------------------------------------------------------

_STR = {"type": "string"}
_INT = {"type": "integer"}
_CURSOR = {"type": "integer", "minimum": 0}
_MESSAGE_TYPES = ["finding", "claim", "status", "question", "answer", "note", "steer"]

SCHEMAS: dict[str, Any] = {
    "ErrorEnvelope": {
        "type": "object",
        "required": ["error"],
        "properties": {
            "error": {
                "type": "object",
                "required": ["code", "message"],
                "properties": {
                    "code": {"type": "string", "enum": sorted(STATUS_BY_CODE)},
                    "message": _STR,
                    "issues": {
                        "type": "array",
                        "items": _STR,
                        "description": "Every validation problem (only on `invalid_message`).",
                    },
                },
            }
        },
    },
    "Ok": {"type": "object", "required": ["ok"], "properties": {"ok": {"const": True}}},
    "Cursor": {"type": "object", "required": ["cursor"], "properties": {"cursor": _CURSOR}},
    "CreateChannel": {
        "type": "object",
        "required": ["channel"],
        "properties": {
            "channel": {"type": "string", "pattern": "^[a-z0-9][a-z0-9-]{0,63}$"},
            "purpose": {"type": "string", "maxLength": 1024},
            "verbosity": {
                "description": "Stored as given, NOT validated (any JSON value); conventionally quiet, normal or "
                               "chatty; default quiet.",
                "examples": ["quiet", "normal", "chatty"],
            },
            "renderBudgetChars": {"type": "integer", "minimum": 1, "maximum": 8000},
            "created_by": {"type": "string", "description": "ignored: the token's owner is used"},
        },
    },
    "ChannelDescriptor": {
        "type": "object",
        "required": ["channel", "kind", "verbosity", "renderBudgetChars", "created_by", "created_ts", "head"],
        "properties": {
            "channel": _STR,
            "kind": {"const": "ephemeral"},
            "purpose": _STR,
            "verbosity": {"description": "As given at creation (not validated, any JSON value); default quiet."},
            "renderBudgetChars": _INT,
            "created_by": _STR,
            "created_ts": {"type": "string", "description": "opaque stamp `<ISO>#<12-digit seq>`"},
            "head": _CURSOR,
            "archived": {"type": "boolean"},
        },
    },
    "ChannelList": {
        "type": "object",
        "required": ["channels"],
        "properties": {"channels": {"type": "array", "items": ref("ChannelDescriptor")}},
    },
    "Message": {
        "type": "object",
        "description": "A schema-v1 message. `agent_id`/`owner` are overwritten from the token; `v` and `ts` "
                       "are stamped by the server. Unknown keys are rejected.",
        "required": ["type", "msg_id", "body"],
        "additionalProperties": False,
        "properties": {
            "v": {"const": 1},
            "type": {"type": "string", "enum": _MESSAGE_TYPES},
            "agent_id": _STR,
            "owner": _STR,
            "msg_id": {"type": "string", "pattern": "^[0-9A-HJKMNP-TV-Z]{26}$"},
            "body": {"type": "string", "minLength": 1, "maxLength": 16000},
            "thread": {"type": "string", "pattern": "^[0-9A-HJKMNP-TV-Z]{26}$"},
            "reply_to": {"type": "string", "pattern": "^[0-9A-HJKMNP-TV-Z]{26}$"},
            "to": {"type": "array", "items": _STR, "minItems": 1, "maxItems": 32},
            "status": {"type": "string", "enum": ["needs-response", "resolved", "fyi"]},
            "artifact": _STR,
            "target": {"type": "string", "description": "claim only"},
            "lease_ttl": {"type": "integer", "minimum": 1, "description": "claim only (seconds)"},
            "heartbeat": {"type": "boolean", "description": "claim only"},
            "ts": _STR,
            "assignee": {**ref("Identity"), "description": "stored reassign claims only"},
        },
    },
    "ClaimMessage": {
        "allOf": [ref("Message")],
        "required": ["type", "msg_id", "body", "target"],
        "properties": {"type": {"const": "claim"}},
    },
    "ReassignRequest": {
        "allOf": [ref("ClaimMessage")],
        "required": ["assignee"],
        "properties": {"assignee": ref("Identity")},
    },
    "AppendResult": {
        "type": "object",
        "required": ["message", "cursor"],
        "properties": {"message": ref("Message"), "cursor": _CURSOR},
    },
    "ReadRequest": {
        "type": "object",
        "required": ["cursor"],
        "properties": {
            "cursor": {**_CURSOR, "description": "in [0, head], else 400 `invalid_cursor`"},
            "limit": {"type": "integer", "minimum": 1},
        },
    },
    "ReadPage": {
        "type": "object",
        "required": ["messages", "cursor"],
        "properties": {"messages": {"type": "array", "items": ref("Message")}, "cursor": _CURSOR},
    },
    "Holder": {
        "type": "object",
        "required": ["agent_id", "owner", "ts", "msg_id"],
        "properties": {"agent_id": _STR, "owner": _STR, "ts": _STR, "msg_id": _STR},
    },
    "ClaimOutcome": {
        "type": "object",
        "required": ["outcome"],
        "properties": {
            "outcome": {"type": "string", "enum": ["granted", "already_claimed", "not_held"]},
            "message": ref("Message"),
            "cursor": _CURSOR,
            "by": ref("Holder"),
        },
    },
    "ClaimList": {
        "type": "object",
        "required": ["claims"],
        "properties": {
            "claims": {
                "type": "array",
                "items": {
                    "type": "object",
                    "required": ["target", "holder", "ts", "msg_id"],
                    "properties": {
                        "target": _STR,
                        "holder": ref("Identity"),
                        "ts": _STR,
                        "msg_id": _STR,
                        "expires_at": _STR,
                    },
                },
            }
        },
    },
    "ArtifactRef": {
        "type": "object",
        "required": ["uri", "sha256", "size"],
        "properties": {
            "uri": {"type": "string", "description": "caucus://artifact/<channel>/<sha256>"},
            "sha256": _STR,
            "size": _INT,
        },
    },
    "TailFrame": {
        "type": "object",
        "required": ["cursor", "message"],
        "properties": {"cursor": _CURSOR, "message": ref("Message")},
    },
    "Identity": {
        "type": "object",
        "required": ["agent_id", "owner"],
        "properties": {"agent_id": {"type": "string", "minLength": 1}, "owner": {"type": "string", "minLength": 1}},
    },
    "Token": {
        "type": "object",
        "required": ["token", "agent_id", "owner"],
        "properties": {"token": _STR, "agent_id": _STR, "owner": _STR},
    },
    "RevokeRequest": {
        "type": "object",
        "description": "`digest` (full 64-hex sha256 of the token) wins over `agent_id`; one of them, non-empty, "
                       "is required (`revoke requires an agent_id or digest`).",
        "properties": {"agent_id": _STR, "digest": _STR},
        "anyOf": [
            {"required": ["agent_id"], "properties": {"agent_id": {"minLength": 1}}},
            {"required": ["digest"], "properties": {"digest": {"minLength": 1}}},
        ],
    },
    "RotateRequest": {
        "type": "object",
        "required": ["agent_id", "owner"],
        "properties": {
            "agent_id": {"type": "string", "minLength": 1},
            "owner": {"type": "string", "minLength": 1},
            "digest": _STR,
        },
    },
    "Revoked": {"type": "object", "required": ["revoked"], "properties": {"revoked": {"type": "boolean"}}},
    "Action": {
        "type": "object",
        "minProperties": 1,
        "maxProperties": 1,
        "properties": {
            "subscribe": {
                "type": "object",
                "required": ["channel"],
                "properties": {
                    "channel": _STR,
                    "from": {"oneOf": [{"enum": ["head", "start"]}, _CURSOR]},
                },
            },
            "unsubscribe": {"type": "object", "required": ["channel"], "properties": {"channel": _STR}},
            "append": {
                "type": "object",
                "required": ["channel", "message"],
                "properties": {"channel": _STR, "message": ref("Message")},
            },
            "claim": {
                "type": "object",
                "required": ["channel", "message"],
                "properties": {"channel": _STR, "message": ref("ClaimMessage")},
            },
            "reassign": {
                "type": "object",
                "required": ["channel", "message", "assignee"],
                "properties": {"channel": _STR, "message": ref("ClaimMessage"), "assignee": ref("Identity")},
            },
            "done": {
                "type": "object",
                "required": ["channel", "message"],
                "properties": {"channel": _STR, "message": ref("ClaimMessage")},
            },
        },
    },
    "TurnInput": {
        "type": "object",
        "additionalProperties": False,
        "properties": {
            "actions": {"type": "array", "items": ref("Action"), "maxItems": 100},
            "wait": {"type": "integer", "minimum": 0, "maximum": 60},
            "max": {"type": "integer", "minimum": 1, "maximum": 500},
            "continuationToken": _STR,
        },
    },
    "StartInput": {
        "type": "object",
        "additionalProperties": False,
        "properties": {
            "actions": {"type": "array", "items": ref("Action"), "maxItems": 100},
            "wait": {"type": "integer", "minimum": 0, "maximum": 60},
            "max": {"type": "integer", "minimum": 1, "maximum": 500},
            "handler": {"type": "string", "default": "inbox"},
        },
    },
    "Delivered": {
        "type": "object",
        "required": ["channel", "cursor", "message"],
        "properties": {"channel": _STR, "cursor": _CURSOR, "message": ref("Message")},
    },
    "TurnResponse": {
        "type": "object",
        "required": ["sessionId", "status", "continuationToken"],
        "properties": {
            "sessionId": _STR,
            "status": {"type": "string", "enum": ["finished", "parked", "contended"]},
            "continuationToken": _STR,
            "output": {
                "type": "object",
                "properties": {
                    "results": {"type": "array", "items": {"type": "object"}},
                    "messages": {"type": "array", "items": ref("Delivered")},
                    "cursors": {"type": "object", "additionalProperties": _CURSOR},
                },
            },
            "wait": {
                "type": "object",
                "properties": {
                    "channels": {"type": "array", "items": _STR},
                    "cursors": {"type": "object", "additionalProperties": _CURSOR},
                },
            },
            "current": {"type": "integer", "description": "contended only"},
        },
    },
    "TurnRecord": {
        "type": "object",
        "required": ["stream", "seq", "type", "data"],
        "properties": {"stream": _STR, "seq": _INT, "type": _STR, "data": {"type": "object"}},
    },
    "TurnError": {
        "type": "object",
        "required": ["code", "message"],
        "properties": {"code": _STR, "message": _STR},
    },
    "SessionList": {
        "type": "object",
        "required": ["agent_id", "owner", "sessions"],
        "properties": {
            "agent_id": {"type": "string"},
            "owner": {"type": "string"},
            "sessions": {"type": "array", "items": ref("SessionDescription")},
        },
    },
    "SessionDescription": {
        "type": "object",
        "required": ["sessionId", "agent_id", "owner", "handler", "turns", "subscriptions", "status"],
        "properties": {
            "sessionId": _STR,
            "agent_id": _STR,
            "owner": _STR,
            "handler": _STR,
            "turns": _INT,
            "subscriptions": {"type": "object", "additionalProperties": _CURSOR},
            "status": {"type": "string", "enum": ["idle", "in_turn"]},
            "created_ts": _STR,
            "updated_ts": _STR,
        },
    },
    "CloseRequest": {"type": "object", "properties": {"continuationToken": _STR}},
    "Closed": {"type": "object", "required": ["closed"], "properties": {"closed": {"const": True}}},
    "WsTurnFrame": {
        "allOf": [ref("StartInput")],
        "properties": {"sessionId": _STR, "continuationToken": _STR, "idempotencyKey": _STR},
    },
    "WsServerFrame": {
        "type": "object",
        "required": ["type"],
        "properties": {
            "type": {"type": "string", "enum": ["record", "delta", "error", "outcome"]},
            "record": {"type": "object"},
            "delta": ref("Delivered"),
            "code": _STR,
            "message": _STR,
        },
    },
}


# -- rendering ---------------------------------------------------------------------------


def _error_responses(codes: tuple[str, ...]) -> dict[str, Any]:
    by_status: dict[int, list[str]] = {}
    for code in dict.fromkeys(codes):
        by_status.setdefault(STATUS_BY_CODE[code], []).append(code)
    out: dict[str, Any] = {}
    for status in sorted(by_status):
        listed = by_status[status]
        response: dict[str, Any] = {
            "description": "Error: " + ", ".join(f"`{c}`" for c in listed),
            "content": {
                JSON: {
                    "schema": {
                        "allOf": [
                            ref("ErrorEnvelope"),
                            {"properties": {"error": {"properties": {"code": {"enum": listed}}}}},
                        ]
                    }
                }
            },
            "x-error-codes": listed,
        }
        if status in (429, 503):
            response["headers"] = {
                "Retry-After": {"description": "Seconds to wait (rounded up).", "schema": {"type": "integer"}}
            }
        out[str(status)] = response
    return out


def _security(auth: str) -> list[dict[str, list[str]]]:
    if auth == "none":
        return []
    if auth == "read":
        return [{}, {"bearer": []}]  # open unless PARLEY_READ_AUTH=token
    if auth == "admin":
        return [{"admin": []}]
    return [{"bearer": []}]


def _operation(route: Route) -> dict[str, Any]:
    params: list[dict[str, Any]] = []
    if "{channel}" in route.path:
        params.append(CHANNEL_PARAM)
    if "{sha256}" in route.path:
        params.append(SHA_PARAM)
    if "{id}" in route.path:
        params.append(SESSION_PARAM)
    if "{asset}" in route.path:
        params.append(ASSET_PARAM)
    params.extend(route.query)
    params.extend(route.headers)
    if route.idempotent_key:
        params.append(IDEMPOTENCY_KEY)
    responses: dict[str, Any] = {}
    for status, (description, content_type, schema) in sorted(route.success.items()):
        response: dict[str, Any] = {"description": description}
        if content_type is not None:
            response["content"] = {content_type: {"schema": schema or {}}}
            if ACCEPT_SSE in route.headers and content_type == JSON:
                # `Accept: text/event-stream` streams the same turn (sessions.md "Streaming").
                response["content"][SSE] = {"schema": TURN_EVENTS}
        if route.idempotent_key and 200 <= status < 300:
            response["headers"] = {
                "Idempotent-Replayed": {
                    "description": "`true` when this answer replays an earlier identical request.",
                    "schema": {"type": "string", "const": "true"},
                }
            }
        responses[str(status)] = response
    responses.update(_error_responses(route.errors))
    op: dict[str, Any] = {
        "operationId": route.operation_id,
        "summary": route.summary,
        "tags": [route.tag],
        "security": _security(route.auth),
        "responses": responses,
        "x-error-codes": list(dict.fromkeys(route.errors)),
    }
    if route.description:
        op["description"] = route.description
    if params:
        op["parameters"] = params
    if route.request is not None:
        content_type, schema = route.request
        op["requestBody"] = {"required": route.request_required, "content": {content_type: {"schema": schema}}}
    if route.websocket:
        op["x-websocket"] = True
    op.update(route.extra)
    return op


def document() -> dict[str, Any]:
    """The OpenAPI 3.1 document (a fresh dict on every call)."""
    return copy.deepcopy(_document())


def _document() -> dict[str, Any]:
    paths: dict[str, dict[str, Any]] = {}
    for route in ROUTES:
        paths.setdefault(route.path, {})[route.method.lower()] = _operation(route)
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "parley",
            "version": __version__,
            "summary": "A durable coordination backbone for teams of AI agents: Caucus-compatible channels "
                       "and replay-safe sessions.",
            "description": "Every error is `{\"error\": {\"code\", \"message\", \"issues\"?}}`; each operation "
                           "lists its codes in `x-error-codes`. Routes marked `x-websocket: true` are "
                           "WebSocket upgrades (a refusal is an ordinary HTTP error before any 101).",
        },
        "servers": [{"url": "/"}],
        "tags": [{"name": t} for t in ("channels", "claims", "artifacts", "sessions", "admin", "ops")],
        "paths": paths,
        "components": {
            "schemas": SCHEMAS,
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer", "description": "A seed or minted agent token."},
                "admin": {"type": "http", "scheme": "bearer", "description": "PARLEY_ADMIN_TOKEN (loopback only)."},
            },
        },
    }


def route_set() -> set[tuple[str, str]]:
    """``{(METHOD, path)}`` of every documented route."""
    return {(r.method, r.path) for r in ROUTES}


__all__ = ["ROUTES", "Route", "document", "route_set"]
