"""Fault injection on a live in-process server: database connection loss, a locked
SQLite file, full mailboxes, and a dead session-lease holder.

The promise under every fault: a request answers (it never hangs), the answer
is a success or ``503`` with ``Retry-After`` (never a ``500``), a client that
retries the same write (same ``msg_id`` / ``Idempotency-Key`` / token) gets
it acknowledged exactly once, nothing acknowledged is lost, and the service
comes back by itself when the fault ends.
"""

from __future__ import annotations

import hashlib
import os
import sqlite3
import subprocess
import time
import uuid
from collections import Counter

import httpx
import pytest
import sqlalchemy as sa
import trio

from parley.actors.lease_holders import local_scope as _local_scope
from parley.clock import Clock
from tests.conftest import _admin_engine
from tests.support.messages import ulid
from tests.support.server import running_server, test_settings

pytestmark = pytest.mark.reliability

RAISED = {"max_posts_per_minute": 1_000_000, "global_max_posts_per_minute": 1_000_000}
#: No request may take longer than this under a fault ("fail fast, never hang").
FAIL_FAST_S = 5.0


class Recorder:
    """Statuses, latencies and contract violations seen by the load tasks."""

    def __init__(self) -> None:
        self.statuses: Counter = Counter()
        self.slowest = 0.0
        self.violations: list[str] = []

    async def send(self, client: httpx.AsyncClient, method: str, path: str, **kwargs) -> httpx.Response:
        started = time.monotonic()
        response = await client.request(method, path, **kwargs)
        elapsed = time.monotonic() - started
        self.slowest = max(self.slowest, elapsed)
        self.statuses[(method, path.split("/")[-1][:20], response.status_code)] += 1
        if response.status_code >= 500:
            if response.status_code != 503:
                self.violations.append(f"{method} {path}: {response.status_code} {response.text[:200]}")
            elif "retry-after" not in response.headers:
                self.violations.append(f"{method} {path}: 503 without Retry-After")
        return response

    async def until_acked(self, client, method, path, ok=(200, 201), **kwargs) -> httpx.Response:
        """Retry (same request) while the answer is 503."""
        while True:
            response = await self.send(client, method, path, **kwargs)
            if response.status_code != 503:
                if response.status_code not in ok:
                    self.violations.append(f"{method} {path}: {response.status_code} {response.text[:200]}")
                return response
            await trio.sleep(min(float(response.headers.get("retry-after", "1")), 0.05))

    def count(self, status: int) -> int:
        return sum(n for (_, _, s), n in self.statuses.items() if s == status)


async def read_all(client: httpx.AsyncClient, channel: str) -> list[dict]:
    messages, cursor = [], 0
    while True:
        page = (await client.post(f"/channels/{channel}/read", json={"cursor": cursor})).json()
        if not page["messages"]:
            return messages
        messages += page["messages"]
        cursor = page["cursor"]


class Load:
    """Mixed writes and reads against one live server until ``stop`` is set."""

    def __init__(self, live, recorder: Recorder, stop: trio.Event) -> None:
        self.live = live
        self.rec = recorder
        self.stop = stop
        self.acked: dict[str, list[str]] = {}
        self.session: dict | None = None
        self.turns_acked = 0

    async def appender(self, token: str) -> None:
        acked = self.acked.setdefault(token, [])
        async with self.live.client(token) as c:
            while not self.stop.is_set():
                msg_id = ulid()
                body = {"type": "note", "body": f"{token} {msg_id}", "msg_id": msg_id}
                r = await self.rec.until_acked(c, "POST", "/channels/load/append", ok=(201,), json=body)
                if r.status_code == 201:
                    acked.append(msg_id)

    async def claimer(self) -> None:
        async with self.live.client("tok-c") as c:
            i = 0
            while not self.stop.is_set():
                i += 1
                op = "claim" if i % 2 else "done"
                body = {"type": "claim", "body": f"{op} {i}", "msg_id": ulid(), "target": f"t{i % 3}"}
                await self.rec.until_acked(c, "POST", f"/channels/load/{op}", json=body)

    async def sessions(self) -> None:
        async with self.live.client("tok-a") as c:
            start = {"actions": [{"subscribe": {"channel": "load", "from": "head"}}], "max": 3}
            r = await self.rec.until_acked(c, "POST", "/v1/session", json=start, headers={"Idempotency-Key": "s0"})
            self.session = r.json()
            self.turns_acked = 1
            while not self.stop.is_set():
                n = self.turns_acked + 1
                body = {"max": 3, "actions": [{"append": {"channel": "load", "message": {
                    "type": "note", "body": f"turn {n}", "msg_id": ulid()}}}]}
                headers = {"Idempotency-Key": f"turn-{n}", "x-continuation-token": self.session["continuationToken"]}
                r = await self.rec.until_acked(
                    c, "POST", f"/v1/session/{self.session['sessionId']}/message", json=body, headers=headers
                )
                if r.status_code == 200 and r.json()["status"] in ("finished", "parked"):
                    self.session = r.json()
                    self.turns_acked = n

    async def artifacts(self) -> None:
        async with self.live.client("tok-b") as c:
            while not self.stop.is_set():
                blob = os.urandom(2048)
                sha = hashlib.sha256(blob).hexdigest()
                await self.rec.until_acked(c, "PUT", f"/channels/load/artifacts/{sha}", content=blob)
                await self.rec.send(c, "GET", f"/channels/load/artifacts/{sha}")

    async def reader(self) -> None:
        async with self.live.client("tok-a") as c:
            while not self.stop.is_set():
                await self.rec.send(c, "GET", "/channels/load")
                await self.rec.send(c, "GET", "/channels/load/claims")
                await self.rec.send(c, "POST", "/channels/load/read", json={"cursor": 0, "limit": 10})
                await self.rec.send(c, "GET", "/readyz")
                if self.session is not None:
                    await self.rec.send(c, "GET", f"/v1/session/{self.session['sessionId']}")
                await trio.sleep(0.01)

    def start(self, nursery: trio.Nursery) -> None:
        for token in ("tok-a", "tok-b", "tok-c"):
            nursery.start_soon(self.appender, token)
        nursery.start_soon(self.claimer)
        nursery.start_soon(self.sessions)
        nursery.start_soon(self.artifacts)
        nursery.start_soon(self.reader)

    async def check(self, client: httpx.AsyncClient) -> int:
        """Every acknowledged append is stored exactly once; turns match. Returns the count."""
        log = await read_all(client, "load")
        ids = Counter(m["msg_id"] for m in log)
        assert all(n == 1 for n in ids.values()), "a message was stored twice"
        checked = 0
        for token, acked in self.acked.items():
            missing = [m for m in acked if m not in ids]
            assert not missing, f"{token}: acknowledged appends lost: {missing[:3]}"
            checked += len(acked)
        if self.session is not None:
            r = await client.get(f"/v1/session/{self.session['sessionId']}")
            assert r.json()["turns"] in (self.turns_acked, self.turns_acked + 1)
        return checked


async def recovers(client: httpx.AsyncClient, within: float = 10.0) -> float:
    """Seconds until a fresh append and /readyz succeed again."""
    started = time.monotonic()
    with trio.fail_after(within):
        while True:
            ready = await client.get("/readyz")
            r = await client.post("/channels/load/append", json={"type": "note", "body": ulid(), "msg_id": ulid()})
            if r.status_code == 201 and ready.status_code == 200:
                return time.monotonic() - started
            assert r.status_code == 503, r.text
            await trio.sleep(0.05)


# -- Postgres: connections terminated under load ---------------------------------------


def terminate_backends(application_name: str) -> int:
    with _admin_engine().connect() as conn:
        n = conn.execute(
            sa.text("SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE application_name = :a"),
            {"a": application_name},
        ).scalar()
        conn.commit()
    return int(n or 0)


@pytest.mark.postgres
async def test_postgres_connection_loss_answers_503_never_hangs_and_recovers(postgres_url):
    name = f"parley-fault-{uuid.uuid4().hex[:10]}"
    url = f"{postgres_url}&application_name={name}"
    async with running_server(test_settings(url, **RAISED), clock=Clock()) as live:
        async with live.client("tok-a") as a:
            assert (await a.post("/channels", json={"channel": "load"})).status_code == 201
            rec, stop = Recorder(), trio.Event()
            load = Load(live, rec, stop)
            terminated = rounds = 0
            async with trio.open_nursery() as nursery:
                load.start(nursery)
                await trio.sleep(0.3)
                for rounds in range(1, 26):  # ~2.5 s of repeated connection loss
                    terminated += await trio.to_thread.run_sync(terminate_backends, name)
                    await trio.sleep(0.1)
                stop.set()
            assert terminated >= rounds, "the server's connections were not found"
            recovery = await recovers(a)
            checked = await load.check(a)
            assert not rec.violations, rec.violations[:10]
            assert rec.slowest < FAIL_FAST_S, f"a request took {rec.slowest:.1f} s"
            print(
                f"\npostgres connection loss: {terminated} backends terminated in {rounds} rounds; "
                f"{sum(rec.statuses.values())} requests, {rec.count(503)} x 503, 0 x 500, slowest {rec.slowest:.2f} s, "
                f"{checked} acknowledged appends verified, {load.turns_acked} turns, recovered in {recovery:.2f} s"
            )


@pytest.mark.postgres
async def test_postgres_idle_connections_killed_are_replaced_transparently(postgres_url):
    name = f"parley-fault-{uuid.uuid4().hex[:10]}"
    url = f"{postgres_url}&application_name={name}"
    async with running_server(test_settings(url, **RAISED), clock=Clock()) as live:
        async with live.client("tok-a") as a:
            assert (await a.post("/channels", json={"channel": "load"})).status_code == 201
            for i in range(3):
                assert await trio.to_thread.run_sync(terminate_backends, name) >= 1
                r = await a.post("/channels/load/append", json={"type": "note", "body": f"b{i}", "msg_id": ulid()})
                # the writer replaces a connection found dead before writing (one retry)
                assert r.status_code == 201, r.text
                assert (await a.post("/channels/load/read", json={"cursor": 0})).status_code == 200


# -- SQLite: the database file locked by another connection -----------------------------


async def test_sqlite_locked_file_answers_503_after_the_busy_timeout_and_recovers(sqlite_url):
    path = sqlite_url.removeprefix("sqlite:///")
    async with running_server(test_settings(sqlite_url, **RAISED), clock=Clock()) as live:
        async with live.client("tok-a") as a, live.client("tok-b") as b:
            for name in ("load", "other"):
                assert (await a.post("/channels", json={"channel": name})).status_code == 201
            before = {"type": "note", "body": "before", "msg_id": ulid()}
            assert (await a.post("/channels/load/append", json=before)).status_code == 201

            locker = sqlite3.connect(path, isolation_level=None, timeout=5)
            locker.execute("BEGIN EXCLUSIVE")
            locked_at = time.monotonic()
            first = {"type": "note", "body": "first", "msg_id": ulid()}
            queued = {"type": "note", "body": "queued", "msg_id": ulid()}
            seen: dict[str, tuple[int, float, httpx.Response]] = {}

            first_answered, readyz_answered, released = trio.Event(), trio.Event(), trio.Event()

            def timed(key, client, method, path, delay=0.0, after=None, then=None, **kw):
                async def run():
                    await trio.sleep(delay)
                    if after is not None:
                        await after.wait()
                    t0 = time.monotonic()
                    r = await client.request(method, path, **kw)
                    seen[key] = (r.status_code, time.monotonic() - t0, r)
                    if then is not None:
                        then.set()

                return run

            async def release_once_readiness_answered():
                await readyz_answered.wait()
                locker.execute("ROLLBACK")
                released.set()

            async with trio.open_nursery() as nursery:
                nursery.start_soon(timed("first", a, "POST", "/channels/load/append", json=first, then=first_answered))
                # Readiness is asked while the lock is still held, after the writer has failed once.
                nursery.start_soon(timed("readyz", b, "GET", "/readyz", after=first_answered, then=readyz_answered))
                nursery.start_soon(timed("queued", b, "POST", "/channels/load/append", after=released, json=queued))
                nursery.start_soon(timed("read-other", b, "POST", "/channels/other/read", 1.0, json={"cursor": 0}))
                nursery.start_soon(timed("describe", b, "GET", "/channels/load", 1.0))
                # A read of the channel whose write is stuck queues behind it in the actor's mailbox.
                nursery.start_soon(timed("read-same", b, "POST", "/channels/load/read", 1.0, json={"cursor": 0}))
                nursery.start_soon(release_once_readiness_answered)
            locker.close()
            total = time.monotonic() - locked_at

            figures = {k: (v[0], round(v[1], 2)) for k, v in seen.items()}
            status, first_s, response = seen["first"]
            assert status == 503, (figures, response.text)
            assert response.headers["retry-after"] == "1"
            assert response.json()["error"]["code"] == "unavailable"
            # The writer waits 1 s for the lock (issue 20 item 7), not the 10 s connection default.
            assert first_s < 5.0, f"503 after {first_s:.1f} s (the writer's busy timeout is 1 s): {figures}"
            # Written after the lock is gone: the queued write succeeds.
            assert seen["queued"][0] == 201, (figures, seen["queued"][2].text)
            # Reads do not need the write lock (WAL): they answer at once.
            for key in ("read-other", "describe"):
                assert seen[key][0] == 200 and seen[key][1] < 2.0, (key, figures)
            # Readiness says the writer cannot commit (its probe write waits the same 1 s).
            assert seen["readyz"][0] == 503, figures
            assert seen["readyz"][2].json()["error"]["message"].startswith("the journal writer cannot commit")
            assert (await b.get("/readyz")).status_code == 200  # the lock is gone: the probe commits
            # The client retries the refused write, same msg_id: acknowledged once, not a "duplicate".
            retry = await a.post("/channels/load/append", json=first)
            assert retry.status_code == 201, retry.text
            assert retry.headers.get("idempotent-replayed") is None
            recovery = await recovers(a)
            log = [m["msg_id"] for m in await read_all(a, "load")]
            assert log[:1] == [before["msg_id"]], log[:3]
            assert log.count(first["msg_id"]) == 1 and queued["msg_id"] in log, (first, queued, log)
            assert seen["read-same"][0] == 200
            print(
                f"\nsqlite locked {total:.1f} s: append answered 503 after {first_s:.1f} s (writer busy_timeout 1 s); "
                f"a write after the release took {seen['queued'][1]:.1f} s; readyz {seen['readyz'][1] * 1000:.0f} ms "
                f"(503), read of another channel {seen['read-other'][1] * 1000:.0f} ms, read of the locked channel "
                f"{seen['read-same'][1]:.1f} s ({seen['read-same'][0]}); recovered in {recovery:.2f} s"
            )


# -- saturation: a full actor mailbox ------------------------------------------------


async def test_full_mailbox_answers_503_with_retry_after(sqlite_url):
    settings = test_settings(sqlite_url, mailbox_size=1, **RAISED)
    async with running_server(settings, clock=Clock()) as live:
        async with live.client("tok-a") as a:
            assert (await a.post("/channels", json={"channel": "load"})).status_code == 201
            rec = Recorder()
            bodies = [{"type": "note", "body": f"burst {i}", "msg_id": ulid()} for i in range(64)]
            first: list[int] = []
            limits = httpx.Limits(max_connections=64)

            async def post(client, body):
                r = await rec.send(client, "POST", "/channels/load/append", json=body)
                first.append(r.status_code)
                if r.status_code == 503:
                    assert r.headers["retry-after"] == "1"
                    assert r.json()["error"]["code"] == "unavailable"
                    await rec.until_acked(client, "POST", "/channels/load/append", ok=(201,), json=body)

            async with live.client("tok-b", limits=limits) as b:
                async with trio.open_nursery() as nursery:
                    for body in bodies:
                        nursery.start_soon(post, b, body)
            refused = first.count(503)
            assert refused >= 1, f"no 503 from a 1-slot mailbox under 64 concurrent appends: {Counter(first)}"
            assert set(first) <= {201, 503}
            assert not rec.violations, rec.violations[:5]
            stored = Counter(m["msg_id"] for m in await read_all(a, "load"))
            assert all(stored[b["msg_id"]] == 1 for b in bodies)
            assert (await a.get("/readyz")).status_code == 200
            print(f"\nmailbox of 1: {refused}/64 concurrent appends got 503 + Retry-After: 1; all 64 stored once after retry")


# -- a session lease left by a process that died -------------------------------------


def dead_pid() -> int:
    proc = subprocess.Popen(["sleep", "30"])
    proc.kill()
    proc.wait()
    return proc.pid


@pytest.mark.parametrize("holder_alive", [False, True])
async def test_lease_of_a_dead_process_on_this_host_does_not_block_the_session(server, holder_alive):
    """After ``kill -9`` mid-turn and a restart, the session continues at once
    (the lease's holder is provably gone); a live foreign holder still means ``contended``."""
    async with server.client("tok-a") as a:
        r = await a.post("/v1/session", json={})
        started = r.json()
        sid, token = started["sessionId"], started["continuationToken"]
        journal = server.backbone.journal
        pid = os.getppid() if holder_alive else dead_pid()
        holder = f"{_local_scope()}:{pid}:feedfacecafe"
        expires = server.backbone.clock.now() + 60

        now = server.backbone.clock.now()
        base = await journal.last_seq(f"session:{sid}")
        await journal.take_lease(
            sid, holder=holder, now=now, expires_at=expires, base_seq=base, holder_is_dead=lambda h: False
        )
        described = (await a.get(f"/v1/session/{sid}")).json()
        assert described["status"] == ("in_turn" if holder_alive else "idle")
        r = await a.post(f"/v1/session/{sid}/message", json={}, headers={"x-continuation-token": token})
        assert r.status_code == 200
        if holder_alive:
            assert r.json()["status"] == "contended" and r.headers["retry-after"] == "1"
            assert r.json()["continuationToken"] == token
        else:
            assert r.json()["status"] == "finished"
            assert (await a.get(f"/v1/session/{sid}")).json()["turns"] == 2


# -- a turn answered is a turn over ----------------------------------------------------


async def test_the_next_turn_right_after_an_answer_is_never_turn_in_flight(server):
    """The crash harness saw a spurious 409 ``turn_in_flight`` on turn 100: the
    answered turn still counted as running while it saved its snapshot (every
    100 events). Back-to-back turns across two snapshots must all run."""
    async with server.client("tok-a") as a:
        assert (await a.post("/channels", json={"channel": "snap"})).status_code == 201
        started = (await a.post("/v1/session", json={"actions": [{"subscribe": {"channel": "snap"}}]})).json()
        sid, token = started["sessionId"], started["continuationToken"]
        refused = []
        for n in range(2, 212):
            r = await a.post(f"/v1/session/{sid}/message", json={"continuationToken": token})
            if r.status_code != 200:
                refused.append((n, r.status_code, r.json()["error"]["code"]))
                r = await a.post(f"/v1/session/{sid}/message", json={"continuationToken": token})
            token = r.json()["continuationToken"]
        assert not refused, refused
        assert (await a.get(f"/v1/session/{sid}")).json()["turns"] == 211
