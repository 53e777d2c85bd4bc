"""With PARLEY_OUTBOX set, ``parley mcp`` posts survive parley being down (issue 18, last deliverable)."""

from __future__ import annotations

import sys

from mcp import Client, StdioServerParameters

from tests.mcp.conftest import Result, mcp_env
from tests.support.process import start_server, sqlite_url


async def test_a_post_made_while_parley_is_down_is_queued_then_delivered_once(tmp_path):
    url = sqlite_url(tmp_path)
    server = start_server(url, tmp_path)
    port = server.url.rsplit(":", 1)[1]
    env = mcp_env(server.url, "tok-a", "war-room", tmp_path, PARLEY_OUTBOX=str(tmp_path / "outbox.db"))
    params = StdioServerParameters(command=sys.executable, args=["-m", "parley", "mcp"], env=env, cwd=str(tmp_path))
    try:
        async with Client(params, mode="legacy") as mcp:
            first = Result(await mcp.call_tool("parley_post", {"type": "note", "body": "before the outage"}))
            assert list(first.json) == ["msg_id", "cursor", "delivery"]
            assert first.json["delivery"] == "delivered" and first.json["cursor"] == 1
            server.kill9()
            queued = Result(await mcp.call_tool("parley_post", {"type": "note", "body": "during the outage"}))
            assert queued.json["delivery"] == "queued" and queued.json["cursor"] is None
            server = start_server(url, tmp_path, PORT=port)  # same file, same port
            after = Result(await mcp.call_tool("parley_post", {"type": "note", "body": "after the outage"}))
            # The queued post goes first (one lane per channel), then this one.
            assert after.json["delivery"] == "delivered" and after.json["cursor"] == 3
            refused = Result(await mcp.call_tool("parley_post", {"type": "note", "body": "bad\x1bbody"}))
            assert refused.is_error
            assert refused.text == "Invalid message: body must not contain control characters (tab and newline are allowed)"
        with server.client() as http:
            messages = http.post("/channels/war-room/read", json={"cursor": 0}).json()["messages"]
        assert [m["body"] for m in messages] == ["before the outage", "during the outage", "after the outage"]
        assert messages[1]["msg_id"] == queued.json["msg_id"]
    finally:
        server.close()
