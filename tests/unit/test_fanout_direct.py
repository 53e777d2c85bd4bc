"""The pieces of a live tail's direct write (ADR-0054): shared frames, the page memo,
and :meth:`AdmittedStream.write_now` / ``write_rest`` on a real socket pair."""

from __future__ import annotations

import socket

import pytest
import trio
from wsproto.frame_protocol import FrameProtocol

from parley.http.admission import AdmittedStream
from parley.http.stream import PageMemo, sse_chunk, sse_frames
from parley.http.ws_frames import text_frame, text_frames


class _Listener:
    """What an AdmittedStream tells its listener when it closes."""

    def __init__(self) -> None:
        self.forgotten = []

    def _forget(self, stream) -> None:
        self.forgotten.append(stream)


@pytest.mark.parametrize("size", [0, 1, 125, 126, 127, 65535, 65536, 70000])
def test_text_frame_is_what_wsproto_writes(size):
    text = "x" * size  # ``size`` bytes: every length-encoding boundary
    payload = text.encode()
    expected = bytes(FrameProtocol(client=False, extensions=[]).send_data(text, fin=True))
    assert text_frame(payload) == expected


def test_text_frames_is_one_frame_per_payload():
    proto = FrameProtocol(client=False, extensions=[])
    texts = ['{"cursor":1,"message":{}}', '{"cursor":2,"message":{"a":"ü"}}']
    expected = b"".join(bytes(proto.send_data(t, fin=True)) for t in texts)
    assert text_frames([t.encode() for t in texts]) == expected


def test_sse_chunk_is_h11s_chunk():
    import h11

    conn = h11.Connection(h11.SERVER)
    conn.receive_data(b"GET / HTTP/1.1\r\nhost: x\r\n\r\n")
    conn.next_event()
    conn.send(h11.Response(status_code=200, headers=[]))
    data = sse_frames(7, [b'{"a":1}', b'{"b":2}'])
    assert sse_chunk(data) == conn.send(h11.Data(data=data))


def test_page_memo_builds_once_for_the_same_message_objects():
    memo = PageMemo()
    built = []

    def build(first, encoded):
        built.append(first)
        return b"|".join(encoded)

    encoded = [b'{"n":%d}' % i for i in range(3)]
    a = memo.get("sse", 5, encoded[:], build)
    b = memo.get("sse", 5, encoded[:], build)  # another tail: a new list, the same objects
    assert a is b and built == [5] and memo.hits == 1
    memo.get("ws", 5, encoded, build)  # another kind: its own bytes
    memo.get("sse", 6, encoded, build)  # another cursor
    copies = [bytes(bytearray(e)) for e in encoded]  # equal bytes, other objects (a rebuilt log)
    memo.get("sse", 5, copies, build)
    assert built == [5, 5, 6, 5]


def test_page_memo_is_bounded():
    memo = PageMemo(size=4)
    keep = [[b"m%d-%d" % (i, j) for j in range(2)] for i in range(10)]
    for i, page in enumerate(keep):
        memo.get("sse", i, page, lambda f, e: b"".join(e))
    assert len(memo._entries) == 4


async def _pair(sndbuf: int | None = None):
    a, b = trio.socket.socketpair()
    if sndbuf is not None:
        a.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, sndbuf)
    stream = AdmittedStream(trio.SocketStream(a), _Listener(), write_timeout=5)
    return stream, trio.SocketStream(b)


async def test_write_now_writes_at_once_on_an_idle_connection():
    stream, peer = await _pair()
    stream.send_lock = trio.Lock()
    assert stream.write_now(b"hello") == 5
    assert stream.writes == 1 and stream.direct_writes == 1
    assert await peer.receive_some(100) == b"hello"
    await stream.aclose()
    await peer.aclose()


async def test_write_now_refuses_without_a_lock_while_locked_and_after_close():
    stream, peer = await _pair()
    assert stream.write_now(b"x") is None  # not wired to a connection handler
    stream.send_lock = trio.Lock()
    async with stream.send_lock:  # Hypercorn is writing
        assert stream.write_now(b"x") is None
    await stream.send_eof()
    assert stream.write_now(b"x") is None  # half-closed
    await stream.aclose()
    assert stream.write_now(b"x") is None  # closed: never a write to a reused descriptor
    assert stream.direct_writes == 0
    await peer.aclose()


async def test_a_partial_direct_write_is_finished_in_order_by_write_rest():
    stream, peer = await _pair(sndbuf=4096)
    stream.send_lock = trio.Lock()
    data = bytes(range(256)) * 4096  # 1 MiB: far more than the kernel takes at once
    sent = stream.write_now(data)
    assert sent is not None and 0 <= sent < len(data)
    received = bytearray()

    async def read() -> None:
        while len(received) < len(data):
            received.extend(await peer.receive_some(65536))

    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(read)
            await stream.write_rest(data[sent:])
    assert bytes(received) == data
    assert not stream.send_lock.locked()
    await stream.aclose()
    await peer.aclose()


async def test_write_now_on_a_lost_peer_leaves_it_to_the_ordinary_path():
    stream, peer = await _pair()
    stream.send_lock = trio.Lock()
    await peer.aclose()
    results = [stream.write_now(b"x" * 1000) for _ in range(3)]
    assert results[-1] is None  # EPIPE / ECONNRESET: not counted, not raised
    with pytest.raises((trio.BrokenResourceError, trio.ClosedResourceError)):
        await stream.write_rest(b"y")
    await stream.aclose()
