"""Seatbelts are exact across processes on Postgres (issue 20, item 10; ADR-0025).

Two real ``parley serve`` processes on one schema, one agent sending through
both, alternately and concurrently, more than its cap: exactly the cap is
accepted in the window and the rest answer the contract's 429
``rate_limited`` (or 409 ``session_limit``). Before, each process counted on
its own and let the agent through twice over. The caps are low and the
requests quick, so everything happens well inside one minute's window.
"""

from __future__ import annotations

import httpx
import pytest
import trio

from tests.support.messages import ulid
from tests.support.process import database, start_server

pytestmark = [pytest.mark.postgres, pytest.mark.reliability]

TOKENS = "tok-a:agent-a:alice,tok-b:agent-b:bob"


async def _clients(servers, token: str):
    return [
        httpx.AsyncClient(base_url=s.url, headers={"Authorization": f"Bearer {token}"}, timeout=30) for s in servers
    ]


async def _until_known(clients, channel: str) -> None:
    """Both processes know ``channel`` (the second learns of it through its tailer)."""
    with trio.fail_after(30):
        for client in clients:
            while (await client.get(f"/channels/{channel}")).status_code != 200:
                await trio.sleep(0.02)


def _two_servers(url, tmp_path, **env):
    servers = []
    try:
        for _ in range(2):
            servers.append(start_server(url, tmp_path, PARLEY_TOKENS=TOKENS, **env))
    except BaseException:
        for server in servers:
            server.close()
        raise
    return servers


async def _post_concurrently(clients, path: str, bodies: list[dict]) -> list[httpx.Response]:
    """Send ``bodies`` to ``path``, alternating the two processes, all at once."""
    answers: list[httpx.Response] = []

    async def one(i: int, body: dict) -> None:
        answers.append(await clients[i % 2].post(path, json=body))

    async with trio.open_nursery() as nursery:
        for i, body in enumerate(bodies):
            nursery.start_soon(one, i, body)
    return answers


def _assert_exact(answers: list[httpx.Response], ok: int, cap: int, code: str, status: int) -> None:
    statuses = sorted(r.status_code for r in answers)
    assert statuses.count(ok) == cap, [(r.status_code, r.text[:120]) for r in answers]
    refused = [r for r in answers if r.status_code != ok]
    assert all(r.status_code == status and r.json()["error"]["code"] == code for r in refused), [
        r.text for r in refused
    ]


async def test_one_agent_posting_through_two_processes_gets_exactly_the_per_channel_cap(tmp_path):
    cap = 6
    with database("postgres", tmp_path) as url:
        servers = _two_servers(url, tmp_path, PARLEY_MAX_POSTS_PER_MINUTE=str(cap))
        try:
            clients = await _clients(servers, "tok-a")
            assert (await clients[0].post("/channels", json={"channel": "belt"})).status_code == 201
            await _until_known(clients, "belt")
            bodies = [{"type": "note", "body": f"post {n}", "msg_id": ulid(n)} for n in range(cap + 6)]
            answers = await _post_concurrently(clients, "/channels/belt/append", bodies)
            _assert_exact(answers, 201, cap, "rate_limited", 429)
            refused = next(r for r in answers if r.status_code == 429)
            assert refused.json()["error"]["message"].startswith(
                f"Rate limit exceeded: at most {cap} posts/min per agent. Wait ~"
            )
            assert int(refused.headers["Retry-After"]) >= 1
            for client in clients:
                await client.aclose()
        finally:
            for server in servers:
                server.close()


async def test_one_agent_posting_to_many_channels_through_two_processes_gets_exactly_the_global_cap(tmp_path):
    cap = 5
    with database("postgres", tmp_path) as url:
        env = {"PARLEY_MAX_POSTS_PER_MINUTE": "100", "PARLEY_GLOBAL_MAX_POSTS_PER_MINUTE": str(cap)}
        servers = _two_servers(url, tmp_path, **env)
        try:
            clients = await _clients(servers, "tok-a")
            channels = [f"g{k}" for k in range(4)]
            for channel in channels:
                assert (await clients[0].post("/channels", json={"channel": channel})).status_code == 201
                await _until_known(clients, channel)
            answers: list[httpx.Response] = []

            async def one(n: int) -> None:
                body = {"type": "note", "body": f"post {n}", "msg_id": ulid(n)}
                answers.append(await clients[n % 2].post(f"/channels/{channels[n % 4]}/append", json=body))

            async with trio.open_nursery() as nursery:
                for n in range(cap + 7):
                    nursery.start_soon(one, n)
            _assert_exact(answers, 201, cap, "rate_limited", 429)
            assert "across all channels" in next(r for r in answers if r.status_code == 429).json()["error"]["message"]
            for client in clients:
                await client.aclose()
        finally:
            for server in servers:
                server.close()


async def test_one_owner_creating_channels_through_two_processes_gets_exactly_the_create_cap(tmp_path):
    cap = 4
    with database("postgres", tmp_path) as url:
        servers = _two_servers(url, tmp_path, PARLEY_MAX_CHANNEL_CREATES_PER_MINUTE=str(cap))
        try:
            clients = await _clients(servers, "tok-a")
            bodies = [{"channel": f"c{n}"} for n in range(cap + 6)]
            answers = await _post_concurrently(clients, "/channels", bodies)
            _assert_exact(answers, 201, cap, "rate_limited", 429)
            assert "channel creates/min per owner" in next(
                r for r in answers if r.status_code == 429
            ).json()["error"]["message"]
            for client in clients:
                await client.aclose()
        finally:
            for server in servers:
                server.close()


async def test_one_identity_starting_sessions_through_two_processes_gets_exactly_the_session_limit(tmp_path):
    limit = 3
    with database("postgres", tmp_path) as url:
        servers = _two_servers(url, tmp_path, PARLEY_MAX_SESSIONS_PER_IDENTITY=str(limit))
        try:
            clients = await _clients(servers, "tok-a")
            answers = await _post_concurrently(clients, "/v1/session", [{} for _ in range(limit + 5)])
            _assert_exact(answers, 200, limit, "session_limit", 409)
            refused = next(r for r in answers if r.status_code == 409)
            assert refused.json()["error"]["message"] == (
                f"session limit reached: at most {limit} open sessions per identity"
            )
            # Closing one session (on either process) frees exactly one slot.
            opened = [r.json() for r in answers if r.status_code == 200]
            closed = await clients[1].request(
                "DELETE", f"/v1/session/{opened[0]['sessionId']}",
                json={"continuationToken": opened[0]["continuationToken"]},
            )
            assert closed.status_code == 200, closed.text
            again = await _post_concurrently(clients, "/v1/session", [{} for _ in range(4)])
            _assert_exact(again, 200, 1, "session_limit", 409)
            for client in clients:
                await client.aclose()
        finally:
            for server in servers:
                server.close()


async def test_shared_seatbelts_off_counts_per_process(tmp_path):
    # PARLEY_SHARED_SEATBELTS=0 is the pre-ADR-0025 tolerance, for one process:
    # each of two processes then admits the full cap on its own.
    cap = 3
    with database("postgres", tmp_path) as url:
        servers = _two_servers(url, tmp_path, PARLEY_MAX_POSTS_PER_MINUTE=str(cap), PARLEY_SHARED_SEATBELTS="0")
        try:
            clients = await _clients(servers, "tok-a")
            assert (await clients[0].post("/channels", json={"channel": "loose"})).status_code == 201
            await _until_known(clients, "loose")
            statuses = []
            for n in range(2 * cap):
                body = {"type": "note", "body": f"post {n}", "msg_id": ulid(n)}
                statuses.append((await clients[n % 2].post("/channels/loose/append", json=body)).status_code)
            assert statuses == [201] * (2 * cap)
            for client in clients:
                await client.aclose()
        finally:
            for server in servers:
                server.close()
