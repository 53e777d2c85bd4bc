"""Hostile input over a real socket: sizes, nesting, encodings, headers, slow and
many connections, path tricks. Every answer is a 4xx (or a closed connection),
never a 500, and the server keeps serving everyone else.
"""

from __future__ import annotations

import math
import time
from urllib.parse import urlsplit

import httpx
import pytest
import trio

from tests.support.messages import ulid
from tests.support.server import running_server, test_settings

pytestmark = pytest.mark.reliability


@pytest.fixture
async def live(sqlite_url):
    async with running_server(test_settings(sqlite_url)) as server:
        async with server.client("tok-a") as a:
            assert (await a.post("/channels", json={"channel": "x"})).status_code == 201
        yield server


def address(live) -> tuple[str, int]:
    parts = urlsplit(live.url)
    return parts.hostname, parts.port


async def raw_exchange(live, data: bytes, *, read_for: float = 3.0) -> bytes:
    """Send raw bytes on a fresh connection; return what the server sent back
    until it closed the connection or ``read_for`` seconds passed."""
    stream = await trio.open_tcp_stream(*address(live))
    async with stream:
        try:
            await stream.send_all(data)
        except trio.BrokenResourceError:
            pass
        return await receive_until_closed(stream, within=read_for, stop_when_complete=True)


async def receive_until_closed(stream, *, within: float = math.inf, stop_when_complete: bool = False) -> bytes:
    """What arrives until the peer closes, ``within`` seconds pass, or (optionally)
    one whole response is in."""
    received = b""
    with trio.move_on_after(within):
        while True:
            try:
                chunk = await stream.receive_some(65536)
            except trio.BrokenResourceError:
                break
            if not chunk:
                break
            received += chunk
            if stop_when_complete and b"\r\n\r\n" in received and _complete(received):
                break
    return received


def _complete(response: bytes) -> bool:
    head, _, body = response.partition(b"\r\n\r\n")
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            return len(body) >= int(value)
    return False


def status_of(response: bytes) -> int:
    return int(response.split(b" ", 2)[1]) if response.startswith(b"HTTP/1.1 ") else 0


def note(**extra) -> dict:
    return {"type": "note", "body": "hello", "msg_id": ulid(), **extra}


async def still_serving(live) -> None:
    async with live.client() as c:
        t0 = time.monotonic()
        assert (await c.get("/healthz")).status_code == 200
        assert time.monotonic() - t0 < 1.0


def assert_error(response: httpx.Response, status: int, code: str) -> None:
    assert response.status_code == status, response.text[:300]
    assert response.json()["error"]["code"] == code, response.text[:300]


# -- bodies ---------------------------------------------------------------------------


async def test_oversized_json_body_is_413_with_or_without_content_length(live):
    big = b'{"type":"note","body":"' + b"a" * 300_000 + b'"}'
    async with live.client("tok-a") as a:
        assert_error(await a.post("/channels/x/append", content=big), 413, "payload_too_large")

        async def chunks():
            for _ in range(40):
                yield b" " * 10_000  # chunked: no Content-Length to refuse up front

        r = await a.post("/channels/x/append", content=chunks())
        assert_error(r, 413, "payload_too_large")
    await still_serving(live)


@pytest.mark.parametrize(
    "body",
    [
        b"[" * 100_000,  # unbalanced
        b"[" * 100_000 + b"]" * 100_000,  # balanced, deeper than any parser should go
        b'{"type":"note","body":"b","msg_id":"01J4000000000000000000000A","thread":' + b"[" * 300 + b"]" * 300 + b"}",
        b'{"a":' * 1000 + b"1" + b"}" * 1000,
    ],
    ids=["100k-open", "100k-balanced", "300-in-a-field", "1000-objects"],
)
async def test_deeply_nested_json_is_400_never_500(live, body):
    async with live.client("tok-a") as a:
        for path in ("/channels/x/append", "/channels/x/claim", "/channels", "/channels/x/read", "/v1/session"):
            assert_error(await a.post(path, content=body), 400, "invalid_json")
    await still_serving(live)


async def test_moderate_nesting_is_an_ordinary_validation_error(live):
    nested = "[" * 100 + "]" * 100
    raw = f'{{"type":"note","body":"b","msg_id":"{ulid()}","thread":{nested}}}'.encode()
    async with live.client("tok-a") as a:
        r = await a.post("/channels/x/append", content=raw)
        assert_error(r, 400, "invalid_message")
        assert r.json()["error"]["issues"] == ["thread must be a ULID"]


async def test_invalid_utf8_body_is_invalid_json(live):
    async with live.client("tok-a") as a:
        for raw in (b'{"type":"note","body":"\xff\xfe"}', b"\xc0\xaf", b'{"body":"\xed\xa0\x80"}'):
            assert_error(await a.post("/channels/x/append", content=raw), 400, "invalid_json")
            assert_error(await a.post("/v1/session", content=raw), 400, "invalid_json")


async def test_control_characters_are_refused_and_bidi_overrides_pass_through(live):
    async with live.client("tok-a") as a:
        refused = [
            note(body="bell \x07"),
            note(body="carriage \r return"),
            note(to=["bob\x00"]),
            note(artifact="https://x/\x1b[31m"),
            note(to=["ok", "c1 \x85"]),
        ]
        for body in refused:
            r = await a.post("/channels/x/append", json=body)
            assert_error(r, 400, "invalid_message")
            assert "\x07" not in r.text and "\x1b" not in r.text
        claim = {"type": "claim", "body": "c", "msg_id": ulid(), "target": "job\x7f"}
        assert_error(await a.post("/channels/x/claim", json=claim), 400, "invalid_message")
        r = await a.post("/channels", json={"channel": "y", "purpose": "tab\tok but \x0b not"})
        assert_error(r, 400, "invalid_message")

        bidi = "\u202eevil\u202c \u2066isolate\u2069 \u200bzero-width"
        stored = await a.post("/channels/x/append", json=note(body=bidi, to=["\u202ebob"]))
        assert stored.status_code == 201, stored.text
        assert stored.json()["message"]["body"] == bidi
        log = (await a.post("/channels/x/read", json={"cursor": 0})).json()["messages"]
        assert log[-1]["body"] == bidi and log[-1]["to"] == ["\u202ebob"]


# -- headers and connections ------------------------------------------------------------


async def test_huge_headers_are_refused_and_the_server_stays_up(live):
    """Hypercorn refuses a request head with 431 + close. Its limit
    (``h11_max_incomplete_size`` = 16 KiB) applies to a head still incomplete
    after a read; a head that arrives within one 64 KiB read is parsed whole,
    so the effective limit is 16 KiB for a dribbled head and ~64 KiB for a
    head sent at once (measured; either way bounded)."""
    for size in (70_000, 1_000_000):
        request = b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * size + b"\r\n\r\n"
        response = await raw_exchange(live, request)
        assert status_of(response) == 431, response[:200]
        assert b"connection: close" in response.lower()
        await still_serving(live)
    # 20 KB of head in 2 KB pieces: over the 16 KiB incomplete-head limit.
    stream = await trio.open_tcp_stream(*address(live))
    received = b""
    async with stream:
        head = b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 20_000 + b"\r\n\r\n"
        try:
            for i in range(0, len(head), 2048):
                await stream.send_all(head[i : i + 2048])
                await trio.sleep(0.01)
        except trio.BrokenResourceError:
            pass
        with trio.move_on_after(3):
            while chunk := await stream.receive_some(4096):
                received += chunk
    assert status_of(received) == 431, received[:200]
    many = b"GET /healthz HTTP/1.1\r\nHost: x\r\n" + b"".join(b"X-%d: v\r\n" % i for i in range(20_000)) + b"\r\n"
    assert status_of(await raw_exchange(live, many)) == 431
    await still_serving(live)


async def test_slowloris_connections_do_not_block_other_clients(live):
    """50 connections each dribbling one header byte per second: everyone else is
    served at once, and the server drops the dribblers (Hypercorn's 5 s idle timeout)."""
    closed_after: list[float] = []

    async def dribble():
        stream = await trio.open_tcp_stream(*address(live))
        started = time.monotonic()
        async with stream:
            await stream.send_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
            try:
                for byte in b"X-Slow: " + b"z" * 30:
                    await stream.send_all(bytes([byte]))
                    with trio.move_on_after(1.0):
                        if await stream.receive_some(1024) == b"":
                            break
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                pass
        closed_after.append(time.monotonic() - started)

    latencies: list[float] = []

    async def normal_client():
        async with live.client("tok-b") as b:
            for i in range(20):
                t0 = time.monotonic()
                r = await b.post("/channels/x/append", json=note(body=f"during slowloris {i}"))
                assert r.status_code == 201
                latencies.append(time.monotonic() - t0)
                await trio.sleep(0.15)

    with trio.fail_after(20):
        async with trio.open_nursery() as nursery:
            for _ in range(50):
                nursery.start_soon(dribble)
            await trio.sleep(0.5)
            nursery.start_soon(normal_client)
    assert max(latencies) < 1.0, f"a normal request waited {max(latencies):.2f} s"
    assert len(closed_after) == 50 and max(closed_after) < 10, sorted(closed_after)[-3:]
    print(f"\nslowloris x50: normal requests p100 {max(latencies) * 1000:.0f} ms; "
          f"dribblers closed by the server after {min(closed_after):.1f}-{max(closed_after):.1f} s")
    await still_serving(live)


async def test_a_thousand_sse_connections_hit_stream_capacity_and_the_server_stays_responsive(live):
    cap = live.backbone.streams.anonymous  # these tails carry no token: they share the anonymous pool
    request = b"GET /channels/x/stream HTTP/1.1\r\nHost: x\r\n\r\n"
    streams: list[trio.SocketStream] = []
    statuses: list[int] = []
    retry_after: set[bytes] = set()

    async def open_one():
        stream = await trio.open_tcp_stream(*address(live))
        streams.append(stream)
        await stream.send_all(request)
        head = b""
        with trio.fail_after(15):
            while b"\r\n\r\n" not in head:
                chunk = await stream.receive_some(4096)
                if not chunk:
                    break
                head += chunk
        status = status_of(head)
        statuses.append(status)
        if status == 503:
            for line in head.split(b"\r\n"):
                if line.lower().startswith(b"retry-after:"):
                    retry_after.add(line.split(b":", 1)[1].strip())

    started = time.monotonic()
    try:
        limiter = trio.CapacityLimiter(200)

        async def limited():
            async with limiter:
                await open_one()

        async with trio.open_nursery() as nursery:
            for _ in range(1000):
                nursery.start_soon(limited)
        opened = time.monotonic() - started
        assert statuses.count(200) == cap, {s: statuses.count(s) for s in set(statuses)}
        assert statuses.count(503) == 1000 - cap
        assert retry_after == {b"1"}
        assert live.backbone.open_streams == cap
        # The server still answers everyone else at once.
        await still_serving(live)
        async with live.client("tok-a") as a:
            t0 = time.monotonic()
            assert (await a.post("/channels/x/append", json=note(body="with 1000 sockets open"))).status_code == 201
            assert time.monotonic() - t0 < 1.0
        async with live.client() as anonymous:
            assert_error(await anonymous.get("/channels/x/stream"), 503, "stream_capacity")
    finally:
        for stream in streams:
            await stream.aclose()
    # Closed tails give their slots back.
    with trio.fail_after(5):
        while live.backbone.open_streams:
            await trio.sleep(0.05)
    print(f"\n1000 SSE connections: {cap} anonymous streams, {1000 - cap} x 503 stream_capacity (Retry-After: 1) "
          f"in {opened:.1f} s; slots released after close")


# -- paths --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "path",
    [
        "/channels/x/artifacts/..%2F..%2Fetc",
        "/channels/x/artifacts/..%2F..%2F..%2F..%2Fetc%2Fpasswd",
        "/channels/x/artifacts/%2e%2e%2f%2e%2e%2fetc%2fpasswd",
        "/channels/x/artifacts/../../../../etc/passwd",
        "/channels/..%2F..%2Fetc/artifacts/" + "0" * 64,
        "/channels/x/artifacts/" + "..%2F" * 12 + "etc%2Fpasswdxx",
        "/channels/x/artifacts/%00",
        "/channels/x/artifacts/" + "0" * 63 + "%00",
        "/channels/a%00b",
        "/channels/x%00/append",
        "/v1/session/ses_%00",
        "/channels/x/artifacts/%C0%AE%C0%AE%2Fetc",
        "/channels/x/artifacts/%zz",
        "/%2e%2e/%2e%2e/etc/passwd",
    ],
)
async def test_path_traversal_and_nul_bytes_never_reach_a_file(live, path):
    for method in ("GET", "PUT", "POST"):
        request = (
            f"{method} {path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer tok-a\r\n"
            "Content-Length: 2\r\nConnection: close\r\n\r\n{}"
        ).encode()
        response = await raw_exchange(live, request)
        status = status_of(response)
        assert status in (400, 401, 404, 405), (method, path, response[:300])
        assert b"root:" not in response and b"\x00" not in response.partition(b"\r\n\r\n")[2]
    await still_serving(live)


# -- found by the OpenAPI fuzzer ------------------------------------------------------


@pytest.mark.parametrize(
    "path, status, code, append_status, append_code",
    [
        ("/channels/a%0Ab", 400, "invalid_channel_name", 400, "invalid_channel_name"),
        ("/v1/session/a%0Ab", 404, "unknown_session", 404, "not_found"),
        ("/a%0Ab", 404, "not_found", 404, "not_found"),
        ("/healthz%0A", 404, "not_found", 404, "not_found"),
    ],
)
async def test_a_newline_in_the_path_is_an_ordinary_4xx(live, path, status, code, append_status, append_code):
    """Werkzeug's ``.`` stops at a newline: such paths matched no rule and were 500."""
    async with live.client("tok-a") as c:
        assert_error(await c.get(path), status, code)
        assert_error(await c.post(path + "/append", json=note()), append_status, append_code)


async def test_an_early_401_with_the_body_in_flight_closes_the_connection(live):
    """A PUT refused before its body is read must not leave the connection hung.

    The body arrives after the headers (as from a slow client); the 401 says
    ``Connection: close`` and the server closes, instead of the keep-alive
    connection going silent with the next request unanswered.
    """
    body = b"x" * 1000
    stream = await trio.open_tcp_stream(*address(live))
    async with stream:
        await stream.send_all(
            b"PUT /channels/x/artifacts/" + b"0" * 64 + b" HTTP/1.1\r\nHost: t\r\n"
            b"Authorization: Bearer wrong\r\nContent-Length: 1000\r\n\r\n"
        )
        received = b""
        with trio.fail_after(5):
            while b"\r\n\r\n" not in received or not _complete(received):
                received += await stream.receive_some(65536)
        assert status_of(received) == 401
        assert b"connection: close" in received.lower()
        try:
            await stream.send_all(body + b"GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n")
        except trio.BrokenResourceError:
            pass
        with trio.fail_after(5):  # closed promptly: never a hang
            rest = await receive_until_closed(stream)
        assert b"HTTP/1.1" not in rest  # the pipelined request was not served on it
    await still_serving(live)
