"""``POST /channels/:c/read`` served from the messages' stored bytes (ADR-0041)."""

from __future__ import annotations

import orjson

from tests.support.messages import ulid


def note(body: str) -> dict:
    return {"type": "note", "body": body, "msg_id": ulid()}


async def test_pages_grow_with_the_head_and_match_the_append_answers(server):
    async with server.client("tok-a") as client:
        assert (await client.post("/channels", json={"channel": "pages"})).status_code == 201
        stored = []
        for i in range(3):
            stored.append((await client.post("/channels/pages/append", json=note(f"é{i}\u2028"))).json()["message"])
        first = await client.post("/channels/pages/read", json={"cursor": 0})
        assert first.content == orjson.dumps({"messages": stored, "cursor": 3})
        assert first.headers["content-length"] == str(len(first.content))
        # The page that ended at the head is not kept: the next append shows up.
        stored.append((await client.post("/channels/pages/append", json=note("later"))).json()["message"])
        second = await client.post("/channels/pages/read", json={"cursor": 0, "limit": 500})
        assert second.content == orjson.dumps({"messages": stored, "cursor": 4})
        middle = await client.post("/channels/pages/read", json={"cursor": 1, "limit": 2})
        assert middle.content == orjson.dumps({"messages": stored[1:3], "cursor": 3})
        at_head = await client.post("/channels/pages/read", json={"cursor": 4})
        assert at_head.content == b'{"messages":[],"cursor":4}'


async def test_a_reloaded_channel_reads_the_same_bytes_from_a_fresh_cache(server):
    async with server.client("tok-a") as client:
        assert (await client.post("/channels", json={"channel": "reload"})).status_code == 201
        for i in range(5):
            await client.post("/channels/reload/append", json=note(f"r{i}"))
        before = (await client.post("/channels/reload/read", json={"cursor": 0})).content
        actor = server.backbone.channels.peek("reload")
        old_log = actor.encoded()
        await actor.activate()  # a new state object, as after a failed write or a lost race
        after = (await client.post("/channels/reload/read", json={"cursor": 0})).content
        assert after == before
        assert actor.encoded() is not old_log and old_log.cached == 0


async def test_a_stale_channel_is_read_through_its_actor_with_the_same_checks(server):
    async with server.client("tok-a") as client:
        assert (await client.post("/channels", json={"channel": "idle"})).status_code == 201
        await client.post("/channels/idle/append", json=note("kept"))
    actor = server.backbone.channels.peek("idle")
    actor._stale = True  # what a failed write leaves: the next read reloads inside the actor
    assert not actor.readable
    async with server.client() as reader:
        page = (await reader.post("/channels/idle/read", json={"cursor": 0})).json()
        missing = await reader.post("/channels/nope/read", json={"cursor": 0})
        bad = await reader.post("/channels/idle/read", json={"cursor": 2})
    assert [m["body"] for m in page["messages"]] == ["kept"]
    assert actor.readable
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "unknown_channel"
    assert bad.status_code == 400 and bad.json()["error"] == {"code": "invalid_cursor", "message": "cursor must be an integer in [0, 1]"}
