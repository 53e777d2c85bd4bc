"""The MCP server object (shared by both transports) and ``parley mcp`` over stdio.

:func:`build_server` wires the tool table and the channel resources to an
*agent provider* (``ctx -> Agent``): stdio has one agent per process, the
``/mcp`` mount one per MCP session. ``parley mcp`` runs on trio through
anyio's trio backend, the same event loop as the rest of parley (ADR-0014).
"""

from __future__ import annotations

import sys
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import click
import mcp_types as types
from mcp.server.lowlevel import Server

from .. import __version__
from ..client import AsyncParley, ParleyError
from . import config, handlers, resources
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


def _error_name(error: BaseException) -> str:
    name = type(error).__name__
    return name if name.endswith("Error") else f"{name}Error"


def _fail(error: BaseException, message: str) -> None:
    click.echo(f"parley mcp failed to start: {_error_name(error)}: {message}", err=True)
    sys.exit(1)


async def _serve_stdio(agent: Agent) -> None:
    import anyio
    from mcp.server.stdio import stdio_server

    async with anyio.create_task_group() as tg:
        agent.task_group = tg
        server = build_server(_constant(agent))
        async with stdio_server() as (read_stream, write_stream):
            await server.run(read_stream, write_stream, server.create_initialization_options())
        tg.cancel_scope.cancel()


def _constant(agent: Agent) -> AgentProvider:
    async def provide(ctx: Any) -> Agent:
        return agent

    return provide


async def _main(cfg: config.McpConfig, state_dir: str) -> None:
    async with AsyncParley(cfg.url, cfg.token) as client:
        agent = Agent(client, cfg.home, cfg.identity, state_dir=state_dir)
        try:
            await agent.ensure_home()  # before answering `initialize` (§1)
        except ParleyError as error:
            _fail(error, handlers.error_text(error) if error.code in ("transport_error", "http_error") else error.message)
        except Exception as error:  # value-free: no URL or token in the line
            _fail(error, "unexpected failure while contacting the backbone")
        await _serve_stdio(agent)


def run_stdio() -> None:
    """``parley mcp``: configure from the environment, then serve stdio until EOF."""
    import anyio

    try:
        cfg = config.from_env()
    except config.ConfigError as error:
        _fail(error, str(error))
    try:
        anyio.run(_main, cfg, config.state_dir(), backend="trio")
    except KeyboardInterrupt:
        pass
