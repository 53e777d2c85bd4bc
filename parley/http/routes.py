"""The route table: every route parley serves, once (ADR-0033).

Each entry is one operation: method, path, handler, metric label, auth
rule and its OpenAPI :class:`~parley.http.route_docs.Doc`. The dispatcher
(:mod:`parley.http.app`, through :class:`~parley.http.routing.Router`), the
WebSocket routes Quart serves, the ``/mcp`` mount's path and label, the
metric labels and ``/openapi.json`` are all derived from :data:`ROUTES`;
``tests/api/test_route_table.py`` checks that nothing is served outside it.

Handlers take ``(ctx, *path parameters)``; a WebSocket entry's handler is a
view factory ``(backbone, metrics, label) -> view``. Entries with
``method=None`` are the catch-alls of the contract's 404/405 matrix
(channels.md §4.2): they serve nothing and say what every method gets there.
Order matters only for reading: the router ranks paths by stage and
specificity, not by position.
"""

from __future__ import annotations

from . import admin, channels, ops, session_ws, sessions, stream, ui, websockets
from .route_docs import (
    ACCEPT_SSE,
    ADMIN,
    BASE,
    CHANNEL,
    CONTINUATION_HEADER,
    JSON,
    LAST_EVENT_ID,
    MESSAGE_WRITE,
    OCTETS,
    READ,
    SESSION,
    SINCE,
    SSE,
    TAIL_EVENT,
    TURN,
    WRITE,
    Doc,
    ref,
    turn_success,
)
from .routing import MOUNT, RAW, WEBSOCKET, Miss, Route, Router

#: The MCP server's mount point (ADR-0015); :mod:`parley.mcp.http` serves it in front of Quart.
MCP_PATH = "/mcp"

_PEERS = {"type": "object", "properties": {"peers": {"type": "array", "items": {
    "type": "object", "required": ["agent_id", "owner", "last_seen", "status"],
    "properties": {"agent_id": {"type": "string"}, "owner": {"type": "string"}, "last_seen": {"type": "string"},
                   "status": {"enum": ["active", "idle"]}}}}}}
_CONSOLE_ERRORS = ("not_found", "method_not_allowed", "internal_error")
_MCP_ERRORS = ("unauthorized", "forbidden", "internal_error")
_JSON_RPC = {"description": "A JSON-RPC 2.0 message (contracts/mcp.md)", "type": "object"}
#: The MCP SDK answers a malformed request with a JSON-RPC error, not parley's envelope.
_MCP_400 = {400: ("A JSON-RPC error from the MCP SDK; or `invalid_request` for an MCP-Protocol-Version "
                  "other than the initialize handshake's.", None, None)}
_ACTION = Miss.POST_OR_405  # /channels/:c/<action>, /admin/tokens/<x>: the method is checked before the action

ROUTES: tuple[Route, ...] = (
    # -- operations ---------------------------------------------------------------------
    Route("GET", "/healthz", ops.healthz, "healthz", "none",
          Doc("healthz", "Liveness", "ops", {200: ("Alive.", JSON, ref("Ok"))}, BASE)),
    Route("GET", "/readyz", ops.readyz, "readyz", "none",
          Doc("readyz", "Readiness (database reachable, not shutting down)", "ops",
              {200: ("Ready.", JSON, ref("Ok"))}, (*BASE, "unavailable"))),
    Route("GET", "/metrics", ops.metrics, "metrics", "none",
          Doc("metrics", "Prometheus metrics", "ops",
              {200: ("Prometheus text exposition.", "text/plain", {"type": "string"})}, BASE)),
    # A non-GET on the document is 404, not 405 (it was never a contract path).
    Route("GET", "/openapi.json", ops.openapi, "openapi", "none",
          Doc("openapi", "This document", "ops", {200: ("The OpenAPI 3.1 document.", JSON, {"type": "object"})}, BASE),
          otherwise=Miss.NOT_FOUND),
    Route("GET", "/v1/peers", ops.peers, "peers", "read",
          Doc("listPeers", "Agents seen recently (presence, ADR-0010)", "ops",
              {200: ("Most recently seen first; status active or idle after the TTL.", JSON, _PEERS)}, READ)),
    # -- the web console (ADR-0017): static files, answered before any body is read; the
    # handler answers every method (an unknown file is 404 before a wrong method's 405).
    Route("GET", "/ui", ui.serve, "ui", "none",
          Doc("consolePage", "The web console's page", "ops",
              {200: ("The console's HTML page.", "text/html", {"type": "string"})}, _CONSOLE_ERRORS),
          serve=RAW, otherwise=Miss.HANDLER),
    Route("GET", "/ui/{asset}", ui.serve, "ui", "none",
          Doc("consoleAsset", "A static file of the web console", "ops",
              {200: ("The file (JavaScript, CSS or SVG, by its extension).", None, None)}, _CONSOLE_ERRORS),
          serve=RAW, otherwise=Miss.HANDLER),
    Route(None, "/ui/{rest...}", None, "ui", "none", serve=RAW, otherwise=Miss.NOT_FOUND),
    # -- channels -----------------------------------------------------------------------
    Route("POST", "/channels", channels.create, "create", "write",
          Doc("createChannel", "Create a channel", "channels",
              {201: ("The new channel's descriptor.", JSON, ref("ChannelDescriptor"))},
              (*WRITE, "invalid_message", "channel_exists", "channel_limit", "rate_limited"),
              request=(JSON, ref("CreateChannel")), idempotent_key=True,
              description="`created_by` is always the token's owner. 400 `invalid_channel_name` when `channel` "
                          "is missing or not a slug.")),
    Route("GET", "/channels", channels.list_channels, "list", "read",
          Doc("listChannels", "List channels", "channels",
              {200: ("Every channel, in creation order.", JSON, ref("ChannelList"))}, READ)),
    Route("GET", "/channels/{channel}", channels.describe, "describe", "read",
          Doc("describeChannel", "Describe a channel", "channels",
              {200: ("The descriptor with the live head.", JSON, ref("ChannelDescriptor"))}, (*READ, *CHANNEL))),
    Route("POST", "/channels/{channel}/subscribe", channels.subscribe, "subscribe", "read",
          Doc("subscribe", "The channel head (a cursor for future messages)", "channels",
              {200: ("The head cursor.", JSON, ref("Cursor"))}, (*READ, *CHANNEL),
              request=(JSON, {"description": "ignored"}), request_required=False),
          otherwise=_ACTION),
    Route("POST", "/channels/{channel}/append", channels.append, "append", "write",
          Doc("append", "Append a message", "channels",
              {201: ("The stored message (identity anchored, `v`/`ts` stamped) and the new head.", JSON,
                     ref("AppendResult"))},
              (*MESSAGE_WRITE, "duplicate_post"), request=(JSON, ref("Message")), idempotent_key=True,
              description="A repeated `msg_id` with identical content replays the original answer "
                          "(`Idempotent-Replayed: true`); with different content it is 409 `msg_id_conflict`. "
                          "Claims must use /claim."),
          otherwise=_ACTION, timed=True),
    Route("POST", "/channels/{channel}/read", channels.read, "read", "read",
          Doc("read", "Read a page after a cursor", "channels",
              {200: ("Messages strictly after `cursor` (an empty page means caught up).", JSON, ref("ReadPage"))},
              (*READ, *CHANNEL, "invalid_cursor"), request=(JSON, ref("ReadRequest")),
              description="`cursor` is required: an absent body is treated as `{}` and gives 400 "
                          "`invalid_cursor` (channels.md §2.11)."),
          otherwise=_ACTION),
    Route("POST", "/channels/{channel}/claim", channels.claim, "claim", "write",
          Doc("claim", "Claim a target (first write wins)", "claims",
              {200: ("`granted` (with the claim message and head) or `already_claimed` (with the holder).", JSON,
                     ref("ClaimOutcome"))},
              MESSAGE_WRITE, request=(JSON, ref("ClaimMessage")), idempotent_key=True),
          otherwise=_ACTION, timed=True),
    Route("POST", "/channels/{channel}/reassign", channels.reassign, "reassign", "write",
          Doc("reassign", "Hand a claim to another identity", "claims",
              {200: ("`granted` or `already_claimed`.", JSON, ref("ClaimOutcome"))}, MESSAGE_WRITE,
              request=(JSON, ref("ReassignRequest")), idempotent_key=True),
          otherwise=_ACTION, timed=True),
    Route("POST", "/channels/{channel}/done", channels.done, "done", "write",
          Doc("done", "Release a claim (status forced to resolved)", "claims",
              {200: ("`granted`, `already_claimed` or `not_held`.", JSON, ref("ClaimOutcome"))},
              MESSAGE_WRITE, request=(JSON, ref("ClaimMessage")), idempotent_key=True),
          otherwise=_ACTION, timed=True),
    Route("GET", "/channels/{channel}/claims", channels.claims, "claims", "read",
          Doc("claims", "Live claims (the lease ledger)", "claims",
              {200: ("Every live claim.", JSON, ref("ClaimList"))}, (*READ, *CHANNEL)),
          otherwise=_ACTION),
    Route("POST", "/channels/{channel}/archive", channels.archive, "archive", "write",
          Doc("archive", "Archive a channel (creating owner only)", "channels",
              {200: ("The descriptor, now `archived: true`.", JSON, ref("ChannelDescriptor"))},
              (*WRITE, "forbidden"), request=(JSON, {"description": "ignored"}), request_required=False,
              description="Read-only afterwards; still readable and replayable. Archiving twice is a no-op."),
          otherwise=_ACTION),
    Route(None, "/channels/{channel}/{action}", None, "unmatched", "none", otherwise=_ACTION),
    Route("GET", "/channels/{channel}/stream", stream.open_stream, "stream", "read",
          Doc("stream", "Live tail (Server-Sent Events)", "channels",
              {200: ("`: keep-alive` first, then one `id: <cursor>` + `data: <message JSON>` frame per message "
                     "(backlog first when resuming), pushed as each write commits; a keep-alive every 15 s.",
                     SSE, TAIL_EVENT)},
              ("invalid_request", "unauthorized", *CHANNEL, "invalid_cursor", "stream_capacity", "internal_error"),
              headers=(LAST_EVENT_ID,), query=(SINCE,)),
          serve=RAW),
    Route("PUT", "/channels/{channel}/artifacts/{sha256}", channels.put_artifact, "artifact_put", "write",
          Doc("putArtifact", "Store a content-addressed blob", "artifacts",
              {201: ("Stored.", JSON, ref("ArtifactRef")),
               200: ("Already stored (deduplicated).", JSON, ref("ArtifactRef"))},
              ("invalid_request", "unauthorized", *CHANNEL, "artifact_integrity", "artifact_too_large",
               "unavailable", "internal_error"),
              request=(OCTETS, {"type": "string", "contentMediaType": OCTETS}),
              description="At most 1 MiB per blob, 16 MiB per channel, 128 MiB in total (configurable)."),
          serve=RAW),
    Route("GET", "/channels/{channel}/artifacts/{sha256}", channels.get_artifact, "artifact_get", "read",
          Doc("getArtifact", "Fetch a blob", "artifacts",
              {200: ("The bytes.", OCTETS, {"type": "string", "contentMediaType": OCTETS})},
              ("invalid_request", "unauthorized", *CHANNEL, "not_found", "internal_error"),
              description="404 `not_found` `no such artifact` when the channel holds no such blob."),
          serve=RAW),
    # A plain GET on the WebSocket path is the catch-all's 405 (channels.md §4.2).
    Route("GET", "/channels/{channel}/ws", websockets.channel_ws_view, "channel_ws", "read",
          Doc("channelWebSocket", "Live tail over WebSocket", "channels",
              {101: ("Switching protocols; the server sends one text frame per message.", None, None)},
              ("upgrade_required", "method_not_allowed", "invalid_request", "unauthorized", *CHANNEL,
               "invalid_cursor", "stream_capacity"),
              query=(SINCE,),
              description="Frames are JSON text `{\"cursor\": N, \"message\": {…}}` (message sanitised like SSE). "
                          "A refusal is a plain HTTP error before any 101; `PARLEY_WEBSOCKETS=0` answers 426. "
                          "A plain (non-upgrade) GET is 405 `method_not_allowed`, like any GET on "
                          "`/channels/{channel}/<action>` (channels.md §4.2).",
              extra={"x-websocket-frames": {"server": ref("TailFrame")}}),
          serve=WEBSOCKET),
    # -- admin --------------------------------------------------------------------------
    Route("POST", "/admin/tokens", admin.mint, "admin_mint", "admin",
          Doc("mintToken", "Mint a token", "admin",
              {201: ("The new token (shown once).", JSON, ref("Token"))}, ADMIN, request=(JSON, ref("Identity")))),
    Route("POST", "/admin/tokens/revoke", admin.revoke, "admin_revoke", "admin",
          Doc("revokeToken", "Revoke minted tokens", "admin",
              {200: ("Whether anything was revoked (no oracle for seed/unknown tokens).", JSON, ref("Revoked"))},
              ADMIN, request=(JSON, ref("RevokeRequest"))),
          otherwise=_ACTION),
    Route("POST", "/admin/tokens/rotate", admin.rotate, "admin_rotate", "admin",
          Doc("rotateToken", "Rotate an agent's token", "admin",
              {201: ("The new token; the old ones are revoked.", JSON, ref("Token"))}, ADMIN,
              request=(JSON, ref("RotateRequest"))),
          otherwise=_ACTION),
    Route(None, "/admin/tokens/{action}", None, "unmatched", "none", otherwise=_ACTION),
    # -- sessions -----------------------------------------------------------------------
    Route("POST", "/v1/session", sessions.start, "session_start", "session",
          Doc("startSession", "Start a session (runs the first turn)", "sessions",
              turn_success(True), (*SESSION, "idempotency_conflict", "session_limit", "unavailable"),
              request=(JSON, ref("StartInput")), request_required=False, idempotent_key=True, headers=(ACCEPT_SSE,),
              description="With an `Idempotency-Key`, the same identity + key + body returns the same start "
                          "response for as long as the session exists.")),
    Route("POST", "/v1/session/{id}/message", sessions.continue_, "session_message", "session",
          Doc("continueSession", "Run one turn", "sessions",
              turn_success(False), TURN, request=(JSON, ref("TurnInput")), request_required=False,
              idempotent_key=True, headers=(CONTINUATION_HEADER, ACCEPT_SSE),
              description="Present the current continuation token (body or header). The token rotates only on a "
                          "committed turn. `contended` answers carry `Retry-After: 1` and the same token.")),
    Route("GET", "/v1/session/{id}", sessions.describe, "session_describe", "session",
          Doc("describeSession", "Describe a session (never shows a token)", "sessions",
              {200: ("The session.", JSON, ref("SessionDescription"))}, (*SESSION, "unknown_session"))),
    Route("DELETE", "/v1/session/{id}", sessions.close, "session_close", "session",
          Doc("closeSession", "Close a session (final)", "sessions",
              {200: ("Closed; later requests get 404 `unknown_session`.", JSON, ref("Closed"))},
              (*SESSION, "unknown_session", "missing_token", "stale_token", "turn_in_flight"),
              request=(JSON, ref("CloseRequest")), request_required=False, headers=(CONTINUATION_HEADER,))),
    Route("GET", "/v1/sessions", sessions.list_sessions, "session_list", "session",
          Doc("listSessions", "The bearer's own open sessions, newest first (ADR-0017)", "sessions",
              {200: ("The identity and its open sessions (at most 100, each as describe shows it).", JSON,
                     ref("SessionList"))}, SESSION)),
    Route("GET", "/v1/ws", session_ws.view, "session_ws", "session",
          Doc("sessionWebSocket", "Session turns over one WebSocket", "sessions",
              {101: ("Switching protocols; each client text frame is a turn input.", None, None)},
              ("unauthorized", "upgrade_required"),
              description="Auth on the upgrade: `Authorization: Bearer` or `Sec-WebSocket-Protocol: bearer, "
                          "<token>`. A frame without a token starts a session bound to the connection; a frame "
                          "with `sessionId` + `continuationToken` resumes one. Server frames are `record`, "
                          "`delta`, `error` and `outcome`; errors never close the socket; frames over 4 MiB close "
                          "with 1009. A plain (non-upgrade) HTTP request is answered 426 `upgrade_required`.",
              extra={"x-websocket-frames": {"client": ref("WsTurnFrame"), "server": ref("WsServerFrame")}}),
          serve=WEBSOCKET),
    Route(None, "/v1/ws", None, "unmatched", "none", otherwise=Miss.UPGRADE_REQUIRED),
    # -- the MCP server over Streamable HTTP (ADR-0015), mounted in front of Quart ------------
    Route("POST", MCP_PATH, None, "mcp", "session",
          Doc("mcpPost", "Send MCP JSON-RPC messages (initialize opens a session)", "mcp",
              {200: ("The JSON-RPC response, as JSON or as an SSE stream.", JSON, _JSON_RPC),
               202: ("Accepted (a notification or a response from the client).", None, None), **_MCP_400},
              _MCP_ERRORS, request=(JSON, _JSON_RPC),
              description="Bearer and `Origin` are checked before any MCP processing; `initialize` answers "
                          "an `Mcp-Session-Id` to send on every later request (contracts/mcp.md §8.3)."),
          serve=MOUNT),
    Route("GET", MCP_PATH, None, "mcp", "session",
          Doc("mcpStream", "The session's server-to-client stream (SSE)", "mcp",
              {200: ("Server-initiated JSON-RPC messages as SSE.", SSE, {"type": "string"}), **_MCP_400},
              (*_MCP_ERRORS, "stream_capacity"),
              description="Holds a tail slot of its identity, like an SSE tail (ADR-0022)."),
          serve=MOUNT),
    Route("DELETE", MCP_PATH, None, "mcp", "session",
          Doc("mcpClose", "End an MCP session", "mcp", {200: ("Ended.", None, None), **_MCP_400}, _MCP_ERRORS),
          serve=MOUNT),
)

#: The dispatcher's lookup, built once from the table.
ROUTER = Router(ROUTES)


def websocket_routes() -> tuple[Route, ...]:
    """The entries Quart serves as WebSocket routes."""
    return tuple(r for r in ROUTES if r.serve is WEBSOCKET)


def label_of(serve, path: str) -> str:
    """The metric label of the operation(s) on ``path`` served by ``serve`` (e.g. the ``/mcp`` mount)."""
    labels = {r.label for r in ROUTES if r.serve is serve and r.path == path and r.method is not None}
    assert len(labels) == 1, (path, labels)
    return labels.pop()


def operations() -> tuple[Route, ...]:
    """Every documented operation (the catch-alls left out), in table order."""
    return tuple(r for r in ROUTES if r.method is not None)


__all__ = ["MCP_PATH", "MOUNT", "RAW", "ROUTER", "ROUTES", "WEBSOCKET", "label_of", "operations",
           "websocket_routes"]
