"""The MCP server object, shared by both transports (stdio: :mod:`.stdio`; HTTP: :mod:`.http`).

:func:`build_server` wires the tool table and the channel resources to an
*agent provider* (``ctx -> Agent``): stdio has one agent per process, the
``/mcp`` mount one per MCP session.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import mcp_types as types
from mcp.server.lowlevel import Server

from .. import __version__
from . import handlers, resources
from .agent import Agent
from .tools import TOOLS

SERVER_NAME = "parley-mcp"
AgentProvider = Callable[[Any], Awaitable[Agent]]


@dataclass
class CallContext:
    """What a long-running tool may use of the MCP request (progress notifications)."""

    request: Any

    async def progress(self, done: float, total: float) -> None:
        await self.request.session.report_progress(done, total)


def _text(text: str, is_error: bool) -> types.CallToolResult:
    return types.CallToolResult(content=[types.TextContent(type="text", text=text)], is_error=is_error)


def build_server(agent_for: AgentProvider, version: str = __version__) -> Server:
    async def list_tools(ctx: Any, params: Any) -> types.ListToolsResult:
        return types.ListToolsResult(
            tools=[types.Tool(name=t.name, description=t.description, input_schema=t.input_schema) for t in TOOLS]
        )

    async def call_tool(ctx: Any, params: types.CallToolRequestParams) -> types.CallToolResult:
        agent = await agent_for(ctx)
        text, is_error = await handlers.call(agent, params.name, params.arguments, CallContext(ctx))
        return _text(text, is_error)

    return Server(
        SERVER_NAME,
        version=version,
        on_list_tools=list_tools,
        on_call_tool=call_tool,
        **resources.handlers(agent_for),
    )
