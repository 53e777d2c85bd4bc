"""The MCP server over Streamable HTTP at ``/mcp`` inside ``parley serve`` (contracts/mcp.md §8.3, ADR-0015).

:class:`McpMount` is an ASGI wrapper around the Quart app: ``/mcp`` goes to
the MCP SDK's :class:`StreamableHTTPSessionManager` (stateful: ``initialize``
issues an ``Mcp-Session-Id``), everything else to Quart untouched. Before any
MCP processing it checks the bearer against the server's token store (401
with the channels' envelope), the ``Origin`` (403 unless loopback or the
bound host) and the stream cap (a ``GET`` stream counts like an SSE tail).
Each MCP session gets its own :class:`~parley.mcp.agent.Agent`, whose SDK
client talks to this very server over HTTP with the session's bearer, so
every write is anchored by the same code path as any other client.
"""

from __future__ import annotations

import json
import logging
import os
from typing import Any
from urllib.parse import parse_qs, urlsplit

import trio

from ..errors import Forbidden, InternalError, InvalidRequest, ParleyError, StreamCapacity, Unauthorized, Unavailable
from ..http.auth import bearer
from ..http.routes import MCP_PATH, MOUNT, label_of

log = logging.getLogger("parley.mcp")

#: The mount point and metric label come from the route table (ADR-0033).
PATH = MCP_PATH
LABEL = label_of(MOUNT, PATH)
DEFAULT_HOME = "general"
LOOPBACK = {"127.0.0.1", "localhost", "::1", "[::1]"}
MAX_BODY = 4 * 1024 * 1024


def _headers(scope: dict[str, Any]) -> dict[str, str]:
    return {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}


async def _send_error(send: Any, error: ParleyError, extra: dict[str, str] | None = None) -> None:
    body = json.dumps(error.envelope(), separators=(",", ":")).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    retry_after = error.retry_after_header()
    if retry_after is not None:
        headers.append((b"retry-after", retry_after.encode()))
    for name, value in (extra or {}).items():
        headers.append((name.lower().encode(), value.encode()))
    await send({"type": "http.response.start", "status": error.status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


class McpMount:
    """``/mcp`` → the MCP session manager; anything else → the wrapped app."""

    def __init__(self, app: Any, backbone: Any) -> None:
        self.app = app
        self.backbone = backbone
        self.metrics = getattr(app, "extensions", {}).get("parley.metrics")
        #: MCP session id → its Agent.
        self.agents: dict[str, Any] = {}
        self.nursery: trio.Nursery | None = None
        self.manager: Any = None
        self._starting = trio.Lock()

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            async with trio.open_nursery() as nursery:
                self.nursery = nursery
                await self.app(scope, receive, send)
                nursery.cancel_scope.cancel()
            return
        path = scope.get("path", "")
        if scope["type"] == "http" and (path == PATH or path == PATH + "/"):
            status = _StatusSend(send)
            try:
                await self._handle(scope, receive, status)
            except Exception as error:  # a bug: one log line, the 500 envelope if nothing was sent yet
                log.error("internal error on %s /mcp (%s)", scope.get("method"), type(error).__name__)
                if status.status == 0:
                    await _send_error(status, InternalError())
            if self.metrics is not None:
                self.metrics.requests.labels(LABEL, str(status.status)).inc()
            return
        await self.app(scope, receive, send)

    async def _ensure_manager(self) -> None:
        """Start the SDK's session manager on the first ``/mcp`` request (keeps ``parley serve``'s start-up lean)."""
        async with self._starting:
            if self.manager is not None:
                return
            if self.nursery is None:
                raise RuntimeError("the /mcp mount needs the ASGI lifespan (Hypercorn sends it)")
            from mcp.server.streamable_http_manager import StreamableHTTPSessionManager

            # parley's access log already records requests; the SDK's and httpx's INFO lines are noise here.
            for name in ("mcp", "httpx"):
                logging.getLogger(name).setLevel(logging.WARNING)

            from .server import SERVER_NAME, build_server

            manager = StreamableHTTPSessionManager(app=build_server(self._agent_for), stateless=False)

            async def run(task_status=trio.TASK_STATUS_IGNORED) -> None:
                async with manager.run():
                    task_status.started()
                    await trio.sleep_forever()

            await self.nursery.start(run)
            self.manager = manager
            log.debug("%s mounted at %s", SERVER_NAME, PATH)

    async def _agent_for(self, ctx: Any) -> Any:
        request = getattr(ctx, "request", None)
        agent = request.scope.get("parley.agent") if request is not None else None
        if agent is None:
            from mcp.shared.exceptions import MCPError

            raise MCPError(-32600, "no parley MCP session for this request")
        return agent

    # -- checks before any MCP processing -------------------------------------------

    def _origin_ok(self, scope: dict[str, Any], origin: str | None) -> bool:
        if origin is None:
            return True
        try:
            host = urlsplit(origin).hostname
        except ValueError:
            return False
        if host is None:
            return False
        bound = (scope.get("server") or ("", 0))[0]
        return host in LOOPBACK or host == bound or host == self.backbone.settings.host

    async def _handle(self, scope: dict[str, Any], receive: Any, send: _StatusSend) -> _StatusSend:
        headers = _headers(scope)
        token = bearer(headers.get("authorization"))
        identity = self.backbone.tokens.resolve(token)
        if identity is None:
            await _send_error(send, Unauthorized(), {"WWW-Authenticate": "Bearer"})
            return send
        if not self._origin_ok(scope, headers.get("origin")):
            await _send_error(send, Forbidden("Origin not allowed"))
            return send
        version = headers.get("mcp-protocol-version")
        if version is not None:
            from mcp_types.version import HANDSHAKE_PROTOCOL_VERSIONS

            if version not in HANDSHAKE_PROTOCOL_VERSIONS:
                await _send_error(send, InvalidRequest("/mcp speaks the initialize handshake (stateful sessions) only"))
                return send
        await self._ensure_manager()
        from mcp.server.auth.middleware.bearer_auth import AuthenticatedUser
        from mcp.server.auth.provider import AccessToken

        principal = json.dumps([identity.agent_id, identity.owner])
        scope = dict(scope)
        scope["user"] = AuthenticatedUser(AccessToken(token="(bearer)", client_id=principal, scopes=[]))
        session_id = headers.get("mcp-session-id")
        method = scope.get("method")
        if session_id is None and method == "POST":
            return await self._opening(scope, receive, send, token, identity)
        if session_id is not None:
            scope["parley.agent"] = self.agents.get(session_id)
        if method == "GET":
            return await self._stream(scope, receive, send, identity)
        await self.manager.handle_request(scope, receive, send)
        if method == "DELETE" and session_id is not None and send.status < 300:
            await self._forget(session_id)
        return send

    async def _stream(self, scope: dict[str, Any], receive: Any, send: _StatusSend, identity: Any) -> _StatusSend:
        """A ``GET`` stream holds a tail slot of its identity, like an SSE tail (ADR-0022)."""
        try:
            slot = self.backbone.streams.acquire(identity)
        except StreamCapacity as refusal:
            await _send_error(send, refusal)
            return send
        try:
            await self.manager.handle_request(scope, receive, send)
        finally:
            slot.release()
        return send

    # -- initialize: the session's Agent and its home channel -----------------------

    def _home(self, scope: dict[str, Any], headers: dict[str, str]) -> str:
        query = parse_qs(scope.get("query_string", b"").decode("latin-1"))
        for candidate in (query.get("channel", [None])[0], headers.get("x-parley-channel")):
            if candidate is not None and candidate.strip():
                return candidate.strip()
        return (os.environ.get("PARLEY_MCP_CHANNEL") or "").strip() or DEFAULT_HOME

    def _self_url(self, scope: dict[str, Any]) -> str:
        host, port = scope.get("server") or ("127.0.0.1", self.backbone.settings.port)
        if ":" in host:
            host = f"[{host}]"
        return f"{scope.get('scheme', 'http')}://{host}:{port}"

    async def _opening(self, scope, receive, send: _StatusSend, token: str, identity: Any) -> _StatusSend:
        body, replay = await _buffer(receive)
        try:
            message = json.loads(body) if body else None
        except ValueError:
            message = None
        if not (isinstance(message, dict) and message.get("method") == "initialize"):
            await self.manager.handle_request(scope, replay, send)
            return send
        from ..client import AsyncParley
        from .agent import Agent
        from .config import DisplayIdentity

        client = AsyncParley(self._self_url(scope), token)
        agent = Agent(
            client,
            self._home(scope, _headers(scope)),
            DisplayIdentity(identity.agent_id, identity.owner),
            transport="http",
            task_group=self.nursery,
        )
        try:
            await agent.ensure_home()
        except ParleyError as error:
            await client.aclose()
            if error.code == "transport_error":
                error = Unavailable("the MCP server could not reach its backbone")
            await _send_error(send, error)
            return send

        async def capture(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                for name, value in message.get("headers", []):
                    if name.lower() == b"mcp-session-id":
                        self.agents[value.decode("latin-1")] = agent
            await send(message)

        await self.manager.handle_request(scope, replay, capture)
        if agent not in self.agents.values():
            await client.aclose()
        return send

    async def _forget(self, session_id: str) -> None:
        agent = self.agents.pop(session_id, None)
        if agent is None:
            return
        for scope in agent.watchers.values():
            scope.cancel()
        await agent.client.aclose()


class _StatusSend:
    """An ASGI ``send`` that remembers the response status (for ``/metrics``)."""

    def __init__(self, send: Any) -> None:
        self._send = send
        self.status = 0

    async def __call__(self, message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            self.status = message["status"]
        await self._send(message)


async def _buffer(receive: Any) -> tuple[bytes, Any]:
    """The whole request body, and a ``receive`` that replays it."""
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] != "http.request":
            break
        chunks.append(message.get("body", b""))
        size += len(chunks[-1])
        if size > MAX_BODY or not message.get("more_body"):
            break
    body = b"".join(chunks)
    sent = False

    async def replay() -> dict[str, Any]:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return body, replay


def mount(app: Any, backbone: Any) -> McpMount:
    return McpMount(app, backbone)
