"""The MCP server over Streamable HTTP at ``/mcp`` in ``parley serve``, driven by the SDK's HTTP client."""

from __future__ import annotations

import json
from contextlib import asynccontextmanager

import httpx
import pytest
import httpx2
import trio
from mcp import Client
from mcp.client.streamable_http import streamable_http_client

from .conftest import call

INIT = {
    "jsonrpc": "2.0",
    "id": 1,
    "method": "initialize",
    "params": {"protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "t", "version": "0"}},
}
MCP_HEADERS = {"Accept": "application/json, text/event-stream", "Content-Type": "application/json"}


@asynccontextmanager
async def http_mcp(url: str, token: str, channel: str | None = "war-room", mode: str = "auto"):
    target = f"{url}/mcp" + (f"?channel={channel}" if channel else "")
    async with httpx2.AsyncClient(headers={"Authorization": f"Bearer {token}"}, timeout=30) as http:
        async with Client(streamable_http_client(target, http_client=http), mode=mode) as client:
            yield client


def test_bearer_origin_and_channel_are_checked_before_any_mcp_processing(server):
    with httpx.Client(base_url=server.url, timeout=10) as http:
        for headers in ({}, {"Authorization": "Bearer nope"}):
            response = http.post("/mcp", json=INIT, headers={**MCP_HEADERS, **headers})
            assert response.status_code == 401
            assert response.headers["www-authenticate"] == "Bearer"
            assert response.json() == {"error": {"code": "unauthorized", "message": "missing or invalid token"}}
        auth = {**MCP_HEADERS, "Authorization": "Bearer tok-a"}
        evil = http.post("/mcp", json=INIT, headers={**auth, "Origin": "https://evil.example"})
        assert evil.status_code == 403
        local = http.post("/mcp?channel=Bad_Name", json=INIT, headers={**auth, "Origin": "http://localhost:3000"})
        assert local.status_code == 400 and local.json()["error"]["code"] == "invalid_channel_name"
        opened = http.post("/mcp", json=INIT, headers={**auth, "X-Parley-Channel": "from-header"})
        assert opened.status_code == 200 and opened.headers["mcp-session-id"]
        assert http.get("/channels/from-header").json()["created_by"] == "alice"
        # the session is anchored to its token's identity: another identity gets 404, as an unknown session
        stolen = http.post(
            "/mcp",
            json={"jsonrpc": "2.0", "id": 2, "method": "tools/list"},
            headers={**MCP_HEADERS, "Authorization": "Bearer tok-b", "Mcp-Session-Id": opened.headers["mcp-session-id"]},
        )
        assert stolen.status_code == 404
        metrics = http.get("/metrics").text
        assert 'parley_http_requests_total{route="mcp",status="401"} 2.0' in metrics


async def test_posts_are_anchored_and_two_tokens_never_share_session_state(server):
    http = server.client("tok-a")
    async with http_mcp(server.url, "tok-a") as alice, http_mcp(server.url, "tok-b") as bob:
        status = (await call(alice, "parley_status")).json
        assert status == {"agent_id": "sess-a", "owner": "alice", "channel": "war-room", "head": 0}
        assert (await call(bob, "parley_status")).json["owner"] == "bob"

        posted = (await call(alice, "parley_post", type="finding", body="anchored")).json
        stored = http.post("/channels/war-room/read", json={"cursor": 0}).json()["messages"]
        assert [(m["msg_id"], m["owner"], m["agent_id"]) for m in stored] == [(posted["msg_id"], "alice", "sess-a")]

        await call(alice, "parley_create_channel", channel="side-room", purpose="alice only")
        await call(alice, "parley_join_channel", channel="side-room")
        assert not (await call(alice, "parley_post", type="note", body="in", channel="side-room")).is_error
        refused = await call(bob, "parley_post", type="note", body="in", channel="side-room")
        assert refused.is_error and refused.text.startswith("Cannot post to that channel")

        started = (await call(alice, "parley_session_start")).json
        assert started["status"] == "finished"
        none = await call(bob, "parley_session_continue")
        assert none.text == "No parley session is active: call parley_session_start first."

        # bob's wait sees alice's post; alice's own wait skips it
        await call(bob, "parley_wait", timeout=0)
        again = (await call(alice, "parley_post", type="note", body="second")).json
        woke = (await call(bob, "parley_wait", timeout=10)).json
        assert [i["message"]["msg_id"] for i in woke["messages"]] == [again["msg_id"]]
        assert (await call(alice, "parley_wait", timeout=0)).json["messages"] == []

        # paths name the server's disk: refused; fetch returns the bytes inline
        refused_path = await call(alice, "parley_upload_artifact", path="/etc/passwd")
        assert refused_path.text == "`path` is not available over the HTTP transport; use `content`"
        up = (await call(alice, "parley_upload_artifact", content="hello ✓")).json
        fetched = (await call(alice, "parley_fetch_artifact", uri=up["uri"])).json
        assert fetched == {"uri": up["uri"], "sha256": up["sha256"], "size": up["size"], "content": "hello ✓"}
        assert http.get(f"/channels/war-room/artifacts/{up['sha256']}").content == "hello ✓".encode()

        tools = [t.name for t in (await alice.list_tools()).tools]
        assert len(tools) == 20
    assert json.loads(json.dumps(started))["sessionId"].startswith("ses_")


async def test_the_mcp_get_stream_counts_against_the_stream_cap(tmp_path):
    from tests.support.process import serve, sqlite_url

    with serve(sqlite_url(tmp_path), tmp_path, PARLEY_MAX_STREAMS="1") as srv:
        auth = {**MCP_HEADERS, "Authorization": "Bearer tok-a"}
        async with httpx.AsyncClient(base_url=srv.url, timeout=10) as http:
            opened = await http.post("/mcp?channel=war-room", json=INIT, headers=auth)
            session = {"Mcp-Session-Id": opened.headers["mcp-session-id"], "Mcp-Protocol-Version": "2025-11-25"}
            note = {"jsonrpc": "2.0", "method": "notifications/initialized"}
            assert (await http.post("/mcp", json=note, headers={**auth, **session})).status_code == 202
            stream_headers = {"Authorization": "Bearer tok-a", "Accept": "text/event-stream", **session}
            async with http.stream("GET", "/mcp", headers=stream_headers) as stream:
                assert stream.status_code == 200
                tail = await http.get("/channels/war-room/stream")
                assert tail.status_code == 503 and tail.json()["error"]["code"] == "stream_capacity"
                assert "parley_open_streams 1.0" in (await http.get("/metrics")).text
                # ending the MCP session ends its stream and frees the slot
                assert (await http.delete("/mcp", headers={"Authorization": "Bearer tok-a", **session})).status_code == 200
                with trio.fail_after(10):
                    while "parley_open_streams 0.0" not in (await http.get("/metrics")).text:
                        await trio.sleep(0.02)


@pytest.mark.filterwarnings("ignore::mcp.shared.exceptions.MCPDeprecationWarning")
async def test_resource_subscriptions_notify_over_http_too(server):
    import mcp_types as types

    from .conftest import append, open_streams

    landed = trio.Event()

    async def on_message(message) -> None:
        if isinstance(message, types.ResourceUpdatedNotification):
            landed.set()

    target = f"{server.url}/mcp?channel=war-room"
    async with httpx2.AsyncClient(headers={"Authorization": "Bearer tok-a"}, timeout=30) as http2:
        async with Client(streamable_http_client(target, http_client=http2), message_handler=on_message) as mcp:
            await mcp.subscribe_resource("parley://channel/war-room")
            http = server.client("tok-b")
            await open_streams(http, 2)  # the MCP GET stream and the subscription's tail
            append(http, "war-room", body="hello")
            with trio.fail_after(10):
                await landed.wait()
