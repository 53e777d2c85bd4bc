"""``POST /channels/:c/read`` answered in front of Quart (ADR-0048): the same bytes as Quart.

Two Hypercorn servers share one backbone: one serves parley's stack with
:class:`~parley.http.fast_read.FastReads` in front, the other the same stack
without it (Quart answers every read). Each case is sent as raw bytes to
both and the raw responses are compared: status line, every header in its
order, body; only the ``date`` header (and a generated ``x-request-id``) are
normalised. The fast server's counter proves the reads did take the fast
path (else the comparison would compare Quart with itself).
"""

from __future__ import annotations

import re
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from functools import partial

import pytest
import trio

from parley.http import admission, serving
from parley.http.app import create_app
from parley.http.fast_read import FastReads
from parley.mcp.http import McpMount
from parley.server import hypercorn_config
from tests.support.messages import ulid
from tests.support.server import running_server
from tests.support.server import test_settings as settings_for

RID = b"X-Request-Id: case\r\n"


def _request(method: str, path: str, body: bytes | None, headers: bytes = RID) -> bytes:
    head = f"{method} {path} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n".encode() + headers
    if body is not None:
        head += b"Content-Length: %d\r\n" % len(body)
    return head + b"\r\n" + (body or b"")


def _read_cases(channel: str, token: str) -> list[bytes]:
    auth = f"Authorization: Bearer {token}\r\n".encode()
    path = f"/channels/{channel}/read"
    bodies = [
        b'{"cursor":0}', b'{"cursor":0,"limit":500}', b'{"cursor":1,"limit":2}', b'{"cursor":3}',
        b'{"cursor":4}', b'{"cursor":99}', b'{"cursor":-1}', b'{"cursor":"0"}', b'{"cursor":1.5}',
        b'{"cursor":0,"limit":0}', b'{"cursor":0,"limit":-1}', b'{"cursor":0,"limit":100000}',
        b'{"cursor":0,"limit":"x"}', b'{"cursor":true}', b"{}", b"[]", b"null", b"7", b'"s"',
        b"{not json", b" ", b"", b'{"cursor":0,"extra":{"deep":[1,2,3]}}', b"[" * 200 + b"]" * 200,
    ]
    cases = [_request("POST", path, body) for body in bodies]
    cases += [_request("POST", path, body, RID + auth) for body in bodies[:4]]
    cases += [
        _request("POST", path, None),  # no body at all
        _request("POST", path, b'{"cursor":0}', b""),  # a generated request id
        _request("POST", path, b'{"cursor":0}', RID + b"Authorization: Bearer nope\r\n"),
        _request("POST", path, b'{"cursor":0}', RID + b"Authorization: Basic xyz\r\n"),
        _request("POST", path, b'{"cursor":0}', b"X-Request-Id: one\r\nx-request-id: two\r\n"),
        _request("POST", path + "?x=1", b'{"cursor":0}'),
        _request("POST", path + "/", b'{"cursor":0}'),
        _request("POST", f"//channels//{channel}//read", b'{"cursor":0}'),
        _request("POST", f"/channels/{channel[0]}%{ord(channel[1]):02X}{channel[2:]}/read", b'{"cursor":0}'),
        _request("POST", "/channels/re%61d/read", b'{"cursor":0}'),
        _request("POST", "/channels/nope/read", b'{"cursor":0}'),
        _request("POST", "/channels/Bad!Name/read", b'{"cursor":0}'),
        _request("POST", "/channels/%ZZ/read", b'{"cursor":0}'),
        _request("POST", "/channels/%C3%28/read", b'{"cursor":0}'),
        # announced too large: 413 before the body, the connection closed
        f"POST {path} HTTP/1.1\r\nHost: t\r\nConnection: close\r\nContent-Length: 999999999\r\n".encode()
        + RID + b"\r\n{}",
        f"POST {path} HTTP/1.1\r\nHost: t\r\nConnection: close\r\nTransfer-Encoding: chunked\r\n".encode()
        + RID + b"\r\n5\r\n{\"cur\r\n7\r\nsor\":1}\r\n0\r\n\r\n",
        b"POST /channels/" + channel.encode() + b"/read HTTP/1.1\r\nHost: t\r\nConnection: close\r\n" + RID
        + b"Content-Length: " + str(300_000).encode() + b"\r\n\r\n" + b" " * 300_000,
    ]
    # Neighbours the fast path must leave to Quart.
    cases += [
        _request("GET", path, None),
        _request("PUT", path, b"{}"),
        _request("POST", f"/channels/{channel}/readx", b"{}"),
        _request("POST", f"/channels/{channel}/read/more", b"{}"),
        _request("POST", f"/channels/{channel}/claims", b"{}"),
    ]
    return cases


def _ask(port: int, data: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=20) as sock:
        sock.sendall(data)
        chunks = []
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                break
            chunks.append(chunk)
    answer = b"".join(chunks)
    answer = re.sub(rb"\r\ndate: [^\r]*", b"\r\ndate: -", answer)
    return re.sub(rb"\r\nx-request-id: [0-9a-f]{32}\r\n", b"\r\nx-request-id: generated\r\n", answer)


@pytest.mark.parametrize("read_auth", [False, True], ids=["open", "token"])
async def test_the_fast_read_answers_every_case_byte_for_byte_as_quart(sqlite_url, read_auth):
    settings = settings_for(sqlite_url, read_auth=read_auth)
    async with running_server(settings) as live:
        async with live.client("tok-a") as client:
            assert (await client.post("/channels", json={"channel": "probe"})).status_code == 201
            for body in ("plain", "é\u2028\u2029", "<b>&amp;</b>", "\U0001f600 emoji"):
                msg = {"type": "note", "body": body, "msg_id": ulid()}
                assert (await client.post("/channels/probe/append", json=msg)).status_code == 201
        backbone = live.backbone
        fast_quart, plain_quart = create_app(backbone), create_app(backbone)
        fast = FastReads(McpMount(fast_quart, backbone), backbone, fast_quart.extensions["parley.metrics"])
        plain = McpMount(plain_quart, backbone)
        async with _serving(settings, fast, plain) as (fast_port, plain_port):
            cases = _read_cases("probe", "tok-a")
            differ = []
            for case in cases:
                got = await trio.to_thread.run_sync(_ask, fast_port, case)
                want = await trio.to_thread.run_sync(_ask, plain_port, case)
                assert want.startswith(b"HTTP/1.1 "), case[:80]
                if got != want:
                    differ.append((case[:120], got[:400], want[:400]))
            fast_metrics = fast_quart.extensions["parley.metrics"].registry
            plain_metrics = plain_quart.extensions["parley.metrics"].registry
    assert not differ, differ[:3]
    # Every POST .../read case but the ones that do not decode went the fast way; the neighbours did not.
    assert fast.served == len(cases) - 5 - 2
    assert _requests(fast_metrics) == _requests(plain_metrics)


def _requests(registry) -> dict[tuple, float]:
    """``parley_http_requests_total`` by labels."""
    return {
        tuple(sorted(sample.labels.items())): sample.value
        for metric in registry.collect()
        if metric.name == "parley_http_requests"
        for sample in metric.samples
        if sample.name == "parley_http_requests_total"
    }


# --- ADR-0058: responses written straight to an idle socket -------------------------------------


class _Recorder:
    """ASGI: notes the connection (``admission.current()``) each request arrived on; a request
    with ``x-small-send-buffer`` gets its connection's kernel send buffer cut to 8 KB."""

    def __init__(self, app) -> None:
        self.app = app
        self.streams: list = []

    async def __call__(self, scope, receive, send) -> None:
        stream = admission.current()
        if stream is not None and stream not in self.streams:
            self.streams.append(stream)
        if stream is not None and any(name == b"x-small-send-buffer" for name, _ in scope["headers"]):
            stream.limit_send_buffer(8192)
        await self.app(scope, receive, send)


def _recording_app(live) -> _Recorder:
    """The server's own ASGI stack (fast reads in front of the MCP mount and Quart) on ``live``'s backbone, recorded."""
    quart = create_app(live.backbone)
    return _Recorder(FastReads(McpMount(quart, live.backbone), live.backbone, quart.extensions["parley.metrics"]))


@asynccontextmanager
async def _serving(settings, *apps, direct: tuple[bool, ...] = (), errors: list | None = None) -> AsyncIterator[list[int]]:
    """Each app on a port of its own, direct writes as ``direct`` says (on by default), each
    connection error counted in ``errors``; all stopped on leaving."""
    stop = trio.Event()
    counted = {} if errors is None else {"on_connection_error": lambda: errors.append(1)}
    async with trio.open_nursery() as nursery:
        ports = []
        for app, writes_direct in zip(apps, direct or (True,) * len(apps)):
            config = hypercorn_config(settings.replace(port=0))
            serve = partial(
                serving.serve, app, config, max_connections=100, write_timeout=10, shutdown_trigger=stop.wait,
                direct_writes=writes_direct, **counted,
            )
            ports.append(int((await nursery.start(serve))[0].rsplit(":", 1)[1]))
        try:
            yield ports
        finally:
            stop.set()


def _serving_both(app, settings, errors: list):
    """The same app twice: direct writes on (first port) and off (Hypercorn's send only)."""
    return _serving(settings, app, app, direct=(True, False), errors=errors)


def _keep_alive_sequence(channel: str) -> bytes:
    """Several requests on one connection, the last one closing it: reads, refusals, a Quart route."""
    path = f"/channels/{channel}/read"
    one = []
    for body in (b'{"cursor":0}', b'{"cursor":2,"limit":1}', b'{"cursor":-1}', b"{nope", b'{"cursor":0,"limit":3}'):
        one.append(f"POST {path} HTTP/1.1\r\nHost: t\r\n".encode() + RID + b"Content-Length: %d\r\n\r\n" % len(body) + body)
    one.append(b"GET /healthz HTTP/1.1\r\nHost: t\r\n" + RID + b"\r\n")
    one.append(f"POST {path} HTTP/1.1\r\nHost: t\r\n".encode() + RID + b"Content-Length: 0\r\n\r\n")
    one.append(_request("POST", path, b'{"cursor":1}'))
    return b"".join(one)


async def _fill(live, channel: str, count: int, chars: int) -> None:
    async with live.client("tok-a") as client:
        assert (await client.post("/channels", json={"channel": channel})).status_code == 201
        for n in range(count):
            live.clock.advance(10_000)  # past the per-agent post rate (the server's clock is a ManualClock)
            msg = {"type": "note", "body": f"{n:05d}" + "x" * (chars - 5), "msg_id": ulid()}
            assert (await client.post(f"/channels/{channel}/append", json=msg)).status_code == 201


def _ask_slowly(port: int, data: bytes, keep: int | None = None) -> bytes:
    """``_ask`` with a 4 KB receive buffer, so the server's socket takes only part of a large
    answer at once; ``keep``: read that many bytes, then close with the rest unread."""
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.settimeout(20)
        sock.connect(("127.0.0.1", port))
        sock.sendall(data)
        chunks, got = [], 0
        while keep is None or got < keep:
            chunk = sock.recv(4096)
            if not chunk:
                break
            chunks.append(chunk)
            got += len(chunk)
    return re.sub(rb"\r\ndate: [^\r]*", b"\r\ndate: -", b"".join(chunks))


async def _released(stream) -> None:
    """Until the connection's task has closed the stream and given its slot back."""
    with trio.move_on_after(10):
        while not stream._released:
            await trio.sleep(0.01)
    assert stream._released, (stream.writes, stream.direct_writes, stream.sending_since, stream._eof_sent, stream.send_lock.locked())  # nothing to await: the handler task closes it in its own time


async def test_direct_writes_send_the_bytes_hypercorns_send_sends(sqlite_url):
    """Every read case, a keep-alive sequence of reads, refusals and a Quart route on one
    connection, a page larger than the socket takes at once: byte for byte the same as with
    every write on Hypercorn's send, and the writes were direct (or finished by Hypercorn)."""
    settings = settings_for(sqlite_url, keep_alive_s=30)
    async with running_server(settings) as live:
        await _fill(live, "probe", 4, 20)
        await _fill(live, "large", 60, 15_000)  # a ~900 KB page
        app, errors = _recording_app(live), []
        async with _serving_both(app, settings, errors) as (direct_port, plain_port):
            differ = []
            for case in [*_read_cases("probe", "tok-a"), _keep_alive_sequence("probe")]:
                got = await trio.to_thread.run_sync(_ask, direct_port, case)
                want = await trio.to_thread.run_sync(_ask, plain_port, case)
                if got != want:
                    differ.append((case[:120], got[:400], want[:400]))
            assert _keep_alive_sequence("probe").count(b"HTTP/1.1\r\n") == want.count(b"HTTP/1.1 ") == 8
            direct_streams = [s for s in app.streams if s.send_lock is not None and s.direct_writes]
            assert direct_streams and all(s.writes == s.direct_writes for s in direct_streams[:5])
            app.streams.clear()
            large = _request("POST", "/channels/large/read", b'{"cursor":0}')
            got = await trio.to_thread.run_sync(_ask_slowly, direct_port, large)
            want = await trio.to_thread.run_sync(_ask_slowly, plain_port, large)
            assert got == want and len(got) > 900_000
            direct, plain = app.streams
            # part went straight to the socket, the rest through Hypercorn's send; none direct on the other
            assert direct.direct_writes == 1 and direct.writes > 1 and plain.direct_writes == 0
    assert not differ, differ[:3]
    assert not errors


async def test_a_client_closing_mid_response_ends_only_its_connection(sqlite_url):
    """A large page cut off by the client: the rest of the write fails like a lost peer, no
    error escapes, the connection ends as Hypercorn ends it (at the keep-alive timeout: h11
    saw a complete exchange) and the next client is served."""
    settings = settings_for(sqlite_url, keep_alive_s=0.5)
    async with running_server(settings) as live:
        await _fill(live, "large", 60, 15_000)
        app, errors = _recording_app(live), []
        async with _serving_both(app, settings, errors) as (port, _plain):
            # The server's socket holds ~16 KB and this client's ~4 KB of the ~900 KB answer:
            # the client closes with most of it unwritten.
            keep_alive = b"POST /channels/large/read HTTP/1.1\r\nHost: t\r\nX-Small-Send-Buffer: 1\r\n" + RID
            keep_alive += b'Content-Length: 12\r\n\r\n{"cursor":0}'
            cut = await trio.to_thread.run_sync(partial(_ask_slowly, port, keep_alive, keep=10_000))
            assert cut.startswith(b"HTTP/1.1 200 ")
            (stream,) = app.streams
            await _released(stream)
            assert stream.direct_writes == 1
            again = await trio.to_thread.run_sync(_ask, port, _request("POST", "/channels/large/read", b'{"cursor":59}'))
            assert again.startswith(b"HTTP/1.1 200 ")
    assert not errors


async def test_the_keep_alive_timer_after_many_requests_and_a_closed_connection(sqlite_url):
    """The per-connection idle deadline (ADR-0058): an idle connection is closed at the
    keep-alive timeout after a run of requests, and one the server closed after a response
    ends its task at once."""
    settings = settings_for(sqlite_url, keep_alive_s=0.3)
    async with running_server(settings) as live:
        await _fill(live, "probe", 4, 20)
        app, errors = _recording_app(live), []
        async with _serving_both(app, settings, errors) as (port, _plain):
            stream = await trio.open_tcp_stream("127.0.0.1", port)
            sequence = _keep_alive_sequence("probe").rsplit(b"POST ", 1)[0]  # all but the closing request
            await stream.send_all(sequence)
            received = b""
            with trio.fail_after(10):  # closed by the server once idle for 0.3 s
                while chunk := await stream.receive_some(65536):
                    received += chunk
            assert received.count(b"HTTP/1.1 ") == 7
            await stream.aclose()
            await _released(app.streams[0])
        settings_long = settings.replace(keep_alive_s=60)
        async with _serving_both(app, settings_long, errors) as (port, _plain):
            app.streams.clear()
            answer = await trio.to_thread.run_sync(_ask, port, _request("POST", "/channels/probe/read", b'{"cursor":0}'))
            assert answer.startswith(b"HTTP/1.1 200 ")
            await _released(app.streams[0])  # not after 60 s
    assert not errors


async def test_an_answer_before_the_body_still_leaves_the_connection_usable(sqlite_url):
    """httpx sends a request's head and body in two writes, and the ``/mcp`` mount refuses
    an anonymous request without reading the body. A direct write that did not yield ended
    the exchange before the reader had taken the body, and Hypercorn closed a connection the
    client had been told to keep: the next request on it failed (a few in every hundred)."""
    async with running_server(settings_for(sqlite_url, read_auth=True)) as live:
        async with live.client() as anon:
            for _ in range(20):
                for method, path in (("POST", "/mcp"), ("GET", "/mcp"), ("DELETE", "/mcp"), ("GET", "/healthz")):
                    async with anon.stream(method, path, content=b"{}") as response:
                        await response.aread()
                    assert response.status_code in (200, 401), (method, path)
