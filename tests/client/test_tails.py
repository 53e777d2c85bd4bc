"""Live tails: SSE (with Last-Event-ID resume after a broken stream) and WebSocket."""

from __future__ import annotations

import trio

from parley.client import AsyncParley
from tests.client import CutStreams


async def _wait_for(predicate, timeout: float = 5.0) -> None:
    with trio.fail_after(timeout):
        while not predicate():
            await trio.sleep(0.01)


async def test_sse_tail_receives_appends_live(server):
    async with AsyncParley(server.url, "tok-a") as alice:
        await alice.create_channel("live")
        await alice.append("live", body="before the tail")  # not delivered: the tail starts at the head
        received: list[dict] = []
        tail = alice.tail("live")

        async def consume() -> None:
            async with tail:
                async for item in tail:
                    received.append(item)
                    if len(received) == 2:
                        return

        with trio.fail_after(10):
            async with trio.open_nursery() as nursery:
                nursery.start_soon(consume)
                await _wait_for(lambda: tail.connections == 1)
                await alice.append("live", body="one")
                await _wait_for(lambda: len(received) == 1)
                await alice.append("live", body="two")
        assert [(i["cursor"], i["message"]["body"]) for i in received] == [(2, "one"), (3, "two")]
        assert tail.cursor == 3


async def test_sse_tail_resumes_with_last_event_id_after_a_broken_stream(server):
    transport = CutStreams(times=1)
    async with AsyncParley(server.url, "tok-a", transport=transport, backoff=0.01) as alice:
        await alice.create_channel("resume")
        for body in ("a", "b", "c"):
            await alice.append("resume", body=body)
        received: list[dict] = []
        with trio.fail_after(10):
            async with alice.tail("resume", since=0) as tail:
                async for item in tail:
                    received.append(item)
                    if len(received) == 3:
                        break
    # Each message exactly once, in order, across two connections.
    assert [(i["cursor"], i["message"]["body"]) for i in received] == [(1, "a"), (2, "b"), (3, "c")]
    assert tail.connections == 2
    first, second = transport.stream_requests
    assert "last-event-id" in first.headers and first.headers["last-event-id"] == "0"
    assert int(second.headers["last-event-id"]) >= 1  # resumed after what the first stream delivered


async def test_websocket_tail_live_and_reconnect(server):
    async with AsyncParley(server.url, "tok-a") as alice:
        await alice.create_channel("ws")
        await alice.append("ws", body="old")
        with trio.fail_after(10):
            async with alice.tail_ws("ws") as tail:
                await alice.append("ws", body="live")
                frame = await tail.__anext__()
                assert frame["cursor"] == 2 and frame["message"]["body"] == "live"
                # Drop the connection; the next frame comes over a new one from ?since=2.
                await tail._ws.aclose()
                await alice.append("ws", body="after reconnect")
                frame = await tail.__anext__()
                assert frame["cursor"] == 3 and frame["message"]["body"] == "after reconnect"
                assert tail.connections == 2
            async with alice.tail_ws("ws", since=0) as replay:
                bodies = [(await replay.__anext__())["message"]["body"] for _ in range(3)]
        assert bodies == ["old", "live", "after reconnect"]
