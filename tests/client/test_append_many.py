"""append_many (ADR-0039): one slot per message, in order, over the batch frame or per request."""

from __future__ import annotations

import orjson
import pytest
import trio
from trio_websocket import open_websocket_url

from parley.client import AsyncParley, DuplicatePost, InvalidMessage, Parley, ParleyError, RateLimited
from tests.support.messages import ulid
from tests.support.server import running_server, test_settings


def _bodies(slots):
    return [None if isinstance(s, ParleyError) else s["message"]["body"] for s in slots]


async def test_slots_are_in_order_and_a_refused_message_does_not_stop_the_others(server):
    async with AsyncParley(server.url, "tok-a") as alice:
        await alice.create_channel("bulk")
        two = {"body": "two", "type": "finding"}
        messages = [{"body": "one"}, {"type": "claim"}, two, two]
        slots = await alice.append_many("bulk", messages)
        assert _bodies(slots) == ["one", None, "two", None]
        assert isinstance(slots[1], InvalidMessage) and slots[1].status == 400
        assert isinstance(slots[3], DuplicatePost)  # the seatbelt's duplicate guard (N=1), as for append
        assert [s["cursor"] for s in (slots[0], slots[2])] == [1, 2]
        assert slots[2]["message"]["type"] == "finding" and len(slots[0]["message"]["msg_id"]) == 26
        page = await alice.read("bulk", 0)
        assert [m["body"] for m in page["messages"]] == ["one", "two"]


async def test_a_resent_batch_is_answered_as_replays_and_stores_nothing_new(server):
    async with AsyncParley(server.url, "tok-a") as alice:
        await alice.create_channel("again")
        messages = [{"body": f"m{i}", "msg_id": ulid(i)} for i in range(5)]
        first = await alice.append_many("again", messages)
        second = await alice.append_many("again", messages)
        assert second == first
        assert (await alice.describe("again"))["head"] == 5


async def test_the_batch_frame_answers_one_acks_frame_like_the_http_route(server):
    async with server.client("tok-a") as http:
        assert (await http.post("/channels", json={"channel": "wire"})).status_code == 201
        single = await http.post("/channels/wire/append", json={"type": "note", "body": "http", "msg_id": ulid(1)})
    url = server.url.replace("http://", "ws://") + "/channels/wire/ws?tail=0"
    frame = {"id": "b1", "append_many": [{"type": "note", "body": "ws", "msg_id": ulid(2)}, "nope", {"type": "note", "body": "http", "msg_id": ulid(1)}]}
    with trio.fail_after(10):
        async with open_websocket_url(url, extra_headers=[("Authorization", "Bearer tok-a")]) as ws:
            await ws.send_message(orjson.dumps(frame).decode())
            acks = orjson.loads(await ws.get_message())
            await ws.send_message(orjson.dumps({"id": 2, "append_many": [{}] * 257}).decode())
            too_many = orjson.loads(await ws.get_message())
    assert acks["type"] == "acks" and acks["id"] == "b1" and len(acks["results"]) == 3
    assert acks["results"][0]["status"] == 201 and acks["results"][0]["body"]["cursor"] == 2
    assert acks["results"][1] == {"status": 400, "error": {"code": "invalid_request", "message": "request body must be a JSON object"}}
    assert acks["results"][2] == {"status": 201, "body": single.json(), "replayed": True}
    assert too_many["type"] == "error" and too_many["code"] == "invalid_request"


async def test_rate_limited_slots_carry_retry_after_and_are_not_stored(migrated_url):
    settings = test_settings(migrated_url, max_posts_per_minute=3)
    async with running_server(settings) as live:
        async with AsyncParley(live.url, "tok-a", retries=0) as alice:
            await alice.create_channel("capped")
            slots = await alice.append_many("capped", [{"body": f"c{i}"} for i in range(5)])
            assert _bodies(slots)[:3] == ["c0", "c1", "c2"]
            assert all(isinstance(s, RateLimited) and s.retry_after and s.status == 429 for s in slots[3:])
            assert (await alice.describe("capped"))["head"] == 3


async def test_without_websockets_it_falls_back_to_per_request_appends(migrated_url):
    async with running_server(test_settings(migrated_url, websockets=False)) as live:
        async with AsyncParley(live.url, "tok-a") as alice:
            await alice.create_channel("plain")
            slots = await alice.append_many("plain", [{"body": "a"}, {"type": "claim"}, {"body": "b"}])
        assert _bodies(slots) == ["a", None, "b"] and isinstance(slots[1], InvalidMessage)


async def test_the_sync_client_gives_the_same_slots(server):
    async with AsyncParley(server.url, "tok-a") as alice:
        await alice.create_channel("sync")

    def run() -> list:
        with Parley(server.url, "tok-a") as client:
            return client.append_many("sync", [{"body": "s1"}, {"type": "claim"}, {"body": "s2"}])

    slots = await trio.to_thread.run_sync(run)
    assert _bodies(slots) == ["s1", None, "s2"]
    async with AsyncParley(server.url, "tok-a") as alice:
        assert [m["body"] for m in (await alice.read("sync", 0))["messages"]] == ["s1", "s2"]


@pytest.mark.parametrize("n", [600])
async def test_many_batches_in_flight_are_stored_in_list_order_under_back_pressure(migrated_url, n):
    """Three batch frames in flight against a 64-command mailbox: delivery waits
    for room, nothing is refused, and the channel holds the list's order."""
    settings = test_settings(
        migrated_url, max_posts_per_minute=100_000, global_max_posts_per_minute=100_000, mailbox_size=64
    )
    async with running_server(settings) as live:
        async with AsyncParley(live.url, "tok-a") as alice:
            await alice.create_channel("many")
            slots = await alice.append_many("many", [{"body": f"n{i}"} for i in range(n)])
            assert [s["message"]["body"] for s in slots] == [f"n{i}" for i in range(n)]
            stored = [m["body"] async for m in alice.iter_messages("many")]
            assert stored == [f"n{i}" for i in range(n)]
