"""Crash consistency harness: concurrent load, ``kill -9`` at random moments, restart, verify.

Runs ``parley serve`` as a subprocess on one database and drives it from
several trio tasks, each a client that retries its current operation with
the same ``msg_id`` / ``Idempotency-Key`` (and the same continuation token)
until it is acknowledged:

* ``append-N``  appends with a fresh ``msg_id`` per message (D2 replay);
* ``keyed``     appends under an ``Idempotency-Key``, minting a NEW ``msg_id``
  on every attempt (the key alone must make the retry a replay);
* ``claim-N``   claims / reassigns / marks done on a small pool of contested
  targets (two owners race for them);
* ``artifact``  PUTs random blobs;
* ``session-N`` starts a session (with an ``Idempotency-Key``) and runs
  turns that each append one message, every turn keyed.

The server is killed with SIGKILL ``--kills`` times at random moments and
restarted on the same database each time. Before the last kill the clients
are frozen (whatever each was doing stays unacknowledged), so after the last
restart the harness first checks the database as the crash left it:

1. every acknowledged write is present exactly once, nothing unintended is
   present, and an operation in flight at the crash is present at most once;
   the claim ledger ``GET /channels/:c/claims`` equals the ledger replayed
   from the log; each session's ``turns`` is the acknowledged count or one
   more (a committed, unacknowledged turn);

then lets every client finish its pending operation (same ids, same key,
same token), which must be a replay when it had committed, and checks:

2. every client's intended set of messages is exactly present (retries never
   duplicate); every acknowledged blob reads back byte for byte; each
   session's last token works and every earlier one is ``stale_token``;
   ``parley journal verify`` exits 0.

The last stdout line is ``crash-harness: OK backend=… kills=… operations=…``
(the tests assert on it); any violation raises and prints ``FAILED``.

    python -m tests.reliability.crash_harness --kills 5 --backend sqlite
    python -m tests.reliability.crash_harness --kills 20 --backend postgres --seed 7
    CRASH_DEBUG=1 python -m tests.reliability.crash_harness ...   # trace kills and dropped requests
"""

from __future__ import annotations

import argparse
import hashlib
import os
import random
import sys
import tempfile
import time
from collections import Counter
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import trio

from tests.support.process import Server, clean_env, database, run_cli, start_server

CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"

#: (token, agent_id, owner) of every simulated client.
IDENTITIES = {
    "append-1": ("tok-ap1", "ap1", "alice"),
    "append-2": ("tok-ap2", "ap2", "bob"),
    "append-3": ("tok-ap3", "ap3", "carol"),
    "keyed": ("tok-key", "keyed", "dave"),
    "claim-1": ("tok-cl1", "cl1", "alice"),
    "claim-2": ("tok-cl2", "cl2", "bob"),
    "artifact": ("tok-art", "art", "erin"),
    "session-1": ("tok-se1", "se1", "frank"),
    "session-2": ("tok-se2", "se2", "gina"),
}
TOKENS_ENV = ",".join(f"{t}:{a}:{o}" for t, a, o in IDENTITIES.values())
SERVER_ENV = {
    "PARLEY_TOKENS": TOKENS_ENV,
    "PARLEY_MAX_POSTS_PER_MINUTE": "1000000",
    "PARLEY_GLOBAL_MAX_POSTS_PER_MINUTE": "1000000",
    "PARLEY_MAX_CHANNEL_CREATES_PER_MINUTE": "1000000",
    "PARLEY_MAX_MESSAGES_PER_CHANNEL": "10000000",
    "PARLEY_MAX_CHANNEL_ARTIFACT_BYTES": str(1 << 30),
    "PARLEY_MAX_TOTAL_ARTIFACT_BYTES": str(1 << 30),
}
LOG, CLAIMS, SESS, ART = "log", "claims", "sess", "art"
TARGETS = [f"job-{i}" for i in range(5)]


class Violation(AssertionError):
    """The server broke a durability / idempotency promise."""


def new_ulid() -> str:
    ms = int(time.time() * 1000)
    head = "".join(CROCKFORD[(ms >> (5 * i)) & 31] for i in range(9, -1, -1))
    return head + "".join(CROCKFORD[b & 31] for b in os.urandom(16))


@dataclass
class Stats:
    kills: int = 0
    requests: int = 0
    transport_errors: int = 0
    unavailable_503: int = 0
    replays: Counter = field(default_factory=Counter)
    contended: int = 0
    in_flight_409: int = 0
    acked: Counter = field(default_factory=Counter)
    verified: int = 0
    pending_at_crash: int = 0
    committed_unacked: int = 0
    downtime_s: float = 0.0

    def operations(self) -> int:
        return sum(self.acked.values())


class Generation:
    """One run of the server process."""

    def __init__(self, number: int) -> None:
        self.number = number
        self.server: Server | None = None
        self.up = trio.Event()


class Harness:
    def __init__(self, url: str, workdir: Path, *, kills: int, seed: int, backend: str,
                 min_window: float = 0.3, max_window: float = 1.8, log=print) -> None:
        self.url = url
        self.workdir = workdir
        self.kills = kills
        self.backend = backend
        self.seed = seed
        self.rng = random.Random(seed)
        self.min_window = min_window
        self.max_window = max_window
        self.log = log
        self.stats = Stats()
        self.gen = Generation(0)
        self.servers: list[Server] = []
        self.open_gate = trio.Event()
        self.open_gate.set()
        self.finishing = False
        self.clients: list[Client] = []

    def debug(self, text: str) -> None:
        """Trace lines with ``CRASH_DEBUG=1`` (kills, dropped connections, 409s)."""
        if os.environ.get("CRASH_DEBUG"):
            self.log(f"DEBUG t={time.monotonic():.2f} {text}")

    # -- the server ----------------------------------------------------------------

    async def start_server(self) -> None:
        gen = self.gen
        server = await trio.to_thread.run_sync(lambda: start_server(self.url, self.workdir, **SERVER_ENV))
        self.servers.append(server)
        gen.server = server
        gen.up.set()

    async def kill_server(self) -> None:
        gen = self.gen
        assert gen.server is not None
        self.gen = Generation(gen.number + 1)  # clients now wait for the next one
        await trio.to_thread.run_sync(gen.server.kill9)
        gen.server.close()
        self.stats.kills += 1

    def close(self) -> None:
        for server in self.servers:
            server.close()

    # -- requests ------------------------------------------------------------------

    async def call(self, http: httpx.AsyncClient, method: str, path: str, token: str | None, *,
                   json: Any = None, content: bytes | None = None, headers: dict[str, str] | None = None,
                   body_factory=None, ungated: bool = False) -> httpx.Response:
        """Send until the server answers something other than 503 (or a dropped connection).

        ``body_factory()`` re-builds the JSON body for every attempt (the keyed
        appender mints a new msg_id each time).
        """
        while True:
            if not ungated:
                await self.open_gate.wait()
            gen = self.gen
            await gen.up.wait()
            if not ungated and not self.open_gate.is_set():
                continue  # frozen while waiting for the restart
            all_headers = dict(headers or {})
            if token is not None:
                all_headers["Authorization"] = f"Bearer {token}"
            payload = body_factory() if body_factory is not None else json
            try:
                response = await http.request(method, gen.server.url + path, json=payload, content=content,
                                              headers=all_headers)
            except httpx.TransportError as exc:
                self.stats.transport_errors += 1
                self.debug(f"transport {type(exc).__name__} {method} {path} gen {gen.number}/{self.gen.number}")
                await trio.sleep(0.02)
                continue
            self.stats.requests += 1
            if response.status_code == 503:
                self.stats.unavailable_503 += 1
                if "retry-after" not in response.headers:
                    raise Violation(f"503 without Retry-After on {method} {path}: {response.text}")
                await trio.sleep(0.05)
                continue
            return response

    async def read_log(self, http: httpx.AsyncClient, channel: str) -> list[dict[str, Any]]:
        messages: list[dict[str, Any]] = []
        cursor = 0
        while True:
            r = await self.call(http, "POST", f"/channels/{channel}/read", None,
                                json={"cursor": cursor, "limit": 500}, ungated=True)
            expect(r.status_code == 200, f"read {channel}: {r.status_code} {r.text}")
            page = r.json()
            if not page["messages"]:
                return messages
            messages += page["messages"]
            expect(page["cursor"] == cursor + len(page["messages"]), f"read {channel}: cursor arithmetic")
            cursor = page["cursor"]

    # -- the run -------------------------------------------------------------------

    async def run(self) -> Stats:
        started = time.monotonic()
        await self.start_server()
        async with httpx.AsyncClient(timeout=20) as http:
            await self.setup(http)
        self.clients = make_clients(self)
        async with trio.open_nursery() as nursery:
            for client in self.clients:
                nursery.start_soon(client.run)
            for k in range(self.kills):
                await trio.sleep(self.rng.uniform(self.min_window, self.max_window))
                final = k == self.kills - 1
                if final:
                    self.open_gate = trio.Event()  # freeze: nothing new is sent
                t0 = time.monotonic()
                self.debug(f"kill gen {self.gen.number}")
                await self.kill_server()
                await self.start_server()
                self.stats.downtime_s += time.monotonic() - t0
                self.log(f"kill {k + 1}/{self.kills}: restarted (acked so far {self.stats.operations()})")
            if self.kills == 0:
                await trio.sleep(self.rng.uniform(self.min_window, self.max_window))
                self.open_gate = trio.Event()
            # The clients are frozen now: check the database as the crash left it.
            await trio.sleep(0.2)  # let every in-flight attempt notice the dead server
            async with httpx.AsyncClient(timeout=20) as http:
                await self.verify_after_crash(http)
            self.log(f"after-crash checks passed at {time.monotonic() - started:.1f}s")
            self.finishing = True
            self.open_gate.set()
        self.log(f"pending operations completed at {time.monotonic() - started:.1f}s")
        async with httpx.AsyncClient(timeout=20) as http:
            await self.verify_final(http)
        self.log(f"final checks passed at {time.monotonic() - started:.1f}s")
        server = self.gen.server
        assert server is not None
        code = await trio.to_thread.run_sync(server.terminate)
        expect(code == 0, f"SIGTERM exit code {code}")
        result = await trio.to_thread.run_sync(
            lambda: run_cli(["journal", "verify", "--database-url", self.url], clean_env(), self.workdir)
        )
        expect(result.returncode == 0, f"journal verify failed: {result.stdout} {result.stderr}")
        self.log(result.stdout.strip())
        self.elapsed = time.monotonic() - started
        return self.stats

    async def setup(self, http: httpx.AsyncClient) -> None:
        token = IDENTITIES["append-1"][0]
        for channel in (LOG, CLAIMS, SESS, ART):
            r = await self.call(http, "POST", "/channels", token, json={"channel": channel},
                                headers={"Idempotency-Key": f"create-{channel}"})
            expect(r.status_code == 201, f"create {channel}: {r.status_code} {r.text}")

    async def verify_after_crash(self, http: httpx.AsyncClient) -> None:
        logs = {c: await self.read_log(http, c) for c in (LOG, CLAIMS, SESS)}
        for channel, log in logs.items():
            check_log_shape(channel, log)
            r = await self.call(http, "GET", f"/channels/{channel}", None, ungated=True)
            expect(r.json()["head"] == len(log), f"{channel}: head {r.json()['head']} != {len(log)} messages")
        for client in self.clients:
            await client.verify(http, logs, final=False)
        await verify_ledger(self, http, logs[CLAIMS])

    async def verify_final(self, http: httpx.AsyncClient) -> None:
        logs = {c: await self.read_log(http, c) for c in (LOG, CLAIMS, SESS)}
        for channel, log in logs.items():
            check_log_shape(channel, log)
        for client in self.clients:
            await client.verify(http, logs, final=True)
        await verify_ledger(self, http, logs[CLAIMS])
        # Nobody but the clients wrote: every message is some client's.
        owned = Counter()
        for client in self.clients:
            owned.update(client.owned_ids())
        for channel, log in logs.items():
            for m in log:
                expect(owned[(channel, m["msg_id"])] == 1, f"{channel}: message {m['msg_id']} belongs to no client")


def expect(condition: bool, message: str) -> None:
    if not condition:
        raise Violation(message)


def check_log_shape(channel: str, log: list[dict[str, Any]]) -> None:
    ids = [m["msg_id"] for m in log]
    dupes = [i for i, n in Counter(ids).items() if n > 1]
    expect(not dupes, f"{channel}: duplicated msg_ids {dupes[:5]}")
    stamps = [m["ts"] for m in log]
    expect(stamps == sorted(stamps) and len(set(stamps)) == len(stamps), f"{channel}: stamps not increasing")


async def verify_ledger(harness: Harness, http: httpx.AsyncClient, log: list[dict[str, Any]]) -> None:
    """``GET /claims`` must equal the ledger replayed from the claim messages of the log."""
    ledger: dict[str, tuple[str, str, str]] = {}
    for m in log:
        if m["type"] != "claim":
            raise Violation(f"claims: non-claim message {m['msg_id']}")
        key = m["target"].strip()
        if m.get("status") == "resolved":
            expect(key in ledger, f"claims: done {m['msg_id']} on an unheld target")
            del ledger[key]
        elif "assignee" in m:
            ledger[key] = (m["assignee"]["agent_id"], m["assignee"]["owner"], m["msg_id"])
        else:
            ledger[key] = (m["agent_id"], m["owner"], m["msg_id"])
    r = await harness.call(http, "GET", f"/channels/{CLAIMS}/claims", None, ungated=True)
    listed = {c["target"]: (c["holder"]["agent_id"], c["holder"]["owner"], c["msg_id"]) for c in r.json()["claims"]}
    expect(listed == ledger, f"claims: ledger {listed} != log replay {ledger}")
    harness.stats.verified += len(ledger)


# -- clients -------------------------------------------------------------------------


class Client:
    name: str

    def __init__(self, harness: Harness, name: str) -> None:
        self.harness = harness
        self.name = name
        self.token, self.agent_id, self.owner = IDENTITIES[name]
        self.rng = random.Random(f"{harness.seed}-{name}")
        self.count = 0

    async def run(self) -> None:
        async with httpx.AsyncClient(timeout=20) as http:
            await self.start(http)
            while not self.harness.finishing:
                await self.step(http)
                await trio.sleep(self.rng.uniform(0, 0.01))
            await self.finish(http)

    async def start(self, http: httpx.AsyncClient) -> None:
        pass

    async def step(self, http: httpx.AsyncClient) -> None:
        raise NotImplementedError

    async def finish(self, http: httpx.AsyncClient) -> None:
        """Complete the operation pending at the last crash (it is resent by step)."""
        if self.has_pending():
            await self.step(http)

    def has_pending(self) -> bool:
        return False

    def ack(self, kind: str) -> None:
        self.harness.stats.acked[kind] += 1

    def owned_ids(self) -> list[tuple[str, str]]:
        return []

    async def verify(self, http: httpx.AsyncClient, logs: dict[str, list[dict[str, Any]]], *, final: bool) -> None:
        raise NotImplementedError


def mine(log: list[dict[str, Any]], agent_id: str) -> dict[str, dict[str, Any]]:
    return {m["msg_id"]: m for m in log if m["agent_id"] == agent_id}


class Appender(Client):
    """Appends with a stable msg_id; a retry must replay, never duplicate."""

    def __init__(self, harness: Harness, name: str) -> None:
        super().__init__(harness, name)
        self.acked: dict[str, str] = {}  # msg_id -> body
        self.pending: tuple[str, str] | None = None

    def has_pending(self) -> bool:
        return self.pending is not None

    async def step(self, http: httpx.AsyncClient) -> None:
        if self.pending is None:
            self.count += 1
            self.pending = (new_ulid(), f"{self.name} message {self.count}")
        msg_id, body = self.pending
        r = await self.harness.call(http, "POST", f"/channels/{LOG}/append", self.token,
                                    json={"type": "note", "body": body, "msg_id": msg_id})
        expect(r.status_code == 201, f"{self.name}: append answered {r.status_code} {r.text}")
        stored = r.json()["message"]
        expect(stored["msg_id"] == msg_id and stored["body"] == body, f"{self.name}: ack for another message")
        if r.headers.get("idempotent-replayed") == "true":
            self.harness.stats.replays["append"] += 1
        self.acked[msg_id] = body
        self.pending = None
        self.ack("append")

    def owned_ids(self) -> list[tuple[str, str]]:
        return [(LOG, i) for i in self.acked]

    async def verify(self, http, logs, *, final: bool) -> None:
        present = mine(logs[LOG], self.agent_id)
        for msg_id, body in self.acked.items():
            expect(msg_id in present, f"{self.name}: acknowledged append {msg_id} lost")
            expect(present[msg_id]["body"] == body, f"{self.name}: {msg_id} has another body")
        extra = set(present) - set(self.acked)
        if final:
            expect(not extra, f"{self.name}: unintended messages {sorted(extra)[:5]}")
            self.harness.stats.verified += len(self.acked)
            return
        allowed = {self.pending[0]} if self.pending else set()
        expect(extra <= allowed, f"{self.name}: unintended messages {sorted(extra - allowed)[:5]}")
        if self.pending:
            self.harness.stats.pending_at_crash += 1
            self.harness.stats.committed_unacked += len(extra)


class KeyedAppender(Client):
    """Appends under an Idempotency-Key with a NEW msg_id on every attempt."""

    def __init__(self, harness: Harness, name: str) -> None:
        super().__init__(harness, name)
        self.acked: dict[str, str] = {}  # key -> the msg_id the ack reported
        self.pending: str | None = None

    def has_pending(self) -> bool:
        return self.pending is not None

    def body_of(self, key: str) -> str:
        return f"{self.name} keyed {key}"

    async def step(self, http: httpx.AsyncClient) -> None:
        if self.pending is None:
            self.count += 1
            self.pending = f"k-{self.harness.seed}-{self.count}"
        key = self.pending
        body = self.body_of(key)
        r = await self.harness.call(
            http, "POST", f"/channels/{LOG}/append", self.token, headers={"Idempotency-Key": key},
            body_factory=lambda: {"type": "note", "body": body, "msg_id": new_ulid()},
        )
        expect(r.status_code == 201, f"{self.name}: keyed append answered {r.status_code} {r.text}")
        if r.headers.get("idempotent-replayed") == "true":
            self.harness.stats.replays["keyed_append"] += 1
        self.acked[key] = r.json()["message"]["msg_id"]
        self.pending = None
        self.ack("keyed_append")

    def owned_ids(self) -> list[tuple[str, str]]:
        return [(LOG, i) for i in self.acked.values()]

    async def verify(self, http, logs, *, final: bool) -> None:
        present = mine(logs[LOG], self.agent_id)
        bodies = Counter(m["body"] for m in present.values())
        for key, msg_id in self.acked.items():
            expect(bodies[self.body_of(key)] == 1, f"{self.name}: key {key} stored {bodies[self.body_of(key)]} times")
            expect(msg_id in present, f"{self.name}: acknowledged msg_id {msg_id} of key {key} not stored")
        intended = {self.body_of(k) for k in self.acked}
        if not final and self.pending is not None:
            pending_body = self.body_of(self.pending)
            expect(bodies[pending_body] <= 1, f"{self.name}: pending key stored twice")
            self.harness.stats.pending_at_crash += 1
            self.harness.stats.committed_unacked += bodies[pending_body]
            intended.add(pending_body)
        expect(set(bodies) <= intended, f"{self.name}: unintended messages")
        if final:
            expect(sum(bodies.values()) == len(self.acked), f"{self.name}: message count != acknowledged keys")
            self.harness.stats.verified += len(self.acked)


class Claimer(Client):
    """Claims, reassigns and marks done on contested targets; remembers every outcome."""

    def __init__(self, harness: Harness, name: str) -> None:
        super().__init__(harness, name)
        self.appended: dict[str, dict[str, Any]] = {}  # granted msg_id -> what was sent
        self.refused: set[str] = set()  # already_claimed / not_held msg_ids
        self.pending: tuple[str, str, dict[str, Any]] | None = None  # op, msg_id, body

    def has_pending(self) -> bool:
        return self.pending is not None

    async def step(self, http: httpx.AsyncClient) -> None:
        if self.pending is None:
            self.count += 1
            target = self.rng.choice(TARGETS)
            op = self.rng.choices(["claim", "done", "reassign"], [5, 4, 1])[0]
            body: dict[str, Any] = {"type": "claim", "body": f"{self.name} {op} {target} #{self.count}",
                                    "msg_id": new_ulid(), "target": target}
            if op == "reassign":
                body["assignee"] = {"agent_id": f"{self.agent_id}-helper", "owner": self.owner}
            self.pending = (op, body["msg_id"], body)
        op, msg_id, body = self.pending
        r = await self.harness.call(http, "POST", f"/channels/{CLAIMS}/{op}", self.token, json=body)
        expect(r.status_code == 200, f"{self.name}: {op} answered {r.status_code} {r.text}")
        outcome = r.json()["outcome"]
        if outcome == "granted":
            stored = r.json()["message"]
            expect(stored["msg_id"] == msg_id, f"{self.name}: {op} granted another message")
            if r.headers.get("idempotent-replayed") == "true":
                self.harness.stats.replays[op] += 1
            self.appended[msg_id] = body
        else:
            expect(outcome in ("already_claimed", "not_held"), f"{self.name}: outcome {outcome}")
            self.refused.add(msg_id)
        self.pending = None
        self.ack(f"{op}")

    def owned_ids(self) -> list[tuple[str, str]]:
        return [(CLAIMS, i) for i in self.appended]

    async def verify(self, http, logs, *, final: bool) -> None:
        present = mine(logs[CLAIMS], self.agent_id)
        for msg_id in self.appended:
            expect(msg_id in present, f"{self.name}: granted claim {msg_id} lost")
        for msg_id in self.refused:
            expect(msg_id not in present, f"{self.name}: refused claim {msg_id} is in the log")
        extra = set(present) - set(self.appended)
        allowed = {self.pending[1]} if (self.pending and not final) else set()
        expect(extra <= allowed, f"{self.name}: unintended claim messages {sorted(extra - allowed)[:5]}")
        if not final and self.pending:
            self.harness.stats.pending_at_crash += 1
            self.harness.stats.committed_unacked += len(extra)
        if final:
            self.harness.stats.verified += len(self.appended) + len(self.refused)


class ArtifactClient(Client):
    def __init__(self, harness: Harness, name: str) -> None:
        super().__init__(harness, name)
        self.acked: dict[str, bytes] = {}
        self.pending: bytes | None = None

    def has_pending(self) -> bool:
        return self.pending is not None

    async def step(self, http: httpx.AsyncClient) -> None:
        if self.pending is None:
            self.pending = os.urandom(self.rng.randint(1, 16 * 1024))
        blob = self.pending
        sha = hashlib.sha256(blob).hexdigest()
        r = await self.harness.call(http, "PUT", f"/channels/{ART}/artifacts/{sha}", self.token, content=blob)
        expect(r.status_code in (200, 201), f"{self.name}: PUT answered {r.status_code} {r.text}")
        if r.status_code == 200:
            self.harness.stats.replays["artifact"] += 1
        self.acked[sha] = blob
        self.pending = None
        self.ack("artifact")

    async def verify(self, http, logs, *, final: bool) -> None:
        for sha, blob in self.acked.items():
            r = await self.harness.call(http, "GET", f"/channels/{ART}/artifacts/{sha}", None, ungated=True)
            expect(r.status_code == 200 and r.content == blob, f"{self.name}: blob {sha[:12]} lost or changed")
        if final:
            self.harness.stats.verified += len(self.acked)


class SessionClient(Client):
    """A session whose every turn appends one message; every request is keyed."""

    def __init__(self, harness: Harness, name: str) -> None:
        super().__init__(harness, name)
        self.session_id: str | None = None
        self.tokens: list[str] = []  # tokens[k] = the token turn k+1 returned
        self.turn_msgs: dict[str, int] = {}  # msg_id -> turn (turns whose append succeeded)
        self.pending: tuple[int, str, dict[str, Any], str | None] | None = None  # turn, key, body, token
        self.expect_replay = False

    def has_pending(self) -> bool:
        return self.pending is not None

    def next_pending(self) -> None:
        turn = len(self.tokens) + 1
        msg_id = new_ulid()
        body: dict[str, Any] = {
            "actions": [{"append": {"channel": SESS, "message": {
                "type": "note", "body": f"{self.name} turn {turn}", "msg_id": msg_id}}}],
            "max": 5,
        }
        if turn == 1:
            body["actions"].insert(0, {"subscribe": {"channel": SESS, "from": "head"}})
        self.pending = (turn, f"{self.name}-{self.harness.seed}-t{turn}", body, self.tokens[-1] if self.tokens else None)

    async def step(self, http: httpx.AsyncClient) -> None:
        if self.pending is None:
            self.next_pending()
        turn, key, body, token = self.pending
        headers = {"Idempotency-Key": key}
        if token is None:
            path = "/v1/session"
        else:
            path = f"/v1/session/{self.session_id}/message"
            headers["x-continuation-token"] = token
        while True:
            r = await self.harness.call(http, "POST", path, self.token, json=body, headers=headers)
            if r.status_code == 409 and r.json()["error"]["code"] == "turn_in_flight":
                self.harness.stats.in_flight_409 += 1
                self.harness.debug(f"turn_in_flight {self.name} turn {turn} gen {self.harness.gen.number}")
                await trio.sleep(0.1)
                continue
            expect(r.status_code == 200, f"{self.name}: turn {turn} answered {r.status_code} {r.text}")
            data = r.json()
            if data["status"] == "contended":
                self.harness.stats.contended += 1
                expect(r.headers.get("retry-after") is not None, f"{self.name}: contended without Retry-After")
                expect(data["continuationToken"] == token, f"{self.name}: contended rotated the token")
                await trio.sleep(0.2)
                continue
            break
        replayed = r.headers.get("idempotent-replayed") == "true"
        if self.expect_replay:
            expect(replayed, f"{self.name}: committed turn {turn} was run again instead of replayed")
            self.expect_replay = False
        if replayed:
            self.harness.stats.replays["session_turn"] += 1
        expect(data["status"] in ("finished", "parked"), f"{self.name}: status {data['status']}")
        if token is None:
            self.session_id = data["sessionId"]
        results = data["output"]["results"]
        append_result = results[-1]
        msg_id = body["actions"][-1]["append"]["message"]["msg_id"]
        if "error" in append_result:
            # The turn committed with a failed action (allowed); its message is not intended.
            pass
        else:
            expect(append_result["message"]["msg_id"] == msg_id, f"{self.name}: turn {turn} appended another message")
            self.turn_msgs[msg_id] = turn
        self.tokens.append(data["continuationToken"])
        self.pending = None
        self.ack("session_turn")

    def owned_ids(self) -> list[tuple[str, str]]:
        return [(SESS, i) for i in self.turn_msgs]

    async def verify(self, http, logs, *, final: bool) -> None:
        h = self.harness
        present = mine(logs[SESS], self.agent_id)
        for msg_id, turn in self.turn_msgs.items():
            expect(msg_id in present, f"{self.name}: message of acknowledged turn {turn} lost")
        extra = set(present) - set(self.turn_msgs)
        pending_msg = self.pending[2]["actions"][-1]["append"]["message"]["msg_id"] if self.pending else None
        if not final:
            expect(extra <= ({pending_msg} if pending_msg else set()), f"{self.name}: unintended messages")
        else:
            expect(not extra, f"{self.name}: unintended messages {sorted(extra)[:5]}")
        if self.session_id is None:
            expect(final is False and self.pending is not None, f"{self.name}: no session")
            return
        r = await h.call(http, "GET", f"/v1/session/{self.session_id}", self.token, ungated=True)
        expect(r.status_code == 200, f"{self.name}: describe {r.status_code} {r.text}")
        turns = r.json()["turns"]
        acked = len(self.tokens)
        if not final:
            if self.pending is not None:
                h.stats.pending_at_crash += 1
            expect(turns in (acked, acked + 1), f"{self.name}: {turns} turns committed, {acked} acknowledged")
            if turns == acked + 1:
                expect(self.pending is not None and self.pending[0] == turns, f"{self.name}: a turn nobody sent")
                self.expect_replay = True
                h.stats.committed_unacked += 1
            return
        expect(turns == acked, f"{self.name}: {turns} turns committed, {acked} acknowledged")
        path = f"/v1/session/{self.session_id}/message"
        # Every earlier token is stale, the last one works (exactly once).
        for old in self.tokens[:-1][-5:]:
            r = await h.call(http, "POST", path, self.token, json={}, headers={"x-continuation-token": old})
            expect(r.status_code == 409 and r.json()["error"]["code"] == "stale_token",
                   f"{self.name}: an old token answered {r.status_code} {r.text}")
        self.pending = (acked + 1, f"{self.name}-final", {"actions": [{"append": {"channel": SESS, "message": {
            "type": "note", "body": f"{self.name} final", "msg_id": new_ulid()}}}]}, self.tokens[-1])
        await self.step(http)
        r = await h.call(http, "POST", path, self.token, json={}, headers={"x-continuation-token": self.tokens[-2]})
        expect(r.status_code == 409 and r.json()["error"]["code"] == "stale_token",
               f"{self.name}: the consumed token answered {r.status_code}")
        h.stats.verified += acked + 1


def make_clients(harness: Harness) -> list[Client]:
    kinds = {"append": Appender, "keyed": KeyedAppender, "claim": Claimer, "artifact": ArtifactClient,
             "session": SessionClient}
    return [kinds[name.split("-")[0]](harness, name) for name in IDENTITIES]


# -- entry points ----------------------------------------------------------------------


def summary(harness: Harness) -> str:
    s = harness.stats
    acked = " ".join(f"{k}={v}" for k, v in sorted(s.acked.items()))
    replays = " ".join(f"{k}={v}" for k, v in sorted(s.replays.items()))
    return (
        f"crash-harness: OK backend={harness.backend} kills={s.kills} operations={s.operations()} "
        f"verified={s.verified} pending_at_crash={s.pending_at_crash} committed_unacked={s.committed_unacked} "
        f"replays={sum(s.replays.values())} requests={s.requests} transport_errors={s.transport_errors} "
        f"unavailable_503={s.unavailable_503} contended={s.contended} turn_in_flight={s.in_flight_409} "
        f"downtime_s={s.downtime_s:.1f} elapsed_s={harness.elapsed:.1f} seed={harness.seed} acked[{acked}] replayed[{replays}]"
    )


def run(kills: int, backend: str, *, seed: int | None = None, database_url: str | None = None,
        workdir: Path | None = None, min_window: float = 0.3, max_window: float = 1.8,
        log=print) -> Harness:
    """Run the harness (blocking, its own trio run); returns it with its stats."""
    seed = random.randrange(1 << 30) if seed is None else seed
    with ExitStack() as stack:
        if workdir is None:
            workdir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="parley-crash-")))
        if database_url is None:
            database_url = stack.enter_context(database(backend, workdir))
        harness = Harness(database_url, workdir, kills=kills, seed=seed, backend=backend,
                          min_window=min_window, max_window=max_window, log=log)
        try:
            trio.run(harness.run)
        finally:
            harness.close()
    return harness


def first_violation(exc: BaseException) -> Violation | None:
    """The Violation in ``exc`` (trio wraps task errors in exception groups)."""
    if isinstance(exc, Violation):
        return exc
    if isinstance(exc, BaseExceptionGroup):
        for inner in exc.exceptions:
            found = first_violation(inner)
            if found is not None:
                return found
    return None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.reliability.crash_harness", description=__doc__.split("\n")[0])
    parser.add_argument("--kills", type=int, default=5)
    parser.add_argument("--backend", choices=["sqlite", "postgres"], default="sqlite")
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--database-url", default=None, help="an existing (migrated) database instead of a fresh one")
    parser.add_argument("--min-window", type=float, default=0.3, help="least seconds of load between kills")
    parser.add_argument("--max-window", type=float, default=1.8, help="most seconds of load between kills")
    args = parser.parse_args(argv)
    try:
        harness = run(args.kills, args.backend, seed=args.seed, database_url=args.database_url,
                      min_window=args.min_window, max_window=args.max_window)
    except BaseException as exc:
        violation = first_violation(exc)
        if violation is None:
            raise
        print(f"crash-harness: FAILED {violation}", flush=True)
        return 1
    print(summary(harness), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
