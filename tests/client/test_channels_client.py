"""The channel calls of the SDK against a live server: round trips, paging, claims, artifacts, admin."""

from __future__ import annotations

import hashlib

import pytest
import trio

import parley.client as pc
from parley.client import AsyncParley, Parley


async def test_round_trip_of_every_channel_call(server):
    async with AsyncParley(server.url, "tok-a") as alice, AsyncParley(server.url, "tok-b") as bob:
        assert await alice.health() == {"ok": True}
        created = await alice.create_channel("ops", purpose="p", render_budget_chars=300)
        assert created["channel"] == "ops" and created["created_by"] == "alice" and created["head"] == 0
        assert created["renderBudgetChars"] == 300
        assert [d["channel"] for d in await bob.list_channels()] == ["ops"]
        assert await bob.subscribe("ops") == 0

        appended = await alice.append("ops", body="first", type="finding")
        message = appended["message"]
        assert appended["cursor"] == 1
        assert message["type"] == "finding" and message["owner"] == "alice" and message["v"] == 1
        assert len(message["msg_id"]) == 26  # minted by the SDK
        second = await alice.append("ops", {"body": "second", "status": "fyi"})
        assert second["message"]["type"] == "note"  # the default type

        granted = await alice.claim("ops", "build", lease_ttl=60)
        assert granted["outcome"] == "granted" and granted["message"]["lease_ttl"] == 60
        assert (await bob.claim("ops", "build"))["outcome"] == "already_claimed"
        claims = await bob.claims("ops")
        assert [(c["target"], c["holder"]["owner"]) for c in claims] == [("build", "alice")]
        moved = await alice.reassign("ops", "build", ("sess-b", "bob"))
        assert moved["outcome"] == "granted"
        assert (await bob.claims("ops"))[0]["holder"] == {"agent_id": "sess-b", "owner": "bob"}
        finished = await bob.done("ops", "build")
        assert finished["outcome"] == "granted" and finished["message"]["status"] == "resolved"
        assert await bob.claims("ops") == []
        assert (await bob.done("ops", "build"))["outcome"] == "not_held"

        blob = b"\x00binary\xff" * 10
        stored = await alice.put_artifact("ops", blob)
        sha = hashlib.sha256(blob).hexdigest()
        assert stored == {"uri": f"caucus://artifact/ops/{sha}", "sha256": sha, "size": len(blob),
                          "deduplicated": False}
        assert (await alice.put_artifact("ops", blob))["deduplicated"] is True
        assert await bob.get_artifact("ops", sha) == blob

        assert (await alice.describe("ops"))["head"] == 5
        archived = await alice.archive("ops")
        assert archived["archived"] is True
        assert (await bob.read("ops", 0))["cursor"] == 5  # still readable


async def test_read_all_pages_until_an_empty_page(server):
    async with AsyncParley(server.url, "tok-a") as alice:
        await alice.create_channel("pages")
        bodies = [f"message {i}" for i in range(5)]
        for body in bodies:
            await alice.append("pages", body=body)
        pages = [page async for page in alice.read_all("pages", limit=2)]
        assert [len(p["messages"]) for p in pages] == [2, 2, 1]
        assert [p["cursor"] for p in pages] == [2, 4, 5]
        assert [m["body"] for p in pages for m in p["messages"]] == bodies
        assert [p["cursor"] async for p in alice.read_all("pages", cursor=3)] == [5]
        assert [p async for p in alice.read_all("pages", cursor=5)] == []


async def test_admin_mint_rotate_revoke(server):
    async with AsyncParley(server.url, admin_token="admin-secret") as admin:
        minted = await admin.mint("bot-1", "dave")
        assert minted["agent_id"] == "bot-1" and minted["owner"] == "dave" and minted["token"].startswith("tok_")
        async with AsyncParley(server.url, minted["token"]) as dave:
            created = await dave.create_channel("daves")
            assert created["created_by"] == "dave"
        rotated = await admin.rotate("bot-1", "dave")
        assert rotated["token"] != minted["token"]
        async with AsyncParley(server.url, minted["token"]) as stale:
            with pytest.raises(pc.Unauthorized):
                await stale.append("daves", body="old token")
        assert await admin.revoke(agent_id="bot-1") is True
        assert await admin.revoke(agent_id="bot-1") is False
        with pytest.raises(pc.InvalidRequest) as excinfo:
            await admin.revoke()
        assert excinfo.value.message == "revoke requires an agent_id or digest"


async def test_the_sync_client(server):
    def script() -> tuple[list[int], list[str], str]:
        with Parley(server.url, "tok-a") as alice:
            alice.create_channel("sync")
            for i in range(3):
                alice.append("sync", body=f"s{i}")
            pages = [p["cursor"] for p in alice.read_all("sync", limit=2)]
            tail = alice.tail("sync", since=1)
            tailed = [next(tail)["message"]["body"], next(tail)["message"]["body"]]
            tail.close()
            try:
                alice.create_channel("sync")
            except pc.ChannelExists as error:
                code = error.code
            return pages, tailed, code

    with trio.fail_after(20):
        pages, tailed, code = await trio.to_thread.run_sync(script)
    assert pages == [2, 3]
    assert tailed == ["s1", "s2"]
    assert code == "channel_exists"
