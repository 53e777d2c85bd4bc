"""No single connection takes the server down (issue 20 item 1, ADR-0013).

Hypercorn 0.18 served HTTP/2 cleartext on the plain port and crashed the
whole process on body data that arrived after an early 413/401. parley
serves HTTP/1.1 only, guards every connection, and supervises its workers.
"""

from __future__ import annotations

import os
import random
import signal
import socket
import time
from pathlib import Path

import httpx
import pytest
import trio

from parley.http.serving import HTTP2_REFUSAL, guarded
from tests.support.process import database, serve, sqlite_url

pytestmark = pytest.mark.reliability

H2_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"


def _port(url: str) -> int:
    return int(url.rsplit(":", 1)[1])


def test_http2_requests_with_early_refusals_no_longer_kill_the_server(tmp_path):
    with serve(sqlite_url(tmp_path), tmp_path) as server:
        for _ in range(6):  # the reproduction: 6 of 6 crashed the process
            with httpx.Client(http2=True, http1=False) as h2:
                with pytest.raises((httpx.RemoteProtocolError, httpx.WriteError, httpx.ReadError)):
                    h2.post(server.url + "/healthz", content=b"x" * 300_000)
        with httpx.Client(http2=True, http1=False) as h2:
            with pytest.raises(httpx.RemoteProtocolError) as refused:
                h2.get(server.url + "/healthz")
        assert "error_code:13" in str(refused.value)  # HTTP_1_1_REQUIRED
        assert server.proc.poll() is None
        with server.client() as http1:
            assert http1.get("/healthz").status_code == 200
            metrics = http1.get("/metrics").text
        assert "parley_connection_errors_total 0.0" in metrics
        assert "Traceback" not in server.stderr()


def test_an_h2c_upgrade_is_ignored_and_answered_over_http11(tmp_path):
    with serve(sqlite_url(tmp_path), tmp_path) as server:
        with socket.create_connection(("127.0.0.1", _port(server.url)), timeout=10) as conn:
            conn.sendall(
                b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: Upgrade, HTTP2-Settings\r\n"
                b"Upgrade: h2c\r\nHTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\r\n\r\n"
            )
            head = conn.recv(4096)
        assert head.startswith(b"HTTP/1.1 200 "), head[:40]
        assert server.proc.poll() is None


def test_the_http2_refusal_is_a_settings_frame_then_goaway_http_1_1_required():
    import h2.connection
    import h2.config
    import h2.events

    client = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
    client.initiate_connection()
    events = client.receive_data(HTTP2_REFUSAL)
    terminated = [e for e in events if isinstance(e, h2.events.ConnectionTerminated)]
    assert [e.error_code for e in terminated] == [13]


async def test_an_unexpected_error_ends_only_its_own_connection():
    errors: list[int] = []
    closed: list[bool] = []

    class Stream:
        async def aclose(self) -> None:
            closed.append(True)

    async def explode(stream) -> None:
        raise KeyError(1)

    async def fine(stream) -> None:
        await trio.lowlevel.checkpoint()

    async with trio.open_nursery() as nursery:  # a crash here would fail the nursery
        nursery.start_soon(guarded(explode, lambda: errors.append(1)), Stream())
        nursery.start_soon(guarded(fine, lambda: errors.append(1)), Stream())
    assert errors == [1]
    assert closed == [True]


def _fuzz_cases(rng: random.Random) -> list[bytes]:
    valid = b"POST /channels/x/append HTTP/1.1\r\nHost: x\r\nContent-Length: 12\r\n\r\n{\"body\":\"a\"}"
    cases = []
    for _ in range(150):
        kind = rng.randrange(4)
        if kind == 0:  # mutated HTTP/1.1
            data = bytearray(valid)
            for _ in range(rng.randrange(1, 8)):
                data[rng.randrange(len(data))] = rng.randrange(256)
            cases.append(bytes(data))
        elif kind == 1:  # truncated or repeated HTTP/1.1
            cases.append(valid[: rng.randrange(len(valid))] * rng.randrange(1, 4))
        elif kind == 2:  # the HTTP/2 preface then random frames
            frames = b"".join(
                rng.randrange(64).to_bytes(3, "big")
                + bytes([rng.randrange(10), rng.randrange(256)])
                + rng.randrange(8).to_bytes(4, "big")
                + rng.randbytes(rng.randrange(64))
                for _ in range(rng.randrange(1, 6))
            )
            cases.append(H2_PREFACE + frames)
        else:  # an h2c upgrade with trailing garbage
            cases.append(
                b"GET / HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: h2c\r\n\r\n" + rng.randbytes(40)
            )
    return cases


def test_random_http11_and_http2_framing_leaves_the_server_serving(tmp_path):
    rng = random.Random(20261201)
    with serve(sqlite_url(tmp_path), tmp_path) as server:
        port = _port(server.url)
        deadline = time.monotonic() + 20  # bounded: the case list ends well before this
        for case in _fuzz_cases(rng):
            if time.monotonic() > deadline:
                break
            with socket.create_connection(("127.0.0.1", port), timeout=5) as conn:
                try:
                    conn.sendall(case)
                    conn.shutdown(socket.SHUT_WR)
                    while conn.recv(65536):
                        pass
                except OSError:
                    pass  # the server may reset a connection it refused
        assert server.proc.poll() is None
        with server.client() as http1:
            assert http1.get("/healthz").status_code == 200
        assert "Traceback" not in server.stderr()


def _children(pid: int) -> set[int]:
    found = set()
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            found.add(int(stat.parent.name))
    return found


def _wait_for_line(server, text: str, timeout: float = 30) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for line in server.stderr().splitlines():
            if text in line:
                return line
        time.sleep(0.05)  # the supervisor's stderr file is the only signal there is
    raise AssertionError(f"no {text!r} in stderr: {server.stderr()[-2000:]}")


@pytest.mark.postgres
def test_a_worker_that_dies_is_replaced_and_the_port_keeps_serving(tmp_path):
    with database("postgres", tmp_path) as url, serve(url, tmp_path, PARLEY_WORKERS="2") as server:
        workers = _children(server.pid)
        assert len(workers) == 2
        victim = min(workers)
        os.kill(victim, signal.SIGKILL)
        line = _wait_for_line(server, "in its place")
        assert line.startswith(f"parley: worker {victim} exited (signal SIGKILL); started worker ")
        replacement = int(line.split("started worker ")[1].split()[0])
        assert _children(server.pid) == (workers - {victim}) | {replacement}
        for _ in range(20):  # fresh connections reach both workers
            with server.client("tok-a") as client:
                assert client.get("/readyz").status_code == 200
        assert server.terminate() == 0


async def test_an_idle_keep_alive_connection_is_closed_at_the_keep_alive_timeout(tmp_path):
    """Hypercorn armed its idle timer from the request's task, which Quart-Trio
    cancels after the last send, so an idle keep-alive connection was never
    closed, and held every shutdown for the whole graceful timeout."""
    from parley.journal import migrate
    from tests.support.server import running_server, test_settings

    url = sqlite_url(tmp_path)
    migrate.upgrade(url)
    async with running_server(test_settings(url, keep_alive_s=0.2)) as live:
        stream = await trio.open_tcp_stream("127.0.0.1", _port(live.url))
        await stream.send_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        received = b""
        with trio.fail_after(10):  # before the fix: never closed
            while chunk := await stream.receive_some(65536):
                received += chunk
        assert received.startswith(b"HTTP/1.1 200 ")
        await stream.aclose()


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


@pytest.mark.postgres
def test_workers_exit_when_their_supervisor_is_killed_with_sigkill(tmp_path):
    """Orphaned workers kept serving the inherited socket and held the port."""
    with database("postgres", tmp_path) as url, serve(url, tmp_path, PARLEY_WORKERS="2") as server:
        workers = _children(server.pid)
        assert len(workers) == 2
        server.kill9()
        deadline = time.monotonic() + 20
        while any(_alive(pid) for pid in workers) and time.monotonic() < deadline:
            time.sleep(0.05)  # nothing to await across processes but their exit
        assert not any(_alive(pid) for pid in workers)
        with pytest.raises(httpx.ConnectError):
            httpx.get(server.url + "/healthz", timeout=2)
