"""Tails that never read, the anonymous pool, and the WebSocket frame cap,
against a real ``parley serve`` subprocess (issue 20 items 4 and 8; ADR-0022).
"""

from __future__ import annotations

import socket
from urllib.parse import urlsplit

import httpx
import orjson
import pytest
import trio
from trio_websocket import ConnectionClosed, ConnectionRejected, open_websocket_url

from tests.support.messages import ulid
from tests.support.process import rss_kib, serve, sqlite_url

pytestmark = pytest.mark.reliability


def address(server) -> tuple[str, int]:
    parts = urlsplit(server.url)
    return parts.hostname, parts.port


def make_channel(server, name: str) -> None:
    with server.client("tok-a") as a:
        assert a.post("/channels", json={"channel": name}).status_code == 201


async def open_sse(server, path: str, token: str | None = None) -> tuple[trio.SocketStream, int]:
    stream = await trio.open_tcp_stream(*address(server))
    auth = f"Authorization: Bearer {token}\r\n" if token else ""
    await stream.send_all(f"GET {path} HTTP/1.1\r\nHost: t\r\n{auth}\r\n".encode())
    head = b""
    with trio.fail_after(5):
        while b"\r\n\r\n" not in head:
            head += await stream.receive_some(4096)
    return stream, int(head.split(b" ", 2)[1])


async def test_a_tail_that_never_reads_is_dropped_and_gives_its_slot_back(tmp_path):
    env = {
        "PARLEY_MAX_STREAMS": "2",
        "PARLEY_MAX_ANONYMOUS_STREAMS": "1",
        "PARLEY_TAIL_WRITE_TIMEOUT_SECONDS": "1",
        "PARLEY_MAX_POSTS_PER_MINUTE": "100000",
        "PARLEY_GLOBAL_MAX_POSTS_PER_MINUTE": "100000",
    }
    with serve(sqlite_url(tmp_path), tmp_path, **env) as server:
        make_channel(server, "firehose")
        # A client with a tiny receive window that never reads.
        sock = trio.socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        await sock.connect(address(server))
        stuck = trio.SocketStream(sock)
        await stuck.send_all(b"GET /channels/firehose/stream HTTP/1.1\r\nHost: t\r\n\r\n")
        async with stuck:
            with trio.fail_after(5):
                while (await open_sse(server, "/channels/firehose/stream"))[1] != 503:
                    pass  # the stuck tail holds the one anonymous slot
            body = "x" * 8000
            with httpx.Client(base_url=server.url, headers={"Authorization": "Bearer tok-a"}) as a:
                for i in range(300):  # 2.4 MB: far past the tail's buffers
                    r = a.post("/channels/firehose/append", json={"type": "note", "body": f"{i} {body}", "msg_id": ulid()})
                    assert r.status_code == 201, r.text
            # The server drops the stuck tail after its write deadline: a new anonymous tail fits again.
            with trio.fail_after(10):
                while True:
                    stream, status = await open_sse(server, "/channels/firehose/stream")
                    await stream.aclose()
                    if status == 200:
                        break
                    await trio.sleep(0.1)
        assert "Traceback" not in server.stderr()


async def test_anonymous_tails_share_a_pool_and_identities_have_their_own_cap(tmp_path):
    env = {"PARLEY_MAX_STREAMS": "4", "PARLEY_MAX_ANONYMOUS_STREAMS": "2", "PARLEY_MAX_STREAMS_PER_IDENTITY": "1"}
    with serve(sqlite_url(tmp_path), tmp_path, **env) as server:
        make_channel(server, "pool")
        held = []
        try:
            for _ in range(2):
                stream, status = await open_sse(server, "/channels/pool/stream")
                held.append(stream)
                assert status == 200
            stream, status = await open_sse(server, "/channels/pool/stream")
            held.append(stream)
            assert status == 503  # the anonymous pool is full ...
            stream, status = await open_sse(server, "/channels/pool/stream", "tok-a")
            held.append(stream)
            assert status == 200  # ... but a client with a token still gets a tail
            stream, status = await open_sse(server, "/channels/pool/stream", "tok-a")
            held.append(stream)
            assert status == 503  # one per identity here
            url = server.url.replace("http://", "ws://") + "/channels/pool/ws"
            async with open_websocket_url(url, extra_headers=[("Authorization", "Bearer tok-b")]):
                with pytest.raises(ConnectionRejected) as refused:
                    async with open_websocket_url(url):
                        pass
            assert refused.value.status_code == 503
        finally:
            for stream in held:
                await stream.aclose()


async def test_an_anonymous_write_frame_is_refused_and_closes_the_socket(tmp_path):
    with serve(sqlite_url(tmp_path), tmp_path) as server:
        make_channel(server, "anon")
        url = server.url.replace("http://", "ws://") + "/channels/anon/ws?tail=0"
        async with open_websocket_url(url) as ws:
            frame = {"id": 7, "append": {"type": "note", "body": "x", "msg_id": ulid()}}
            await ws.send_message(orjson.dumps(frame).decode())
            with trio.fail_after(5):
                refusal = orjson.loads(await ws.get_message())
                with pytest.raises(ConnectionClosed) as closed:
                    await ws.get_message()
        assert refusal == {"type": "error", "id": 7, "code": "unauthorized", "message": "missing or invalid token"}
        assert closed.value.reason.code == 1008


async def test_every_websocket_closes_a_frame_over_4_mib_with_1009_and_memory_stays_bounded(tmp_path):
    """16 MB frames on the channel WebSocket (with and without a token) used to
    be buffered whole; 32 of them took the server to 1.5 GB."""
    with serve(sqlite_url(tmp_path), tmp_path) as server:
        make_channel(server, "big")
        before = rss_kib(server.pid)
        big = "x" * (16 * 1024 * 1024)
        codes = []
        for path, headers in [
            ("/channels/big/ws?tail=0", []),
            ("/channels/big/ws?tail=0", [("Authorization", "Bearer tok-a")]),
            ("/v1/ws", [("Authorization", "Bearer tok-a")]),
        ]:
            url = server.url.replace("http://", "ws://") + path
            with trio.fail_after(20):
                async with open_websocket_url(url, extra_headers=headers, max_message_size=2**25) as ws:
                    try:
                        await ws.send_message(big)
                        await ws.get_message()
                    except ConnectionClosed as closed:
                        codes.append(closed.reason.code)
        assert codes == [1009, 1009, 1009]
        grown_mib = (rss_kib(server.pid) - before) / 1024
        assert grown_mib < 64, f"server RSS grew {grown_mib:.0f} MiB"
