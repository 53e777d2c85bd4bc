"""Stalled bodies, the connection cap and the accept backlog, against a real
``parley serve`` subprocess (issue 20 item 3, issue 16 item 10; ADR-0021).
"""

from __future__ import annotations

import os
import resource
import signal
import time
from contextlib import contextmanager
from urllib.parse import urlsplit

import orjson
import pytest
import trio

from tests.reliability.test_abuse import receive_until_closed
from tests.support.process import serve, sqlite_url

pytestmark = pytest.mark.reliability


def address(server) -> tuple[str, int]:
    parts = urlsplit(server.url)
    return parts.hostname, parts.port


async def read_response(stream, within: float = 10) -> bytes:
    """Bytes until the server closes (or ``within`` seconds pass)."""
    return await receive_until_closed(stream, within=within)


def status_of(response: bytes) -> int:
    return int(response.split(b" ", 2)[1]) if response.startswith(b"HTTP/1.1 ") else 0


STALLED = b"POST /channels/x/read HTTP/1.1\r\nHost: t\r\nContent-Length: 100\r\n\r\n"


async def test_a_stalled_body_is_answered_408_and_closed_at_the_body_deadline(tmp_path):
    """Headers with ``Content-Length: 100`` and no body used to hold the connection forever."""
    with serve(sqlite_url(tmp_path), tmp_path, PARLEY_BODY_TIMEOUT_SECONDS="1") as server:
        stream = await trio.open_tcp_stream(*address(server))
        async with stream:
            started = time.monotonic()
            await stream.send_all(STALLED)
            with trio.fail_after(5):
                response = await read_response(stream, within=10)
            elapsed = time.monotonic() - started
        assert status_of(response) == 408, response[:300]
        head, _, body = response.partition(b"\r\n\r\n")
        assert b"connection: close" in head.lower()
        assert orjson.loads(body)["error"]["code"] == "request_timeout"
        assert 0.9 <= elapsed < 3, elapsed
        assert "Traceback" not in server.stderr()


@contextmanager
def file_limit(soft: int):
    """Children started inside inherit a soft RLIMIT_NOFILE of ``soft``."""
    old = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (soft, old[1]))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, old)


async def test_more_stalled_connections_than_files_get_503_and_admitted_ones_are_still_served(tmp_path):
    """300 stalled connections against a 256-file limit: the server admits what
    its files allow, answers the rest ``503`` + ``Retry-After``, never hits
    EMFILE (which logged a traceback every 0.1 s and failed every new client),
    and serves the admitted connections when their bodies come."""
    with file_limit(256):
        server_cm = serve(sqlite_url(tmp_path), tmp_path, PARLEY_BODY_TIMEOUT_SECONDS="60")
        server = server_cm.__enter__()
    try:
        admitted: list[trio.SocketStream] = []
        refused: list[bytes] = []

        async def one() -> None:
            stream = await trio.open_tcp_stream(*address(server))
            await stream.send_all(b"GET /healthz HTTP/1.1\r\nHost: t\r\nContent-Length: 2\r\n\r\n")
            with trio.move_on_after(1.5):
                early = await stream.receive_some(65536)
                if early:
                    refused.append(early + await read_response(stream, within=2))
                    await stream.aclose()
                    return
            admitted.append(stream)

        with trio.fail_after(30):
            limiter = trio.CapacityLimiter(64)

            async def limited() -> None:
                async with limiter:
                    await one()

            async with trio.open_nursery() as nursery:
                for _ in range(300):
                    nursery.start_soon(limited)
        assert 100 <= len(admitted) < 256, (len(admitted), len(refused))
        assert len(admitted) + len(refused) == 300
        for response in refused:
            head, _, body = response.partition(b"\r\n\r\n")
            assert status_of(response) == 503, response[:200]
            assert b"retry-after: 1" in head.lower()
            assert orjson.loads(body)["error"]["code"] == "unavailable"
        # The admitted connections are still served: send their bodies.
        with trio.fail_after(20):
            served = 0
            for stream in admitted:
                await stream.send_all(b"{}")
                head = b""
                while b"\r\n\r\n" not in head:
                    head += await stream.receive_some(65536)
                served += status_of(head) == 200
                await stream.aclose()
        assert served == len(admitted)
        stderr = server.stderr()
        assert "Traceback" not in stderr and "EMFILE" not in stderr, stderr[-2000:]
        assert "connection cap reached" in stderr
    finally:
        server_cm.__exit__(None, None, None)


async def test_the_accept_backlog_holds_a_burst_of_connects_while_the_server_is_busy(tmp_path):
    """The flaky 1,000-SSE test (issue 16 item 10): connects that arrive while the
    event loop is busy wait in the kernel's accept queue. Hypercorn's default
    backlog of 100 overflowed under 200 concurrent connects; the client then
    saw resets. Paused with SIGSTOP, the server must still let 400 connects
    complete in the kernel, then serve them all."""
    with serve(sqlite_url(tmp_path), tmp_path) as server:
        os.kill(server.pid, signal.SIGSTOP)
        streams: list[trio.SocketStream] = []
        try:
            async def connect() -> None:
                with trio.move_on_after(2):
                    streams.append(await trio.open_tcp_stream(*address(server)))

            async with trio.open_nursery() as nursery:
                for _ in range(400):
                    nursery.start_soon(connect)
            connected = len(streams)
        finally:
            os.kill(server.pid, signal.SIGCONT)
        try:
            assert connected == 400, f"only {connected} of 400 connects completed while the server was busy"
            with trio.fail_after(30):
                async def ask(stream) -> int:
                    await stream.send_all(b"GET /healthz HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
                    return status_of(await read_response(stream))

                statuses: list[int] = []

                async def ask_into(stream) -> None:
                    statuses.append(await ask(stream))

                async with trio.open_nursery() as nursery:
                    for stream in streams:
                        nursery.start_soon(ask_into, stream)
            assert statuses.count(200) == 400, {s: statuses.count(s) for s in set(statuses)}
        finally:
            for stream in streams:
                await stream.aclose()
