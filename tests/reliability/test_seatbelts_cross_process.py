"""Seatbelts are exact across processes on Postgres (issue 20, item 10; ADR-0025).

Two real ``parley serve`` processes on one schema, one agent sending through
both, alternately and concurrently, more than its cap: exactly the cap is
accepted in the window and the rest answer the contract's 429
``rate_limited`` (or 409 ``session_limit``). Before, each process counted on
its own and let the agent through twice over. The caps are low and the
requests quick, so everything happens well inside one minute's window.

One pair of servers serves the module; each test uses its own identity
(agent and owner), so their windows never meet. Channels are set up by
``setup`` owners, one per test, so set-up spends no create budget under test.
"""

from __future__ import annotations

import httpx
import pytest
import trio

from tests.support.messages import ulid
from tests.support.process import database, start_server

pytestmark = [pytest.mark.postgres, pytest.mark.reliability]

POSTS_CAP = 6  # per (channel, agent)
GLOBAL_CAP = 10  # per agent, all channels
CREATES_CAP = 4  # per owner
SESSIONS_CAP = 3  # per identity
NAMES = ("chan", "glob", "make", "sess", "loose")
TOKENS = ",".join(
    [f"tok-{n}:agent-{n}:owner-{n}" for n in NAMES] + [f"setup-{n}:setup-{n}:setup-{n}" for n in NAMES]
)
CAPS = {
    "PARLEY_MAX_POSTS_PER_MINUTE": str(POSTS_CAP),
    "PARLEY_GLOBAL_MAX_POSTS_PER_MINUTE": str(GLOBAL_CAP),
    "PARLEY_MAX_CHANNEL_CREATES_PER_MINUTE": str(CREATES_CAP),
    "PARLEY_MAX_SESSIONS_PER_IDENTITY": str(SESSIONS_CAP),
}


def _start_pair(url, tmp, **env):
    servers = []
    try:
        for _ in range(2):
            servers.append(start_server(url, tmp, PARLEY_TOKENS=TOKENS, **CAPS, **env))
    except BaseException:
        for server in servers:
            server.close()
        raise
    return servers


@pytest.fixture(scope="module")
def pair(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("seatbelts")
    with database("postgres", tmp) as url:
        servers = _start_pair(url, tmp)
        try:
            yield servers
        finally:
            for server in servers:
                server.close()


def _clients(servers, name: str) -> list[httpx.AsyncClient]:
    return [
        httpx.AsyncClient(base_url=s.url, headers={"Authorization": f"Bearer {name}"}, timeout=30) for s in servers
    ]


async def _close(clients) -> None:
    for client in clients:
        await client.aclose()


async def _create_everywhere(servers, owner: str, channels: list[str]) -> None:
    """``owner`` creates ``channels``; wait until both processes know them."""
    setup = _clients(servers, owner)
    try:
        for channel in channels:
            r = await setup[0].post("/channels", json={"channel": channel})
            assert r.status_code == 201, r.text
        with trio.fail_after(30):
            for client in setup:
                for channel in channels:
                    while (await client.get(f"/channels/{channel}")).status_code != 200:
                        await trio.sleep(0.02)  # the other process learns of it through its tailer
    finally:
        await _close(setup)


async def _post_concurrently(clients, paths: list[str], bodies: list[dict]) -> list[httpx.Response]:
    """POST ``bodies[i]`` to ``paths[i]`` through alternating processes, all at once."""
    answers: list[httpx.Response] = []

    async def one(i: int) -> None:
        answers.append(await clients[i % 2].post(paths[i], json=bodies[i]))

    async with trio.open_nursery() as nursery:
        for i in range(len(bodies)):
            nursery.start_soon(one, i)
    return answers


def _assert_exact(answers: list[httpx.Response], ok: int, cap: int, code: str, status: int) -> httpx.Response:
    """Exactly ``cap`` answers are ``ok``; every other one is the contract's error. Returns a refusal."""
    assert [r.status_code for r in answers].count(ok) == cap, [(r.status_code, r.text[:120]) for r in answers]
    refused = [r for r in answers if r.status_code != ok]
    assert refused and all(r.status_code == status and r.json()["error"]["code"] == code for r in refused), [
        r.text for r in refused
    ]
    return refused[0]


def _notes(n: int, base: int) -> list[dict]:
    return [{"type": "note", "body": f"post {k}", "msg_id": ulid(base + k)} for k in range(n)]


async def test_one_agent_posting_through_two_processes_gets_exactly_the_per_channel_cap(pair):
    await _create_everywhere(pair, "setup-chan", ["belt"])
    clients = _clients(pair, "tok-chan")
    try:
        n = POSTS_CAP + 6
        answers = await _post_concurrently(clients, ["/channels/belt/append"] * n, _notes(n, 0))
        refused = _assert_exact(answers, 201, POSTS_CAP, "rate_limited", 429)
        assert refused.json()["error"]["message"].startswith(
            f"Rate limit exceeded: at most {POSTS_CAP} posts/min per agent. Wait ~"
        )
        assert int(refused.headers["Retry-After"]) >= 1
    finally:
        await _close(clients)


async def test_one_agent_posting_to_many_channels_through_two_processes_gets_exactly_the_global_cap(pair):
    channels = [f"g{k}" for k in range(4)]
    await _create_everywhere(pair, "setup-glob", channels)
    clients = _clients(pair, "tok-glob")
    try:
        n = GLOBAL_CAP + 6  # 4 per channel: under the per-channel cap
        paths = [f"/channels/{channels[k % 4]}/append" for k in range(n)]
        answers = await _post_concurrently(clients, paths, _notes(n, 1000))
        refused = _assert_exact(answers, 201, GLOBAL_CAP, "rate_limited", 429)
        assert "across all channels" in refused.json()["error"]["message"]
    finally:
        await _close(clients)


async def test_one_owner_creating_channels_through_two_processes_gets_exactly_the_create_cap(pair):
    clients = _clients(pair, "tok-make")
    try:
        n = CREATES_CAP + 6
        answers = await _post_concurrently(clients, ["/channels"] * n, [{"channel": f"c{k}"} for k in range(n)])
        refused = _assert_exact(answers, 201, CREATES_CAP, "rate_limited", 429)
        assert "channel creates/min per owner" in refused.json()["error"]["message"]
    finally:
        await _close(clients)


async def test_one_identity_starting_sessions_through_two_processes_gets_exactly_the_session_limit(pair):
    clients = _clients(pair, "tok-sess")
    try:
        n = SESSIONS_CAP + 5
        answers = await _post_concurrently(clients, ["/v1/session"] * n, [{}] * n)
        refused = _assert_exact(answers, 200, SESSIONS_CAP, "session_limit", 409)
        assert refused.json()["error"]["message"] == (
            f"session limit reached: at most {SESSIONS_CAP} open sessions per identity"
        )
        # Closing one session (on either process) frees exactly one slot.
        opened = [r.json() for r in answers if r.status_code == 200]
        closed = await clients[1].request(
            "DELETE",
            f"/v1/session/{opened[0]['sessionId']}",
            json={"continuationToken": opened[0]["continuationToken"]},
        )
        assert closed.status_code == 200, closed.text
        again = await _post_concurrently(clients, ["/v1/session"] * 4, [{}] * 4)
        _assert_exact(again, 200, 1, "session_limit", 409)
    finally:
        await _close(clients)


async def test_shared_seatbelts_off_counts_per_process(tmp_path):
    # PARLEY_SHARED_SEATBELTS=0 is the pre-ADR-0025 tolerance, for one process:
    # each of two processes then admits the full cap on its own.
    with database("postgres", tmp_path) as url:
        servers = _start_pair(url, tmp_path, PARLEY_SHARED_SEATBELTS="0")
        try:
            await _create_everywhere(servers, "setup-loose", ["loose"])
            clients = _clients(servers, "tok-loose")
            statuses = []
            for k, body in enumerate(_notes(2 * POSTS_CAP, 2000)):
                statuses.append((await clients[k % 2].post("/channels/loose/append", json=body)).status_code)
            await _close(clients)
            assert statuses == [201] * (2 * POSTS_CAP)
        finally:
            for server in servers:
                server.close()
