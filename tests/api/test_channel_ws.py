"""The channel WebSocket: live tail frames and pipelined appends with one ack each."""

from __future__ import annotations

import orjson
import pytest
import trio
from trio_websocket import open_websocket_url
from tests.support.messages import ulid


async def test_pipelined_appends_are_acked_once_each_and_tailed_in_order(server):
    async with server.client("tok-a") as client:
        assert (await client.post("/channels", json={"channel": "pipe"})).status_code == 201
    url = server.url.replace("http://", "ws://") + "/channels/pipe/ws?since=0"
    count = 25  # under the default 30 posts/min seatbelt
    with trio.fail_after(20):
        async with open_websocket_url(url, extra_headers=[("Authorization", "Bearer tok-a")]) as ws:
            for i in range(count):
                frame = {"id": i, "append": {"type": "note", "body": f"p{i}", "msg_id": ulid(i)}}
                await ws.send_message(orjson.dumps(frame).decode())
            await ws.send_message(orjson.dumps({"id": "bad", "append": {"type": "claim"}}).decode())
            acks, errors, tailed = {}, {}, []
            while len(acks) + len(errors) < count + 1 or len(tailed) < count:
                frame = orjson.loads(await ws.get_message())
                if frame.get("type") == "ack":
                    acks[frame["id"]] = frame
                elif frame.get("type") == "error":
                    errors[frame["id"]] = frame
                else:
                    tailed.append(frame)
    assert sorted(acks) == list(range(count))
    assert all(a["status"] == 201 for a in acks.values())
    assert errors["bad"]["code"] == "invalid_message"
    assert [f["cursor"] for f in tailed] == list(range(1, count + 1))
    assert sorted(a["body"]["cursor"] for a in acks.values()) == list(range(1, count + 1))
    async with server.client() as reader:
        page = (await reader.post("/channels/pipe/read", json={"cursor": 0})).json()
    assert [m["body"] for m in page["messages"]] == [f["message"]["body"] for f in tailed]


async def test_appends_on_a_socket_without_a_token_are_refused(server):
    async with server.client("tok-a") as client:
        assert (await client.post("/channels", json={"channel": "anon"})).status_code == 201
    url = server.url.replace("http://", "ws://") + "/channels/anon/ws?tail=0"
    with trio.fail_after(10):
        async with open_websocket_url(url) as ws:
            await ws.send_message(orjson.dumps({"id": 1, "append": {"type": "note", "body": "x", "msg_id": ulid(1)}}).decode())
            frame = orjson.loads(await ws.get_message())
    assert frame == {"type": "error", "id": 1, "code": "unauthorized", "message": "missing or invalid token"}


async def test_a_resent_frame_is_acked_as_a_replay_with_the_original_body(server):
    """D2 over the socket: same msg_id and content -> the original answer, flagged, nothing new stored."""
    async with server.client("tok-a") as client:
        assert (await client.post("/channels", json={"channel": "again"})).status_code == 201
    url = server.url.replace("http://", "ws://") + "/channels/again/ws?tail=0"
    frame = orjson.dumps({"id": 1, "append": {"type": "note", "body": "once", "msg_id": ulid(7)}}).decode()
    with trio.fail_after(10):
        async with open_websocket_url(url, extra_headers=[("Authorization", "Bearer tok-a")]) as ws:
            await ws.send_message(frame)
            first = orjson.loads(await ws.get_message())
            await ws.send_message(frame)
            second = orjson.loads(await ws.get_message())
    assert first["type"] == "ack" and "replayed" not in first
    assert second == {**first, "replayed": True}
    async with server.client() as reader:
        assert (await reader.get("/channels/again")).json()["head"] == 1


async def test_websocket_tails_share_the_stream_cap_with_sse(sqlite_url):
    """One SSE tail + one WebSocket tail fill max_streams=2: the next upgrade is a plain 503."""
    from trio_websocket import ConnectionRejected

    from tests.support.server import running_server, test_settings

    async with running_server(test_settings(sqlite_url, max_streams=2)) as live:
        async with live.client("tok-a") as a:
            assert (await a.post("/channels", json={"channel": "cap"})).status_code == 201
            url = live.url.replace("http://", "ws://") + "/channels/cap/ws"
            async with a.stream("GET", "/channels/cap/stream") as sse:
                assert sse.status_code == 200
                with trio.fail_after(10):
                    async with open_websocket_url(url):
                        while live.backbone.open_streams < 2:  # the upgrade completes before the count
                            await trio.sleep(0.01)
                        with pytest.raises(ConnectionRejected) as refused:
                            async with open_websocket_url(url):
                                pass
    assert refused.value.status_code == 503
    assert orjson.loads(refused.value.body)["error"]["code"] == "stream_capacity"
    assert dict(refused.value.headers)[b"retry-after"] == b"1"


async def test_batch_frames_behind_a_committing_one_reach_the_actor_before_it_commits(tmp_path):
    """ADR-0061: a socket's next ``append_many`` frames are read while the first
    one commits, so one channel fed by one socket decides them together (the
    old budget of one frame's worth read frame n+1 only after frame n's acks:
    four actor batches of 256). The SQLite write lock is held by another
    connection until all four frames are in the actor's hands; every message
    is then stored once, in the order sent, and acked after its commit."""
    import sqlite3

    from parley.client import AsyncParley
    from parley.journal import migrate
    from tests.support.server import running_server, test_settings

    path = tmp_path / "journal.db"
    url = f"sqlite:///{path}"
    migrate.upgrade(url)
    settings = test_settings(url, max_posts_per_minute=100_000, global_max_posts_per_minute=100_000)
    frames, per_frame = 4, 256
    async with running_server(settings) as live:
        async with live.client("tok-a") as client:
            assert (await client.post("/channels", json={"channel": "held"})).status_code == 201
        channels = live.backbone.channels
        before = channels.statistics()
        ws_url = live.url.replace("http://", "ws://") + "/channels/held/ws?tail=0"
        locker = sqlite3.connect(str(path), isolation_level=None, timeout=5)
        acks = []
        try:
            with trio.fail_after(8):  # under the writer's 10 s busy timeout
                async with open_websocket_url(ws_url, extra_headers=[("Authorization", "Bearer tok-a")]) as ws:
                    locker.execute("BEGIN IMMEDIATE")
                    for f in range(frames):
                        bodies = [{"type": "note", "body": f"f{f} m{k}", "msg_id": ulid(f * 1000 + k)} for k in range(per_frame)]
                        await ws.send_message(orjson.dumps({"id": f, "append_many": bodies}).decode())
                    while True:  # every frame delivered (taken or waiting) while the first cannot commit
                        now = channels.statistics()
                        if now.commands - before.commands + now.mailbox_depth >= frames * per_frame:
                            break
                        await trio.sleep(0.005)
                    locker.execute("ROLLBACK")
                    for _ in range(frames):
                        acks.append(orjson.loads(await ws.get_message()))
        finally:
            locker.close()
        after = channels.statistics()
        async with AsyncParley(live.url, "tok-a") as reader:
            stored = [m["body"] async for m in reader.iter_messages("held")]
    assert after.batches - before.batches <= 2, "the frames were decided one commit at a time"
    assert sorted(a["id"] for a in acks) == list(range(frames))
    cursors = [slot["body"]["cursor"] for a in sorted(acks, key=lambda a: a["id"]) for slot in a["results"]]
    assert cursors == list(range(1, frames * per_frame + 1))
    assert stored == [f"f{f} m{k}" for f in range(frames) for k in range(per_frame)]
