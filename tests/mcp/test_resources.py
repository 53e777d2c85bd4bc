"""Channels as MCP resources: list, read, and ``resources/subscribe`` notifying when a message lands."""

from __future__ import annotations

import json

import mcp_types as types
import trio

import pytest

from .conftest import append, call, open_streams, stdio_mcp

# resources/subscribe is the handshake-era API (the 2026-07-28 era replaces it with subscriptions/listen).
pytestmark = pytest.mark.filterwarnings("ignore::mcp.shared.exceptions.MCPDeprecationWarning")


async def test_a_subscribed_channel_resource_notifies_when_a_message_lands(server, tmp_path):
    http = server.client("tok-b")
    updated: list[str] = []
    landed = trio.Event()

    async def on_message(message) -> None:
        if isinstance(message, types.ResourceUpdatedNotification):
            updated.append(str(message.params.uri))
            landed.set()

    async with stdio_mcp(server.url, "tok-a", "war-room", tmp_path, message_handler=on_message) as mcp:
        http.post("/channels", json={"channel": "side-room", "purpose": "x"})
        await call(mcp, "parley_join_channel", channel="side-room")
        listed = [str(r.uri) for r in (await mcp.list_resources()).resources]
        assert listed == ["parley://channel/war-room", "parley://channel/side-room"]

        await mcp.subscribe_resource("parley://channel/war-room")
        await open_streams(http, 1)
        appended = append(http, "war-room", type="finding", body="it landed")
        with trio.fail_after(10):
            await landed.wait()
        assert updated == ["parley://channel/war-room"]

        read = await mcp.read_resource("parley://channel/war-room")
        body = json.loads(read.contents[0].text)
        assert body["cursor"] == appended["cursor"] and body["messages"][-1]["body"] == "it landed"
        await mcp.unsubscribe_resource("parley://channel/war-room")
