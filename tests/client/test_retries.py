"""Retries reuse one Idempotency-Key per logical call, so a lost answer never writes twice."""

from __future__ import annotations

import pytest

import parley.client as pc
from parley.client import AsyncParley
from tests.client import Faulty, is_post


async def test_a_lost_append_answer_is_retried_with_the_same_key_and_stored_once(server):
    transport = Faulty(is_post("/append"), mode="lose")
    async with AsyncParley(server.url, "tok-a", transport=transport, backoff=0.01) as alice:
        await alice.create_channel("retry")
        result = await alice.append("retry", body="exactly once")
        attempts = [r for r in transport.requests if r.url.path.endswith("/append")]
        assert len(attempts) == 2
        keys = {r.headers["idempotency-key"] for r in attempts}
        assert len(keys) == 1  # the same key on the retry
        assert attempts[0].content == attempts[1].content  # and the same msg_id
        assert transport.responses[-1].headers["idempotent-replayed"] == "true"
        page = await alice.read("retry", 0)
        assert page["messages"] == [result["message"]] and page["cursor"] == 1
        # A new logical call gets a new key.
        await alice.append("retry", body="second call")
        last = [r for r in transport.requests if r.url.path.endswith("/append")][-1]
        assert last.headers["idempotency-key"] not in keys


async def test_a_lost_create_is_replayed_not_channel_exists(server):
    transport = Faulty(lambda r: r.method == "POST" and r.url.path == "/channels", mode="lose")
    async with AsyncParley(server.url, "tok-a", transport=transport, backoff=0.01) as alice:
        created = await alice.create_channel("made-once")
        assert created["channel"] == "made-once" and created["head"] == 0
        assert transport.responses[-1].headers["idempotent-replayed"] == "true"
        assert [d["channel"] for d in await alice.list_channels()] == ["made-once"]


async def test_a_lost_claim_is_granted_once(server):
    transport = Faulty(is_post("/claim"), mode="lose")
    async with AsyncParley(server.url, "tok-a", transport=transport, backoff=0.01) as alice:
        await alice.create_channel("claims")
        granted = await alice.claim("claims", "job")
        assert granted["outcome"] == "granted" and granted["cursor"] == 1
        assert (await alice.describe("claims"))["head"] == 1


async def test_refused_connections_and_503_retry_after_are_retried(server):
    refuse = Faulty(is_post("/append"), mode="refuse", times=2)
    async with AsyncParley(server.url, "tok-a", transport=refuse, backoff=0.01) as alice:
        await alice.create_channel("flaky")
        assert (await alice.append("flaky", body="third time lucky"))["cursor"] == 1
        assert len({r.headers["idempotency-key"] for r in refuse.requests if r.url.path.endswith("/append")}) == 1

    busy = Faulty(is_post("/append"), mode="unavailable", times=1)
    async with AsyncParley(server.url, "tok-a", transport=busy, backoff=0.01) as alice:
        assert (await alice.append("flaky", body="after a 503"))["cursor"] == 2

    busy = Faulty(is_post("/append"), mode="unavailable", times=5)
    async with AsyncParley(server.url, "tok-a", transport=busy, retries=1) as alice:
        with pytest.raises(pc.Unavailable) as excinfo:
            await alice.append("flaky", body="never")
        assert excinfo.value.status == 503 and excinfo.value.retry_after == 0


async def test_non_idempotent_calls_are_not_retried_once_sent(server):
    lose = Faulty(is_post("/admin/tokens"), mode="lose")
    async with AsyncParley(server.url, admin_token="admin-secret", transport=lose, backoff=0.01) as admin:
        with pytest.raises(pc.TransportError):
            await admin.mint("bot", "dave")
        assert len([r for r in lose.requests if r.url.path == "/admin/tokens"]) == 1
    async with AsyncParley("http://127.0.0.1:9", "tok-a", retries=1, backoff=0.01) as nowhere:
        with pytest.raises(pc.TransportError):
            await nowhere.health()
