"""``parley mcp``: configure from the environment, make sure the home channel exists, serve stdio.

Runs on trio (``trio.run``; the MCP SDK's anyio code runs on the trio backend,
ADR-0014). The SDK is imported only once the start-up checks have passed, so a
misconfigured start fails in a fraction of a second with the contract's one
line: ``parley mcp failed to start: <ErrorName>: <message>``.
"""

from __future__ import annotations

import os
import sys
from typing import Any

import trio

from ..client import AsyncParley, ParleyError
from . import config
from .agent import Agent


def _error_name(error: BaseException) -> str:
    name = type(error).__name__
    return name if name.endswith("Error") else f"{name}Error"


def _fail(error: BaseException, message: str) -> None:
    print(f"parley mcp failed to start: {_error_name(error)}: {message}", file=sys.stderr, flush=True)
    sys.exit(1)


def _start_message(error: ParleyError) -> str:
    from .handlers import error_text

    return error_text(error) if error.code in ("transport_error", "http_error") else error.message


async def _serve(agent: Agent) -> None:
    from mcp.server.stdio import stdio_server

    from .server import build_server

    async def provide(ctx: Any) -> Agent:
        return agent

    server = build_server(provide)
    async with trio.open_nursery() as nursery:
        agent.task_group = nursery  # resource subscriptions
        async with stdio_server() as (read_stream, write_stream):
            await server.run(read_stream, write_stream, server.create_initialization_options())
        nursery.cancel_scope.cancel()


async def _main(cfg: config.McpConfig, state_dir: str) -> None:
    async with AsyncParley(cfg.url, cfg.token) as client:
        agent = Agent(client, cfg.home, cfg.identity, state_dir=state_dir, outbox=_outbox())
        try:
            await agent.ensure_home()  # before answering `initialize` (§1)
        except ParleyError as error:
            _fail(error, _start_message(error))
        except Exception as error:  # value-free: no URL or token in the line
            _fail(error, "unexpected failure while contacting the backbone")
        await _serve(agent)


def _outbox():
    """``PARLEY_OUTBOX``'s outbox, or None (posts then go straight to the backbone)."""
    path = os.environ.get("PARLEY_OUTBOX", "").strip()
    if not path:
        return None
    from ..client import Outbox

    return Outbox(path)


def run() -> None:
    try:
        cfg = config.from_env()
    except config.ConfigError as error:
        _fail(error, str(error))
    try:
        trio.run(_main, cfg, config.state_dir())
    except KeyboardInterrupt:
        pass
