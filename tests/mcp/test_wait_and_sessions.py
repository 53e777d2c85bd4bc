"""``parley_wait`` (woken by the commit, own posts skipped, timeouts) and the session tools across a restart."""

from __future__ import annotations

import json
import os
import signal
import stat

import trio

from .conftest import append, call, mcp_children, open_streams, stdio_mcp


async def test_wait_returns_a_message_appended_over_http_and_empty_at_its_timeout(server, tmp_path):
    http = server.client("tok-b")
    async with stdio_mcp(server.url, "tok-a", "war-room", tmp_path) as mcp:
        own = (await call(mcp, "parley_post", type="note", body="my own post")).json
        empty = (await call(mcp, "parley_wait", timeout=1)).json
        assert empty == {"messages": [], "cursors": {"war-room": own["cursor"]}, "timed_out": True}

        got = {}

        async def waiter():
            got["result"] = (await call(mcp, "parley_wait", timeout=30)).json

        async with trio.open_nursery() as nursery:
            nursery.start_soon(waiter)
            await open_streams(http, 1)  # the wait is blocked on its SSE tail now
            appended = await trio.to_thread.run_sync(
                lambda: append(http, "war-room", type="finding", body="from bob")
            )
        result = got["result"]
        assert result["timed_out"] is False
        assert [(i["channel"], i["cursor"], i["message"]["body"], i["message"]["owner"]) for i in result["messages"]] == [
            ("war-room", appended["cursor"], "from bob", "bob")
        ]
        assert result["cursors"] == {"war-room": appended["cursor"]}
        # the cursor moved past what was returned: the next wait does not repeat it
        assert (await call(mcp, "parley_wait", timeout=0)).json["messages"] == []

        # joined channels are watched too, and `channel` narrows the watch (guarded)
        http.post("/channels", json={"channel": "side-room", "purpose": "x"})
        await call(mcp, "parley_join_channel", channel="side-room")
        append(http, "side-room", body="side")
        narrowed = (await call(mcp, "parley_wait", timeout=5, channel="side-room")).json
        assert [i["channel"] for i in narrowed["messages"]] == ["side-room"]
        guarded = await call(mcp, "parley_wait", timeout=0, channel="elsewhere")
        assert guarded.is_error and guarded.text.startswith("Cannot post to that channel")


async def test_a_session_resumes_after_the_mcp_process_is_restarted(server, tmp_path):
    http = server.client("tok-b")
    state = tmp_path / "state"
    killed = False
    try:
        async with stdio_mcp(server.url, "tok-a", "war-room", tmp_path, env_state=state) as mcp:
            started = (await call(mcp, "parley_session_start", **{"from": "start"})).json
            append(http, "war-room", body="one")
            first = (await call(mcp, "parley_session_continue")).json
            assert [i["message"]["body"] for i in first["messages"]] == ["one"]
            (pid,) = mcp_children()
            os.kill(pid, signal.SIGKILL)
            killed = True
    except BaseException:  # the SDK's client may complain about the dead pipe on the way out
        if not killed:
            raise
    assert killed and mcp_children() == []
    # the MCP process is gone (kill -9); the resume file holds the session (0600, token never shown)
    files = list((state / "sessions").iterdir())
    assert [f.name for f in files] == ["session__war-room.json"]
    assert stat.S_IMODE(os.stat(files[0]).st_mode) == 0o600
    token = json.loads(files[0].read_text())["continuationToken"]
    assert token and token not in json.dumps([started, first])

    append(http, "war-room", body="two")
    async with stdio_mcp(server.url, "tok-a", "war-room", tmp_path, env_state=state) as mcp:
        resumed = (await call(mcp, "parley_session_continue")).json
        assert resumed["sessionId"] == started["sessionId"]
        assert [i["message"]["body"] for i in resumed["messages"]] == ["two"]
        closed = await call(mcp, "parley_session_close")
        assert not closed.is_error and token not in closed.text
    assert list((state / "sessions").iterdir()) == []
