"""A commit batch reaches each live tail in ONE transport write (ADR-0042).

The batch is built for real: N appends are put in the channel actor's
mailbox before it runs, so they are decided and committed as one journal
append (checked through the journal's commit callback, not assumed). The
writes are counted on the tail's own server connection (``AdmittedStream``
counts its ``send_all`` calls), since a client cannot see write boundaries
through TCP.
"""

from __future__ import annotations

import httpx
import orjson
import pytest
import trio
from trio_websocket import open_websocket_url

from parley.domain.outcomes import Appended
from parley.actors.channel_actor import Append
from tests.support.messages import ulid

BATCH = 12  # under the default 30 posts/min seatbelt of one agent


def only_transport(live):
    (slot,) = live.backbone.streams.live
    assert slot.transport is not None, "the tail's connection was not recorded"
    return slot.transport


async def commit_one_batch(live, channel: str) -> list[int]:
    """Append BATCH messages as one actor batch; returns the size of every commit meanwhile."""
    backbone = live.backbone
    identity = backbone.tokens.resolve("tok-a")
    sizes: list[int] = []
    record = lambda events: sizes.append(len(events))  # noqa: E731
    backbone.journal.on_commit.append(record)
    try:
        replies = [
            backbone.channels.tell(channel, Append({"type": "note", "body": f"b{i}", "msg_id": ulid()}, identity))
            for i in range(BATCH)
        ]
        for reply in replies:
            result = await reply.wait()
            assert isinstance(result, Appended)
    finally:
        backbone.journal.on_commit.remove(record)
    return sizes


async def make_channel(live, name: str) -> None:
    async with live.client("tok-a") as client:
        assert (await client.post("/channels", json={"channel": name})).status_code == 201
        # One append first, so the channel actor is in memory before the batch.
        body = {"type": "note", "body": "first", "msg_id": ulid()}
        assert (await client.post(f"/channels/{name}/append", json=body)).status_code == 201


async def test_sse_gets_a_commit_batch_in_one_write(server):
    await make_channel(server, "sse-batch")
    with trio.fail_after(20):
        async with httpx.AsyncClient(base_url=server.url, timeout=30) as client:
            async with client.stream("GET", "/channels/sse-batch/stream?since=1") as response:
                chunks = response.aiter_bytes()
                buffer = await chunks.__anext__()  # the opening keep-alive
                assert buffer.startswith(b": keep-alive")
                transport = only_transport(server)
                before = transport.writes
                sizes = await commit_one_batch(server, "sse-batch")
                assert sizes == [BATCH], f"the appends did not commit as one batch: {sizes}"
                while buffer.count(b"\ndata: ") < BATCH:
                    buffer += await chunks.__anext__()
                assert transport.writes - before == 1
                # Written by the tail itself, not through Quart and Hypercorn (ADR-0054).
                assert transport.direct_writes >= 1
    frames = [block for block in buffer.split(b"\n\n") if block.startswith(b"id: ")]
    assert [int(f.split(b"\n")[0][4:]) for f in frames] == list(range(2, BATCH + 2))
    assert [orjson.loads(f.split(b"\n")[1][6:])["body"] for f in frames] == [f"b{i}" for i in range(BATCH)]


async def test_websocket_gets_one_frame_per_message_in_one_write(server):
    await make_channel(server, "ws-batch")
    url = server.url.replace("http://", "ws://") + "/channels/ws-batch/ws?since=1"
    with trio.fail_after(20):
        async with open_websocket_url(url) as ws:
            # The route took its slot and named its connection before it accepted.
            transport = only_transport(server)
            before = transport.writes
            sizes = await commit_one_batch(server, "ws-batch")
            assert sizes == [BATCH], f"the appends did not commit as one batch: {sizes}"
            frames = [orjson.loads(await ws.get_message()) for _ in range(BATCH)]
            assert transport.writes - before == 1
            assert transport.direct_writes >= 1  # ADR-0054
    # Still one text frame per message, exactly as before (ADR-0006).
    assert [f["cursor"] for f in frames] == list(range(2, BATCH + 2))
    assert [f["message"]["body"] for f in frames] == [f"b{i}" for i in range(BATCH)]


@pytest.mark.parametrize("kind", ["sse", "ws"])
async def test_a_page_of_backlog_is_one_write_too(server, kind):
    """A tail opened behind the head gets its backlog (up to a page) in one write."""
    await make_channel(server, f"backlog-{kind}")
    await commit_one_batch(server, f"backlog-{kind}")
    with trio.fail_after(20):
        if kind == "sse":
            async with httpx.AsyncClient(base_url=server.url, timeout=30) as client:
                async with client.stream("GET", f"/channels/backlog-{kind}/stream?since=0") as response:
                    buffer = b""
                    chunks = response.aiter_bytes()
                    while buffer.count(b"\ndata: ") < BATCH + 1:
                        buffer += await chunks.__anext__()
                    writes = only_transport(server).writes
            assert writes == 3  # the head, the opening keep-alive, the whole backlog
        else:
            url = server.url.replace("http://", "ws://") + f"/channels/backlog-{kind}/ws?since=0"
            async with open_websocket_url(url) as ws:
                frames = [orjson.loads(await ws.get_message()) for _ in range(BATCH + 1)]
                writes = only_transport(server).writes
            assert [f["cursor"] for f in frames] == list(range(1, BATCH + 2))
            assert writes == 2  # the 101 handshake, the whole backlog


async def test_many_tails_of_one_page_share_its_bytes_and_each_get_it_directly(server):
    """Every tail of a commit gets its own direct write of the same bytes (ADR-0054)."""
    from parley.http.stream import PAGES

    await make_channel(server, "shared-page")
    url = server.url.replace("http://", "ws://") + "/channels/shared-page/ws?since=1"
    with trio.fail_after(20):
        async with open_websocket_url(url) as one, open_websocket_url(url) as two:
            async with httpx.AsyncClient(base_url=server.url, timeout=30) as client:
                async with client.stream("GET", "/channels/shared-page/stream?since=1") as response:
                    chunks = response.aiter_bytes()
                    buffer = await chunks.__anext__()
                    transports = [s.transport for s in server.backbone.streams.live]
                    assert len(transports) == 3 and all(t is not None for t in transports)
                    direct = [t.direct_writes for t in transports]
                    hits = PAGES.hits
                    await commit_one_batch(server, "shared-page")
                    while buffer.count(b"\ndata: ") < BATCH:
                        buffer += await chunks.__anext__()
                    texts = [[orjson.loads(await ws.get_message()) for _ in range(BATCH)] for ws in (one, two)]
                    assert [t.direct_writes - d for t, d in zip(transports, direct)] == [1, 1, 1]
                    assert PAGES.hits - hits == 1  # the second WebSocket tail reused the first's frames
    assert texts[0] == texts[1]
    assert [f["cursor"] for f in texts[0]] == list(range(2, BATCH + 2))


async def test_a_websocket_with_an_extension_gets_its_own_frames(server):
    """A client that negotiated permessage-deflate gets frames its connection
    compressed, as before: the shared uncompressed bytes are not for it."""
    import wsproto
    from urllib.parse import urlsplit
    from wsproto.events import AcceptConnection, Request, TextMessage
    from wsproto.extensions import PerMessageDeflate

    await make_channel(server, "deflate")
    parts = urlsplit(server.url)
    with trio.fail_after(20):
        stream = await trio.open_tcp_stream(parts.hostname, parts.port)
        conn = wsproto.WSConnection(wsproto.ConnectionType.CLIENT)
        await stream.send_all(
            conn.send(Request(host=parts.netloc, target="/channels/deflate/ws?since=1", extensions=[PerMessageDeflate()]))
        )
        raw = b""
        texts: list[str] = []
        accepted = None
        while len(texts) < BATCH:
            data = await stream.receive_some(65536)
            assert data, "the server closed the connection"
            raw += data if accepted else b""
            conn.receive_data(data)
            for event in conn.events():
                if isinstance(event, AcceptConnection):
                    accepted = event
                    assert any(isinstance(e, PerMessageDeflate) for e in event.extensions)
                    await commit_one_batch(server, "deflate")
                elif isinstance(event, TextMessage):
                    texts.append(event.data)
        await stream.aclose()
    frames = [orjson.loads(t) for t in texts]
    assert [f["cursor"] for f in frames] == list(range(2, BATCH + 2))
    assert raw[0] & 0x40, "the first frame is not compressed (RSV1 unset)"


async def test_an_idle_websocket_tail_writes_without_quarts_send(server):
    """The route hands the page's frames to its Hypercorn stream itself (ADR-0054):
    Quart's ``websocket.send`` (and its ``websocket_sent`` signal) is not on the path."""
    from quart.signals import websocket_sent

    sent_through_quart: list[object] = []

    async def record(sender, **_kwargs) -> None:  # noqa: ANN001 - a blinker receiver (sender = the data)
        sent_through_quart.append(sender)

    await make_channel(server, "ws-direct")
    url = server.url.replace("http://", "ws://") + "/channels/ws-direct/ws?since=1"
    websocket_sent.connect(record)
    try:
        with trio.fail_after(20):
            async with open_websocket_url(url) as ws:
                transport = only_transport(server)
                before = transport.direct_writes
                await commit_one_batch(server, "ws-direct")
                frames = [orjson.loads(await ws.get_message()) for _ in range(BATCH)]
                assert transport.direct_writes - before == 1
    finally:
        websocket_sent.disconnect(record)
    assert [f["cursor"] for f in frames] == list(range(2, BATCH + 2))
    assert sent_through_quart == []
