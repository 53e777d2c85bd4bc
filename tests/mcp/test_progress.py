"""``parley_wait`` sends progress while it waits (every ``PROGRESS_EVERY`` seconds; 10 s in production)."""

from __future__ import annotations

from mcp import Client

from parley.client import AsyncParley
from parley.mcp import wait
from parley.mcp.agent import Agent
from parley.mcp.config import DisplayIdentity
from parley.mcp.server import build_server


async def test_a_waiting_call_reports_progress(server, monkeypatch):
    monkeypatch.setattr(wait, "PROGRESS_EVERY", 0.2)
    progress: list[tuple[float, float | None]] = []
    async with AsyncParley(server.url, "tok-a") as backbone:
        agent = Agent(backbone, "war-room", DisplayIdentity("session", "(anchored server-side)"))
        await agent.ensure_home()

        async def provide(ctx):
            return agent

        async def on_progress(done, total, message):
            progress.append((done, total))

        async with Client(build_server(provide), mode="legacy") as mcp:
            result = await mcp.call_tool("parley_wait", {"timeout": 1}, progress_callback=on_progress)
    assert not result.is_error and '"timed_out":true' in result.content[0].text
    assert len(progress) >= 3 and all(total == 1.0 for _, total in progress)
    assert [done for done, _ in progress] == sorted(done for done, _ in progress)
