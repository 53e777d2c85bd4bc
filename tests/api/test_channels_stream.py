"""The SSE log tail ``GET /channels/:c/stream`` (channels.md §3 "SSE log-tail", D4, D7).

Every wait here is on an event (a frame arriving), bounded by a timeout;
nothing sleeps to "let the server catch up".
"""

from __future__ import annotations


import httpx
import orjson
import trio

from tests.support.server import running_server
from tests.support.server import test_settings as settings_for
from tests.support.messages import ulid

KEEP_ALIVE = b": keep-alive"
SINCE_ERROR = {"code": "invalid_request", "message": "since must be a non-negative integer cursor"}


def note(body: str, **extra) -> dict:
    return {"type": "note", "body": body, "msg_id": ulid(), **extra}


class Frames:
    """Split an SSE byte stream into blocks separated by a blank line."""

    def __init__(self, response: httpx.Response) -> None:
        self._chunks = response.aiter_bytes()
        self._buffer = b""

    async def next(self, timeout: float = 5) -> bytes:
        with trio.fail_after(timeout):
            while b"\n\n" not in self._buffer:
                self._buffer += await self._chunks.__anext__()
        block, self._buffer = self._buffer.split(b"\n\n", 1)
        return block

    async def next_data(self, timeout: float = 5) -> tuple[int, dict]:
        """The next message frame (skipping heartbeats): ``(id, message)``."""
        while True:
            block = await self.next(timeout)
            if block == KEEP_ALIVE:
                continue
            id_line, data_line = block.split(b"\n")
            assert id_line.startswith(b"id: ") and data_line.startswith(b"data: "), block
            return int(id_line[4:]), orjson.loads(data_line[6:])


async def wait_for_streams(live, count: int) -> None:
    with trio.fail_after(5):
        while live.backbone.open_streams != count:
            await trio.sleep(0.01)


async def test_headers_first_write_and_backlog_frames(server):
    async with server.client("tok-a") as a:
        await a.post("/channels", json={"channel": "ops"})
        for i in range(3):
            await a.post("/channels/ops/append", json=note(f"m{i}\tx\ny", to=["bob"]))
        await a.post("/channels/ops/claim", json={"type": "claim", "body": "c", "msg_id": ulid(), "target": "t"})
        expected = (await a.post("/channels/ops/read", json={"cursor": 0})).json()["messages"]
        async with a.stream("GET", "/channels/ops/stream?since=0") as response:
            assert response.status_code == 200
            assert response.headers["content-type"] == "text/event-stream; charset=utf-8"
            assert response.headers["cache-control"] == "no-cache, no-transform"
            assert response.headers["connection"] == "keep-alive"
            assert response.headers["x-accel-buffering"] == "no"
            frames = Frames(response)
            assert await frames.next() == KEEP_ALIVE
            raw = []
            for _ in expected:
                raw.append(await frames.next())
        for index, (block, message) in enumerate(zip(raw, expected, strict=True), start=1):
            assert block == b"id: %d\ndata: %s" % (index, orjson.dumps(message))
        async with a.stream("GET", "/channels/ops/stream?since=2") as response:
            frames = Frames(response)
            assert await frames.next() == KEEP_ALIVE
            assert await frames.next_data() == (3, expected[2])
            assert await frames.next_data() == (4, expected[3])


async def test_since_validation_and_cursor_bounds(server):
    async with server.client("tok-a") as a:
        await a.post("/channels", json={"channel": "ops"})
        await a.post("/channels/ops/append", json=note("one"))
        for since in ("-1", "abc", "", "1.0", "1e2", "+1", " 1", "9007199254740992"):
            response = await a.get("/channels/ops/stream", params={"since": since})
            assert response.status_code == 400, since
            assert response.json() == {"error": SINCE_ERROR}
        # Validation comes before the channel lookup.
        assert (await a.get("/channels/ghost/stream?since=x")).json() == {"error": SINCE_ERROR}
        ahead = await a.get("/channels/ops/stream?since=2")
        assert ahead.status_code == 400
        assert ahead.json() == {"error": {"code": "invalid_cursor", "message": "cursor must be an integer in [0, 1]"}}
        for path in ("/channels/ghost/stream", "/channels/ghost/stream?since=0"):
            response = await a.get(path)
            assert response.status_code == 404 and response.json()["error"]["code"] == "unknown_channel"
        async with a.stream("GET", "/channels/ops/stream?since=01") as response:
            assert response.status_code == 200
            frames = Frames(response)
            assert await frames.next() == KEEP_ALIVE


async def test_live_push_and_last_event_id_resume(server):
    async with server.client("tok-a") as a:
        await a.post("/channels", json={"channel": "ops"})
        await a.post("/channels/ops/append", json=note("old"))
        async with a.stream("GET", "/channels/ops/stream") as response:  # from the head: future only
            frames = Frames(response)
            assert await frames.next() == KEEP_ALIVE
            appended = (await a.post("/channels/ops/append", json=note("live"))).json()
            assert await frames.next_data() == (2, appended["message"])
            appended = (await a.post("/channels/ops/append", json=note("again"))).json()
            assert await frames.next_data() == (3, appended["message"])
        async with a.stream("GET", "/channels/ops/stream", headers={"Last-Event-ID": "2"}) as response:
            frames = Frames(response)
            assert await frames.next() == KEEP_ALIVE
            cursor, message = await frames.next_data()
            assert cursor == 3 and message["body"] == "again"
            # ?since= wins over Last-Event-ID
        async with a.stream("GET", "/channels/ops/stream?since=0", headers={"Last-Event-ID": "2"}) as response:
            frames = Frames(response)
            await frames.next()
            assert (await frames.next_data())[1]["body"] == "old"


async def test_heartbeat_when_idle(migrated_url):
    async with running_server(settings_for(migrated_url, stream_heartbeat_s=0.05)) as live:
        async with live.client("tok-a") as a:
            await a.post("/channels", json={"channel": "ops"})
            async with a.stream("GET", "/channels/ops/stream") as response:
                frames = Frames(response)
                assert await frames.next() == KEEP_ALIVE
                assert await frames.next() == KEEP_ALIVE
                appended = (await a.post("/channels/ops/append", json=note("after a beat"))).json()
                assert await frames.next_data() == (1, appended["message"])


async def test_stream_capacity(migrated_url):
    async with running_server(settings_for(migrated_url, max_streams=2)) as live:
        async with live.client("tok-a") as a:
            await a.post("/channels", json={"channel": "ops"})
            async with a.stream("GET", "/channels/ops/stream") as first:
                first_frames = Frames(first)  # keep a reference: a collected iterator closes the stream
                await first_frames.next()
                async with a.stream("GET", "/channels/ops/stream?since=0") as second:
                    second_frames = Frames(second)
                    await second_frames.next()
                    assert live.backbone.open_streams == 2
                    with trio.fail_after(5):
                        refused = await a.get("/channels/ops/stream")
                    assert refused.status_code == 503
                    assert refused.json() == {
                        "error": {"code": "stream_capacity", "message": "too many concurrent streams; retry shortly"}
                    }
                    assert refused.headers["retry-after"] == "1"
                    # validation and the channel lookup come first
                    assert (await a.get("/channels/ops/stream?since=x")).status_code == 400
                    assert (await a.get("/channels/ghost/stream")).status_code == 404
                    assert (await a.get("/channels/ops/stream?since=9")).status_code == 400
            # Closing a stream frees its slot.
            await wait_for_streams(live, 0)
            async with a.stream("GET", "/channels/ops/stream") as again:
                assert again.status_code == 200
                assert await Frames(again).next() == KEEP_ALIVE


async def test_many_subscribers_each_get_every_message_once_in_order(migrated_url):
    subscribers, messages = 64, 25
    settings = settings_for(migrated_url, max_streams=subscribers, max_posts_per_minute=1000)
    async with running_server(settings) as live:
        limits = httpx.Limits(max_connections=subscribers + 10, max_keepalive_connections=subscribers + 10)
        async with live.client("tok-a", limits=limits) as a:
            await a.post("/channels", json={"channel": "fan"})
            received: list[list[tuple[int, dict]]] = [[] for _ in range(subscribers)]
            ready = trio.Semaphore(0)

            async def subscribe(i: int) -> None:
                async with a.stream("GET", "/channels/fan/stream") as response:
                    frames = Frames(response)
                    assert await frames.next() == KEEP_ALIVE
                    ready.release()
                    while len(received[i]) < messages:
                        received[i].append(await frames.next_data(timeout=10))

            async with trio.open_nursery() as nursery:
                for i in range(subscribers):
                    nursery.start_soon(subscribe, i)
                with trio.fail_after(10):
                    for _ in range(subscribers):
                        await ready.acquire()

                async def post(n: int) -> None:
                    response = await a.post("/channels/fan/append", json=note(f"fan {n}"))
                    assert response.status_code == 201

                async with trio.open_nursery() as writers:  # concurrent writers, shared batches
                    for n in range(messages):
                        writers.start_soon(post, n)
            log = (await a.post("/channels/fan/read", json={"cursor": 0})).json()["messages"]
            expected = list(enumerate(log, start=1))
            assert len(expected) == messages
            for frames in received:
                assert frames == expected
