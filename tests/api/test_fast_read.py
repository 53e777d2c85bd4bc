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
from functools import partial

import pytest
import trio

from parley.http import serving
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


async def _serve(nursery, app, settings, stop: trio.Event) -> int:
    config = hypercorn_config(settings.replace(port=0))
    binds = await nursery.start(
        partial(serving.serve, app, config, max_connections=100, write_timeout=10, shutdown_trigger=stop.wait)
    )
    return int(binds[0].rsplit(":", 1)[1])


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
        stop = trio.Event()
        async with trio.open_nursery() as nursery:
            fast_port = await _serve(nursery, fast, settings, stop)
            plain_port = await _serve(nursery, plain, settings, stop)
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
            stop.set()
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
