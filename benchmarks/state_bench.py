"""State benchmarks: activation, journal replay, restart-to-ready, memory.

    python benchmarks/state_bench.py [activation|replay|restart|memory|all ...] [--quick]
                                     [--backend sqlite|postgres|both | --postgres]
                                     [--postgres-url URL] [--events N]

Scenarios (SQLite is a temp file; Postgres is a fresh schema ``state_<hex>`` in
the database of ``--postgres-url``, dropped afterwards):

* ``activation``  one channel of 10,000 messages (interleaved with 40,000
  events of 49 other channels). A fresh ``parley serve`` process per case; the
  web stack and the read route are warmed on another channel, then the first
  ``POST /channels/act/read`` (activation: latest snapshot + tail replay) is
  timed against the median of 20 warm reads of the same page. Without a
  snapshot (the snapshot row is deleted first) and with the one the previous
  process saved when it passivated the channel at shutdown. Every case reads
  the whole channel back and checks it equals what was written. Target:
  cold activation <= 100 ms. An in-process breakdown (snapshot load, stream
  read, fold) is printed too.
* ``replay``      a journal of 1,000,000 events (1,000 channels x 999 messages
  + their ``channel_created``, positions randomly interleaved across the
  channels, as live traffic would be), bulk-loaded with the NDJSON import of
  ``parley journal import``. Folding every channel stream with the domain fold
  (``parley.domain.channel.apply``) is timed directly, reading with
  ``parley.journal.queries.iter_stream_rows``, and through
  ``parley.replay.replay`` (what ``parley journal replay`` runs) in one
  process (``--workers 1``) and in two (``--workers 2``: stream ranges folded
  by this process and a spawned one; "oth cpu" counts the workers as this
  process). Every replayed stream must equal what the generator wrote (seq,
  head and a SHA-256 over its messages) and the two-worker report must equal
  the one-process report. Target: >= 200,000 events/s.
* ``restart``     restart-to-ready: from spawning ``parley serve`` to the first
  ``GET /readyz`` 200, on the same 1,000,000-event journal (three restarts,
  median), against an empty journal (the fixed cost of Python, imports and
  migrations). After the first restart ``GET /channels`` must list every
  channel with its exact head. The start-up read models are timed in-process
  too. Target: <= 5 s.
* ``memory``      RSS of the server (``VmRSS``; ``VmHWM`` is the peak) on a
  fresh database with ``PARLEY_ACTOR_IDLE_SECONDS=2``: at start, after
  100,000 messages written over 100 channels (pipelined WebSocket appends, all
  channels written concurrently, then one small read of each so that all 100
  actors are in memory for the sample),
  once every actor has passivated, then in a new process on the same database
  (100,000 stored messages, no actor), after reading every channel once, and
  after those actors passivated again. Afterwards ``tools.replay`` must find
  every channel's passivation snapshot (the live state) equal to the replayed
  stream.

``--quick`` shrinks every size (a few seconds per scenario). Each scenario
prints a table; the run ends with ONE JSON line holding every figure and the
correctness checks; exit status 1 if a check failed.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import functools
import gc
import hashlib
import os
import platform
import random
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, ".."))
sys.path.insert(0, HERE)

import orjson  # noqa: E402
import sqlalchemy as sa  # noqa: E402
import trio  # noqa: E402

from _harness import DEFAULT_PG, ParleyServer, _Subprocess, load_average, make_tokens, system_busy_seconds, with_search_path  # noqa: E402
from http_bench import BenchFailure, H11Client, _git_commit, finish_report, ms, rnd  # noqa: E402

from parley.domain import channel as rules  # noqa: E402
from parley.domain.identity import Identity  # noqa: E402
from parley.domain.message import stamp  # noqa: E402
from parley.journal import migrate, queries, schema, tools  # noqa: E402
from parley import replay as replaying  # noqa: E402
from parley.journal.engine import make_engine, normalise_url  # noqa: E402
from parley.journal.store import JournalStore, compute_hash  # noqa: E402

SCENARIOS = ("activation", "replay", "restart", "memory")

FULL = {
    "act_messages": 10_000,
    "act_noise_channels": 49,
    "act_noise_messages": 800,
    "act_repeats": 3,
    "act_warm_reads": 20,
    "replay_channels": 1_000,
    "replay_messages": 999,  # + 1 channel_created = 1,000,000 events
    "restart_repeats": 3,
    "mem_channels": 100,
    "mem_messages": 1_000,  # per channel
    "mem_more": 200,  # per channel, the second write wave
    "mem_idle_s": 2,
}
QUICK = {
    "act_messages": 1_000,
    "act_noise_channels": 9,
    "act_noise_messages": 400,
    "act_repeats": 1,
    "act_warm_reads": 5,
    "replay_channels": 20,
    "replay_messages": 999,
    "restart_repeats": 1,
    "mem_channels": 10,
    "mem_messages": 200,
    "mem_more": 40,
    "mem_idle_s": 1,
}
TARGETS = {"activation_ms": 100.0, "replay_events_per_s": 200_000.0, "restart_s": 5.0}
T0_MS = 1_780_000_000_000
READ_PAGE = {"cursor": 0, "limit": 500}


def now_utc() -> str:
    return _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


# -- databases ---------------------------------------------------------------------


class Database:
    """A migrated, empty journal database: a SQLite temp file or a fresh Postgres schema."""

    def __init__(self, backend: str, postgres_url: str | None = None) -> None:
        self.backend = backend
        self._tmp = tempfile.mkdtemp(prefix="parley-state-")
        self._admin = None
        self.schema = None
        if backend == "sqlite":
            self.url = f"sqlite:///{os.path.join(self._tmp, 'state.db')}"
        else:
            base = postgres_url or DEFAULT_PG
            self._admin = sa.create_engine(
                normalise_url(base), poolclass=sa.pool.NullPool, connect_args={"connect_timeout": 3}
            )
            self.schema = f"state_{uuid.uuid4().hex[:16]}"
            with self._admin.begin() as conn:
                conn.execute(sa.text(f'CREATE SCHEMA "{self.schema}"'))
            self.url = with_search_path(base, self.schema)
        migrate.upgrade(self.url)
        self.engine = make_engine(self.url)

    def size_bytes(self) -> int | None:
        if self.backend == "sqlite":
            path = self.url.split(":///", 1)[1]
            return sum(os.path.getsize(p) for p in (path, path + "-wal") if os.path.exists(p))
        with self.engine.connect() as conn:
            return int(conn.execute(
                sa.text("SELECT sum(pg_total_relation_size(c.oid)) FROM pg_class c JOIN pg_namespace n "
                        "ON n.oid = c.relnamespace WHERE n.nspname = :s AND c.relkind = 'r'"),
                {"s": self.schema},
            ).scalar() or 0)

    def delete_snapshots(self) -> None:
        with self.engine.begin() as conn:
            conn.execute(sa.delete(schema.snapshots))

    def snapshot_seqs(self) -> dict[str, int]:
        s = schema.snapshots
        with self.engine.connect() as conn:
            return dict(conn.execute(sa.select(s.c.stream_id, s.c.seq)).all())

    def close(self) -> None:
        import shutil

        try:
            self.engine.dispose()
            if self._admin is not None:
                with self._admin.begin() as conn:
                    conn.execute(sa.text(f'DROP SCHEMA IF EXISTS "{self.schema}" CASCADE'))
                self._admin.dispose()
        finally:
            shutil.rmtree(self._tmp, ignore_errors=True)

    def __enter__(self) -> Database:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class Server(ParleyServer):
    """``parley serve`` on an existing database (the harness's own servers get a fresh one)."""

    def __init__(self, db: Database, *, tokens=None, env: dict[str, str] | None = None) -> None:
        super().__init__(db.backend, tokens=tokens or make_tokens(8), env=env)
        self.fixed_url = db.url
        self.spawned_at = 0.0
        self.banner_at = 0.0

    def start(self) -> str:
        self.database_url = self.fixed_url
        self.env["PARLEY_DATABASE_URL"] = self.fixed_url
        self.spawned_at = time.perf_counter()
        url = _Subprocess.start(self)
        self.banner_at = time.perf_counter()
        return url

    def rss(self) -> dict[str, int]:
        """``VmRSS`` and ``VmHWM`` of the server process in KiB."""
        out = {}
        with open(f"/proc/{self.pid}/status") as f:
            for line in f:
                if line.startswith(("VmRSS:", "VmHWM:")):
                    key, value = line.split(":", 1)
                    out[key] = int(value.split()[0])
        return out


# -- the journal generator ------------------------------------------------------------

_WORDS = "alpha bravo charlie delta echo foxtrot golf hotel india juliet kilo lima mike november oscar".split()


@dataclass
class StreamDigest:
    seq: int = 0
    head: int = 0
    last_hash: str = ""
    sha: Any = field(default_factory=hashlib.sha256)

    def add(self, message: dict[str, Any]) -> None:
        self.head += 1
        self.sha.update(orjson.dumps(message))

    def hexdigest(self) -> str:
        return self.sha.hexdigest()


def messages_digest(messages) -> str:
    h = hashlib.sha256()
    for m in messages:
        h.update(orjson.dumps(m))
    return h.hexdigest()


class JournalGenerator:
    """NDJSON export lines of channel streams, exactly as the server would have journaled them.

    Each message event is made by the domain's own helpers (``anchor``,
    ``fingerprint``, ``_stamped``, ``_message_event``: what ``decide_append``
    does after its checks); the channel descriptor comes from
    ``decide_create``. ``ts`` stamps follow the position, like the backbone's
    stamper. Positions are randomly interleaved across channels.
    """

    def __init__(self, seed: int = 7) -> None:
        self.rng = random.Random(seed)
        self.identities = [Identity(f"agent-{i}", f"owner-{i % 8}") for i in range(64)]
        self.digests: dict[str, StreamDigest] = {}
        self.position = 0
        self.events = 0
        self._n = 0

    def descriptor(self, name: str) -> dict[str, Any]:
        from parley.domain.seatbelt import Seatbelt

        belt = Seatbelt(max_posts_per_minute=10**9, global_max_posts_per_minute=10**9, max_creates_per_minute=10**9)
        _slug, descriptor = rules.decide_create(
            name, {"channel": name, "purpose": "state benchmark"}, self.identities[0],
            exists=lambda _s: False, channel_count=0, max_channels=10**9, now_ms=T0_MS,
            stamp=lambda: stamp(T0_MS + self.position, self.position), seatbelt=belt,
        )
        return descriptor

    def _line(self, sid: str, type_: str, data: bytes) -> bytes:
        d = self.digests[sid]
        prev = d.last_hash
        d.seq += 1
        h = compute_hash(prev, sid, d.seq, type_, data)
        d.last_hash = h
        self.events += 1
        return tools.encode_line(self.position, sid, d.seq, type_, data, (T0_MS + self.position) / 1000, prev, h)

    def message_data(self, channel: str) -> dict[str, Any]:
        self._n += 1
        n = self._n
        ident = self.identities[n % len(self.identities)]
        words = " ".join(self.rng.choice(_WORDS) for _ in range(4 + n % 24))
        body = {"type": "note", "msg_id": f"01J{n:023d}", "body": f"{channel} update {n}: {words}"}
        message = rules.anchor(body, ident)
        fp = rules.fingerprint("append", message)
        _type, data = rules._message_event(rules._stamped(message, stamp(T0_MS + self.position, self.position)), fp, None)
        return data

    def lines(self, plan: list[tuple[str, int]]) -> Iterator[bytes]:
        """``plan``: (channel, messages). Creates first, then messages in random channel order."""
        for name, _count in plan:
            self.position += 1
            sid = f"channel:{name}"
            self.digests[sid] = StreamDigest()
            yield self._line(sid, "channel_created", orjson.dumps({"descriptor": self.descriptor(name)}))
        remaining = [[f"channel:{name}", count] for name, count in plan if count > 0]
        while remaining:
            k = self.rng.randrange(len(remaining))
            item = remaining[k]
            sid = item[0]
            item[1] -= 1
            if item[1] == 0:
                remaining[k] = remaining[-1]
                remaining.pop()
            self.position += 1
            data = self.message_data(sid.split(":", 1)[1])
            self.digests[sid].add(data["message"])
            yield self._line(sid, "message", orjson.dumps(data))


def build_journal(db: Database, plan: list[tuple[str, int]], seed: int = 7) -> tuple[JournalGenerator, dict[str, Any]]:
    gen = JournalGenerator(seed)
    store = JournalStore(db.engine)
    t0 = time.perf_counter()
    result = tools.import_events(store, gen.lines(plan), source="state_bench")
    elapsed = time.perf_counter() - t0
    with db.engine.begin() as conn:
        if db.backend == "postgres":
            conn.exec_driver_sql("ANALYZE events")
        else:  # fold the import's WAL into the database file, as a live server's checkpoints would
            conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
    info = {
        "events": result.events,
        "streams": result.streams,
        "build_s": rnd(elapsed, 1),
        "build_events_per_s": rnd(result.events / elapsed, 0),
        "db_bytes": db.size_bytes(),
    }
    return gen, info


# -- small HTTP helpers -----------------------------------------------------------------


async def timed(client: H11Client, method: str, path: str, body: Any = None) -> tuple[float, int, bytes]:
    raw = None if body is None else orjson.dumps(body)
    t0 = time.perf_counter()
    status, data = await client.request(method, path, raw)
    return time.perf_counter() - t0, status, data


async def read_all_messages(client: H11Client, channel: str) -> list[dict[str, Any]]:
    cursor, out = 0, []
    while True:
        status, body = await client.request("POST", f"/channels/{channel}/read", orjson.dumps({"cursor": cursor, "limit": 500}))
        if status != 200:
            raise BenchFailure(f"read of {channel} answered {status}: {body[:200]!r}")
        page = orjson.loads(body)
        if not page["messages"]:
            return out
        out.extend(page["messages"])
        cursor = page["cursor"]


async def list_heads(client: H11Client) -> dict[str, int]:
    status, body = await client.request("GET", "/channels")
    if status != 200:
        raise BenchFailure(f"GET /channels answered {status}")
    return {c["channel"]: c["head"] for c in orjson.loads(body)["channels"]}


async def metric(client: H11Client, name: str) -> float | None:
    status, body = await client.request("GET", "/metrics")
    if status != 200:
        return None
    for line in body.decode().splitlines():
        if line.startswith(name):
            return float(line.rsplit(" ", 1)[1])
    return None


class OtherCpu:
    """CPU% of everything on the machine except this process and the server (noise)."""

    def __init__(self, server: _Subprocess | None = None) -> None:
        self.server = server

    def __enter__(self):
        self.t0 = time.perf_counter()
        self.m0 = system_busy_seconds()
        self.c0 = time.process_time()
        self.s0 = self.server.cpu_seconds() if self.server is not None and self.server.alive() else 0.0
        return self

    def __exit__(self, *exc) -> None:
        wall = time.perf_counter() - self.t0
        mine = time.process_time() - self.c0
        srv = (self.server.cpu_seconds() - self.s0) if self.server is not None and self.server.alive() else 0.0
        self.wall = wall
        self.pct = round(max(0.0, 100 * (system_busy_seconds() - self.m0 - mine - srv) / wall)) if wall > 0 else None


# -- scenario: activation -----------------------------------------------------------------


def activation_breakdown(db: Database, stream: str) -> dict[str, Any]:
    """In-process: the steps of ChannelActor.activate, timed one by one (best of 3).

    ``fold_stream_ms`` is the tail read + fold as activate does it now
    (``queries.fold_stream``); ``read_stream_ms`` + ``fold_ms`` is how it was
    done before (``JournalStore.read_stream``, then ``apply`` per StoredEvent).
    """
    store = JournalStore(db.engine)
    out: dict[str, Any] = {}

    def best(fn) -> tuple[float, Any]:
        times, value = [], None
        for _ in range(3):
            t0 = time.perf_counter()
            value = fn()
            times.append(time.perf_counter() - t0)
        return ms(min(times)), value

    out["load_snapshot_ms"], snapshot = best(lambda: store.load_snapshot(stream))
    name = stream.split(":", 1)[1]

    def base() -> rules.ChannelState:
        return rules.from_snapshot(snapshot.data) if snapshot is not None else rules.ChannelState(name)

    out["from_snapshot_ms"], state = best(base)
    after = state.seq
    if hasattr(queries, "fold_stream"):
        fresh = iter([base() for _ in range(3)])
        out["fold_stream_ms"], _n = best(lambda: queries.fold_stream(db.engine, stream, after, functools.partial(rules.apply, next(fresh))))
    else:
        out["fold_stream_ms"] = None
    out["read_stream_ms"], events = best(lambda: store.read_stream(stream, after))

    fresh_states = iter([base() for _ in range(3)])

    def fold() -> None:
        st = next(fresh_states)
        for event in events:
            rules.apply(st, event.type, event.data)

    out["fold_ms"], _ = best(fold)
    out["tail_events"] = len(events)
    return out


async def cold_read(server: Server, channel: str, warm_channel: str, warm_reads: int, expected_sha: str) -> dict[str, Any]:
    client = H11Client(server.url)
    try:
        # Warm the connection, the web stack, the read route and the actor code
        # paths on another (small) channel first.
        for _ in range(3):
            await timed(client, "POST", f"/channels/{warm_channel}/read", READ_PAGE)
        cold, status, body = await timed(client, "POST", f"/channels/{channel}/read", READ_PAGE)
        if status != 200:
            raise BenchFailure(f"cold read answered {status}: {body[:200]!r}")
        warm = []
        for _ in range(warm_reads):
            dt, status, _ = await timed(client, "POST", f"/channels/{channel}/read", READ_PAGE)
            warm.append(dt)
        messages = await read_all_messages(client, channel)
    finally:
        await client.aclose()
    warm_med = statistics.median(warm)
    return {
        "cold_ms": ms(cold),
        "warm_median_ms": ms(warm_med),
        "activation_ms": ms(cold - warm_med),
        "messages": len(messages),
        "equal": messages_digest(messages) == expected_sha,
    }


def scenario_activation(backend: str, sizes: dict[str, Any], args) -> dict[str, Any]:
    out: dict[str, Any] = {"messages": sizes["act_messages"]}
    plan = [("act", sizes["act_messages"])] + [(f"noise-{k}", sizes["act_noise_messages"]) for k in range(sizes["act_noise_channels"])]
    with Database(backend, args.postgres_url) as db:
        gen, out["journal"] = build_journal(db, plan)
        digest = gen.digests["channel:act"]
        expected = digest.hexdigest()
        runs: dict[str, list[dict[str, Any]]] = {"no_snapshot": [], "snapshot": []}
        snapshot_seqs = []
        for _r in range(sizes["act_repeats"]):
            for case in ("no_snapshot", "snapshot"):
                if case == "no_snapshot":
                    db.delete_snapshots()
                elif "channel:act" not in db.snapshot_seqs():
                    raise BenchFailure("no snapshot of channel:act after the server passivated it")
                with Server(db) as server, OtherCpu(server) as oth:
                    r = trio.run(cold_read, server, "act", "noise-0", sizes["act_warm_reads"], expected)
                r["other_cpu_pct"] = oth.pct
                runs[case].append(r)
                snapshot_seqs.append(db.snapshot_seqs().get("channel:act"))
        for case, rs in runs.items():
            rs.sort(key=lambda r: r["cold_ms"])
            med = rs[len(rs) // 2]
            out[case] = {**med, "cold_ms_all": [r["cold_ms"] for r in rs], "all_equal": all(r["equal"] for r in rs)}
        out["snapshot_seq"] = snapshot_seqs[-1]
        out["expected_seq"] = digest.seq
        db.delete_snapshots()
        out["breakdown_no_snapshot"] = activation_breakdown(db, "channel:act")
        store = JournalStore(db.engine)
        # a snapshot like the one the server saves, for the in-process breakdown
        state = rules.ChannelState("act")
        for event in store.read_stream("channel:act"):
            rules.apply(state, event.type, event.data)
        store.save_snapshot("channel:act", state.seq, rules.to_snapshot(state))
        out["breakdown_snapshot"] = activation_breakdown(db, "channel:act")
        out["snapshot_bytes"] = len(orjson.dumps(rules.to_snapshot(state)))
    out["checks"] = {
        "read_back_equals_written": out["no_snapshot"]["all_equal"] and out["snapshot"]["all_equal"],
        "snapshot_saved_at_passivation": out["snapshot_seq"] == out["expected_seq"],
    }
    out["meets_target"] = max(out["no_snapshot"]["cold_ms"], out["snapshot"]["cold_ms"]) <= TARGETS["activation_ms"]
    return out


def print_activation(backend: str, r: dict[str, Any]) -> None:
    j = r["journal"]
    print(f"\nactivation [{backend}] channel of {r['messages']:,} messages in a {j['events']:,}-event journal "
          f"(built in {j['build_s']} s); fresh server per case; target <= {TARGETS['activation_ms']:.0f} ms")
    print(f"  {'case':<14} {'cold ms':>8} {'warm ms':>8} {'activation ms':>14} {'all cold ms':<28} {'read back ok':>12} {'oth cpu':>7}")
    for case in ("no_snapshot", "snapshot"):
        c = r[case]
        print(f"  {case:<14} {c['cold_ms']:>8.1f} {c['warm_median_ms']:>8.2f} {c['activation_ms']:>14.1f} "
              f"{str(c['cold_ms_all']):<28} {str(c['all_equal']):>12} {str(c['other_cpu_pct']) + '%':>7}")
    for case in ("no_snapshot", "snapshot"):
        b = r["breakdown_" + case]
        print(f"  in-process {case:<12}: load_snapshot {b['load_snapshot_ms']} ms, from_snapshot {b['from_snapshot_ms']} ms, "
              f"tail of {b['tail_events']} events: queries.fold_stream {b['fold_stream_ms']} ms "
              f"(before: read_stream {b['read_stream_ms']} ms + fold {b['fold_ms']} ms)")
    print(f"  snapshot: {r['snapshot_bytes']:,} bytes at seq {r['snapshot_seq']} (stream seq {r['expected_seq']})")


# -- scenario: replay ------------------------------------------------------------------------

_DATASETS: dict[str, tuple[Database, JournalGenerator, dict[str, Any]]] = {}


def big_journal(backend: str, sizes: dict[str, Any], args) -> tuple[Database, JournalGenerator, dict[str, Any]]:
    """The 1M-event journal, built once per backend and shared by replay and restart."""
    if backend not in _DATASETS:
        db = Database(backend, args.postgres_url)
        plan = [(f"ch-{k:04d}", sizes["replay_messages"]) for k in range(sizes["replay_channels"])]
        gen, info = build_journal(db, plan)
        _DATASETS[backend] = (db, gen, info)
    return _DATASETS[backend]


def close_datasets() -> None:
    for db, _gen, _info in _DATASETS.values():
        db.close()
    _DATASETS.clear()


def fold_direct(engine, digests: dict[str, StreamDigest]) -> dict[str, Any]:
    """Fold every channel stream with the domain fold, reading with queries.iter_stream_rows."""
    loads = orjson.loads
    apply = rules.apply
    mismatches: list[str] = []
    events = streams = 0
    check_s = 0.0
    state: rules.ChannelState | None = None
    current = None

    def finish(sid: str, st: rules.ChannelState) -> None:
        d = digests.get(sid)
        if d is None or st.seq != d.seq or st.head != d.head or messages_digest(st.messages) != d.hexdigest():
            mismatches.append(sid)

    t0 = time.perf_counter()
    for sid, _seq, type_, data in queries.iter_stream_rows(engine, prefix="channel:"):
        if sid != current:
            if state is not None:
                c0 = time.perf_counter()
                finish(current, state)
                check_s += time.perf_counter() - c0
            current = sid
            state = rules.ChannelState(sid[8:])
            streams += 1
        apply(state, type_, loads(data))
        events += 1
    if state is not None:
        c0 = time.perf_counter()
        finish(current, state)
        check_s += time.perf_counter() - c0
    elapsed = time.perf_counter() - t0 - check_s
    return {
        "events": events,
        "streams": streams,
        "seconds": rnd(elapsed, 2),
        "events_per_s": rnd(events / elapsed, 0),
        "check_s": rnd(check_s, 2),
        "mismatches": mismatches[:10],
        "equal": not mismatches and streams == len(digests),
    }


def read_only_rate(engine) -> dict[str, Any]:
    t0 = time.perf_counter()
    n = 0
    for _row in queries.iter_stream_rows(engine, prefix="channel:"):
        n += 1
    dt = time.perf_counter() - t0
    return {"events": n, "seconds": rnd(dt, 2), "events_per_s": rnd(n / dt, 0)}


class OtherCpuAndChildren(OtherCpu):
    """:class:`OtherCpu` that counts this process's children (the replay workers,
    joined before ``tools.replay`` returns) as this process, not as noise."""

    def __enter__(self):
        self.k0 = children_cpu_seconds()
        return super().__enter__()

    def __exit__(self, *exc) -> None:
        wall = time.perf_counter() - self.t0
        self.children_s = children_cpu_seconds() - self.k0
        self.cpu_s = time.process_time() - self.c0 + self.children_s
        self.wall = wall
        self.pct = round(max(0.0, 100 * (system_busy_seconds() - self.m0 - self.cpu_s) / wall)) if wall > 0 else None


def children_cpu_seconds() -> float:
    import resource

    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    return ru.ru_utime + ru.ru_stime


def tools_replay_rate(engine, workers: int) -> tuple[dict[str, Any], replaying.ReplayReport]:
    """``tools.replay`` as ``parley journal replay --workers N`` runs it, except
    that ``workers > 1`` forks out below its 50,000-event threshold too (so
    that ``--quick``'s 20,000 events exercise the workers; the full journal is
    above it anyway)."""
    with OtherCpuAndChildren() as oth:
        t0 = time.perf_counter()
        report = replaying.replay(engine, workers=workers, min_parallel_events=0 if workers > 1 else replaying.PARALLEL_MIN_EVENTS)
        dt = time.perf_counter() - t0
    counts = report.kinds["channel"]
    return {
        "workers": workers,
        "events": counts.events,
        "streams": counts.streams,
        "seconds": rnd(dt, 2),
        "events_per_s": rnd(counts.events / dt, 0),
        "cpu_s": rnd(oth.cpu_s, 2),
        "ok": report.ok,
        "other_cpu_pct": oth.pct,
    }, report


def scenario_replay(backend: str, sizes: dict[str, Any], args) -> dict[str, Any]:
    db, gen, info = big_journal(backend, sizes, args)
    out: dict[str, Any] = {"journal": info}
    with OtherCpu() as oth:
        out["read_only"] = read_only_rate(db.engine)
    out["read_only"]["other_cpu_pct"] = oth.pct
    with OtherCpu() as oth:
        out["direct"] = fold_direct(db.engine, gen.digests)
    out["direct"]["other_cpu_pct"] = oth.pct
    out["tools_replay"], report = tools_replay_rate(db.engine, 1)
    gc.collect()
    out["tools_replay_workers2"], report2 = tools_replay_rate(db.engine, 2)
    gc.collect()
    counts = report.kinds["channel"]
    out["checks"] = {
        "direct_fold_equals_written": out["direct"]["equal"],
        "tools_replay_ok": report.ok and counts.events == info["events"],
        "tools_replay_workers2_equals_workers1": report2.as_dict() == report.as_dict()
        and report2.kinds["channel"].events == info["events"],
    }
    out["meets_target"] = out["direct"]["events_per_s"] >= TARGETS["replay_events_per_s"]
    out["workers2_meets_target"] = out["tools_replay_workers2"]["events_per_s"] >= TARGETS["replay_events_per_s"]
    return out


def print_replay(backend: str, r: dict[str, Any]) -> None:
    j = r["journal"]
    print(f"\nreplay [{backend}] {j['events']:,} events in {j['streams']:,} channel streams "
          f"(import: {j['build_s']} s, {j['build_events_per_s']:,.0f} ev/s, {(j['db_bytes'] or 0) / 1e6:,.0f} MB); "
          f"target >= {TARGETS['replay_events_per_s']:,.0f} ev/s")
    print(f"  {'path':<44} {'events':>10} {'seconds':>8} {'events/s':>10} {'oth cpu':>7} ok")
    rows = [
        ("read only (queries.iter_stream_rows)", r["read_only"], True),
        ("read + fold (iter_stream_rows + apply)", r["direct"], r["direct"]["equal"]),
        ("tools.replay workers=1 (`--workers 1`)", r["tools_replay"], r["tools_replay"]["ok"]),
        ("tools.replay workers=2 (`--workers 2`)", r["tools_replay_workers2"],
         r["checks"]["tools_replay_workers2_equals_workers1"]),
    ]
    for name, x, ok in rows:
        print(f"  {name:<44} {x['events']:>10,} {x['seconds']:>8.2f} {x['events_per_s']:>10,.0f} {str(x['other_cpu_pct']) + '%':>7} {ok}")
    w1, w2 = r["tools_replay"], r["tools_replay_workers2"]
    print(f"  CPU seconds (this process + replay workers): workers=1 {w1['cpu_s']} s, workers=2 {w2['cpu_s']} s")


# -- scenario: restart ---------------------------------------------------------------------------


async def wait_ready(server: Server, timeout: float = 120.0) -> float:
    """Poll ``GET /readyz`` until 200; the perf_counter time of that answer."""
    deadline = time.perf_counter() + timeout
    while True:
        client = H11Client(server.url)
        try:
            status, _ = await client.request("GET", "/readyz")
        except OSError:
            status = 0
        finally:
            await client.aclose()
        if status == 200:
            return time.perf_counter()
        if time.perf_counter() > deadline:
            raise BenchFailure("server not ready in time")
        await trio.sleep(0.005)


async def directory_heads(server: Server) -> dict[str, int]:
    client = H11Client(server.url)
    try:
        return await list_heads(client)
    finally:
        await client.aclose()


def restart_once(db: Database, check: dict[str, int] | None) -> dict[str, Any]:
    with Server(db) as server, OtherCpu(server) as oth:
        ready_at = trio.run(wait_ready, server)
        r = {
            "ready_s": rnd(ready_at - server.spawned_at, 3),
            "banner_s": rnd(server.banner_at - server.spawned_at, 3),
            "rss_kib": server.rss()["VmRSS"],
        }
        if check is not None:
            heads = trio.run(directory_heads, server)
            r["directory_ok"] = heads == check
    r["other_cpu_pct"] = oth.pct
    return r


def startup_read_models(db: Database) -> dict[str, float]:
    import functools

    from parley.domain import session as S

    out = {}
    for name, fn in (
        ("channel_index", queries.channel_index),
        ("open_sessions", functools.partial(queries.open_sessions, started_type=S.SESSION_STARTED, closed_type=S.SESSION_CLOSED)),
        ("total_artifact_bytes", queries.total_artifact_bytes),
        ("readiness", queries.readiness),
    ):
        t0 = time.perf_counter()
        fn(db.engine)
        out[name + "_ms"] = ms(time.perf_counter() - t0)
    return out


def scenario_restart(backend: str, sizes: dict[str, Any], args) -> dict[str, Any]:
    out: dict[str, Any] = {}
    with Database(backend, args.postgres_url) as empty:
        runs = [restart_once(empty, None) for _ in range(sizes["restart_repeats"])]
    runs.sort(key=lambda r: r["ready_s"])
    out["empty"] = {**runs[len(runs) // 2], "ready_s_all": [r["ready_s"] for r in runs]}
    db, gen, info = big_journal(backend, sizes, args)
    out["journal"] = info
    expected = {sid.split(":", 1)[1]: d.head for sid, d in gen.digests.items()}
    runs = [restart_once(db, expected if i == 0 else None) for i in range(sizes["restart_repeats"])]
    directory_ok = runs[0]["directory_ok"]
    runs.sort(key=lambda r: r["ready_s"])
    out["full"] = {**runs[len(runs) // 2], "ready_s_all": [r["ready_s"] for r in runs]}
    out["read_models"] = startup_read_models(db)
    out["checks"] = {"directory_lists_every_channel_with_its_head": directory_ok}
    out["meets_target"] = out["full"]["ready_s"] <= TARGETS["restart_s"]
    return out


def print_restart(backend: str, r: dict[str, Any]) -> None:
    print(f"\nrestart [{backend}] spawn of `parley serve` -> first GET /readyz 200 (median of {len(r['full']['ready_s_all'])}); "
          f"target <= {TARGETS['restart_s']} s")
    print(f"  {'journal':<22} {'ready s':>8} {'banner s':>9} {'all ready s':<24} {'RSS MiB':>8} {'oth cpu':>7}")
    for name, key in (("empty", "empty"), (f"{r['journal']['events']:,} events", "full")):
        x = r[key]
        print(f"  {name:<22} {x['ready_s']:>8.3f} {x['banner_s']:>9.3f} {str(x['ready_s_all']):<24} {x['rss_kib'] / 1024:>8.1f} {str(x['other_cpu_pct']) + '%':>7}")
    m = r["read_models"]
    print("  start-up read models in-process: " + ", ".join(f"{k[:-3]} {v} ms" for k, v in m.items()))
    print(f"  directory after restart lists every channel with its head: {r['checks']['directory_lists_every_channel_with_its_head']}")


# -- scenario: memory --------------------------------------------------------------------------------


#: Appends in flight per WebSocket (the server runs each in-flight frame as a
#: task; 100 connections x 200 frames held ~130 MB more RSS at the peak).
WS_WINDOW = 32


async def ws_fill(url: str, token: str, channel: str, count: int, tag: str) -> int:
    """Pipelined appends over ``/channels/<c>/ws?tail=0``; returns the number acknowledged 201."""
    from trio_websocket import open_websocket_url

    ws_url = url.replace("http://", "ws://", 1) + f"/channels/{channel}/ws?tail=0"
    ok = 0
    window = trio.Semaphore(WS_WINDOW)
    async with open_websocket_url(ws_url, extra_headers=[("authorization", f"Bearer {token}")]) as ws:
        async with trio.open_nursery() as nursery:

            async def reader() -> None:
                nonlocal ok
                for _ in range(count):
                    frame = orjson.loads(await ws.get_message())
                    if frame.get("type") == "ack" and frame.get("status") == 201:
                        ok += 1
                    window.release()

            nursery.start_soon(reader)
            for n in range(count):
                await window.acquire()
                words = " ".join(_WORDS[(n * k) % len(_WORDS)] for k in range(1, 6 + n % 20))
                body = {"type": "note", "msg_id": f"01K{uuid.uuid4().int % 10**23:023d}", "body": f"{tag} {channel} #{n}: {words}"}
                await ws.send_message(orjson.dumps({"id": n, "append": body}).decode())
    return ok


ACTIVE = 'parley_actors_active{kind="channel"}'


async def read_cycle(server: Server, client: H11Client, channels: list[str], sizes: dict[str, Any], label: str, samples: dict[str, Any]) -> int:
    """Read every channel in full (activating its actor), sample; wait until all passivated, sample."""
    total = 0
    for c in channels:
        total += len(await read_all_messages(client, c))
    await sample_then_passivated(server, client, sizes, label, samples)
    return total


async def sample_then_passivated(server: Server, client: H11Client, sizes: dict[str, Any], label: str, samples: dict[str, Any]) -> None:
    """Sample RSS and active actors as ``label``; wait until every actor passivated, sample again."""
    samples[label] = server.rss()
    samples[label + "_active"] = await metric(client, ACTIVE)
    samples[label + "_passivated_active"] = await wait_passivated(client, sizes)
    await trio.sleep(0.5)  # let the passivation snapshots' memory be released before reading RSS
    samples[label + "_passivated"] = server.rss()


async def write_all(server: Server, channels: list[str], per_channel: int, tag: str) -> int:
    """``per_channel`` pipelined appends to every channel, all channels at once; how many got 201."""
    acked = 0

    async def one(i: int, c: str) -> None:
        nonlocal acked
        got = await ws_fill(server.url, server.tokens[i % len(server.tokens)][0], c, per_channel, tag)
        acked += got

    async with trio.open_nursery() as nursery:
        for i, c in enumerate(channels):
            nursery.start_soon(one, i, c)
    return acked


async def touch_all(client: H11Client, channels: list[str]) -> None:
    """A channel whose writes ended early may have passivated already: one small
    read of each puts every actor in memory for the next sample."""
    for c in channels:
        await client.request("POST", f"/channels/{c}/read", orjson.dumps({"cursor": 0, "limit": 1}))


async def memory_fill(server: Server, sizes: dict[str, Any], channels: list[str]) -> dict[str, Any]:
    client = H11Client(server.url, server.tokens[0][0])
    samples: dict[str, Any] = {}
    try:
        samples["start"] = server.rss()
        for c in channels:
            status, body = await client.request("POST", "/channels", orjson.dumps({"channel": c, "purpose": "memory"}))
            if status != 201:
                raise BenchFailure(f"create {c}: {status} {body[:200]!r}")
        samples["channels_created"] = server.rss()
        t0 = time.perf_counter()
        acked = first = await write_all(server, channels, sizes["mem_messages"], "mem")
        write_s = time.perf_counter() - t0
        await touch_all(client, channels)
        await sample_then_passivated(server, client, sizes, "after_writes", samples)
        reread = await read_cycle(server, client, channels, sizes, "p1_reread", samples)
        # A second, smaller write wave: does writing again reuse that memory?
        acked += await write_all(server, channels, sizes["mem_more"], "more")
        await touch_all(client, channels)
        await sample_then_passivated(server, client, sizes, "p1_write2", samples)
        heads = await list_heads(client)
    finally:
        await client.aclose()
    return {"samples": samples, "acked": acked, "write_s": rnd(write_s, 2), "write_rate": rnd(first / write_s, 0),
            "heads": heads, "reread": reread}


async def wait_passivated(client: H11Client, sizes: dict[str, Any]) -> float | None:
    deadline = time.perf_counter() + sizes["mem_idle_s"] + 30
    while time.perf_counter() < deadline:
        await trio.sleep(0.5)
        active = await metric(client, ACTIVE)
        if active == 0:
            return active
    return await metric(client, ACTIVE)


async def memory_reread(server: Server, sizes: dict[str, Any], channels: list[str]) -> dict[str, Any]:
    client = H11Client(server.url)
    samples: dict[str, Any] = {}
    try:
        samples["restart_ready"] = server.rss()
        first = await read_cycle(server, client, channels, sizes, "p2_read1", samples)
        second = await read_cycle(server, client, channels, sizes, "p2_read2", samples)
    finally:
        await client.aclose()
    return {"samples": samples, "reads": [first, second]}


def scenario_memory(backend: str, sizes: dict[str, Any], args) -> dict[str, Any]:
    channels = [f"mem-{k:03d}" for k in range(sizes["mem_channels"])]
    per_channel = sizes["mem_messages"] + sizes["mem_more"]
    total = len(channels) * per_channel
    env = {"PARLEY_ACTOR_IDLE_SECONDS": str(sizes["mem_idle_s"])}
    out: dict[str, Any] = {"channels": len(channels), "messages": len(channels) * sizes["mem_messages"],
                           "more_messages": len(channels) * sizes["mem_more"], "idle_s": sizes["mem_idle_s"]}
    with Database(backend, args.postgres_url) as db:
        with Server(db, tokens=make_tokens(16), env=env) as server:
            fill = trio.run(memory_fill, server, sizes, channels)
        with Server(db, tokens=make_tokens(16), env=env) as server:
            reread = trio.run(memory_reread, server, sizes, channels)
        t0 = time.perf_counter()
        report = replaying.replay(db.engine)
        replay_s = time.perf_counter() - t0
        snaps = db.snapshot_seqs()
    samples = {**fill["samples"], **reread["samples"]}
    out.update({"write_s": fill["write_s"], "write_rate": fill["write_rate"], "acked": fill["acked"], "rss": samples})
    counts = report.kinds["channel"]
    out["replay"] = {
        "ok": report.ok,
        "snapshots_compared": counts.snapshots_compared,
        "snapshots_matching": counts.snapshots_matching,
        "seconds": rnd(replay_s, 2),
        "findings": [f"{f.stream_id}: {f.detail}" for f in report.findings[:5]],
    }
    passivated = [k for k in samples if k.endswith("_passivated_active")]
    out["checks"] = {
        "every_append_acknowledged": fill["acked"] == total,
        "heads_exact": all(fill["heads"].get(c) == per_channel for c in channels),
        "reads_complete": fill["reread"] == out["messages"] and reread["reads"] == [total, total],
        "all_actors_passivated": all(samples[k] == 0 for k in passivated),
        "replayed_state_equals_live_snapshots": report.ok
        and counts.snapshots_compared == len(channels) == counts.snapshots_matching
        and all(snaps.get(f"channel:{c}") == per_channel + 1 for c in channels),
    }
    return out


def print_memory(backend: str, r: dict[str, Any]) -> None:
    s = r["rss"]
    n = f"{r['messages']:,}"
    print(f"\nmemory [{backend}] server RSS, {n} messages over {r['channels']} channels "
          f"(pipelined WS appends at {r['write_rate']:,.0f} msgs/s), PARLEY_ACTOR_IDLE_SECONDS={r['idle_s']}")
    print(f"  {'point':<56} {'RSS MiB':>8} {'peak MiB':>9} {'actors':>7}")
    rows = [
        ("process 1: fresh server, empty journal", "start", None),
        (f"  {r['channels']} channels created", "channels_created", None),
        (f"  after {n} messages written (all actors active)", "after_writes", "after_writes_active"),
        ("  after every actor passivated", "after_writes_passivated", "after_writes_passivated_active"),
        ("  after reading every channel again", "p1_reread", "p1_reread_active"),
        ("  after those actors passivated", "p1_reread_passivated", "p1_reread_passivated_active"),
        (f"  after {r['more_messages']:,} more messages written", "p1_write2", "p1_write2_active"),
        ("  after those actors passivated", "p1_write2_passivated", "p1_write2_passivated_active"),
        (f"process 2: new server, {r['messages'] + r['more_messages']:,} stored messages", "restart_ready", None),
        ("  after reading every channel", "p2_read1", "p2_read1_active"),
        ("  after those actors passivated", "p2_read1_passivated", "p2_read1_passivated_active"),
        ("  after reading every channel again", "p2_read2", "p2_read2_active"),
        ("  after those actors passivated", "p2_read2_passivated", "p2_read2_passivated_active"),
    ]
    for name, key, active in rows:
        x = s[key]
        a = s.get(active) if active else None
        print(f"  {name:<56} {x['VmRSS'] / 1024:>8.1f} {x['VmHWM'] / 1024:>9.1f} {'' if a is None else int(a):>7}")
    rp = r["replay"]
    print(f"  tools.replay afterwards: ok={rp['ok']}, {rp['snapshots_matching']}/{rp['snapshots_compared']} passivation snapshots "
          f"equal the replayed streams ({rp['seconds']} s)")


# -- driver ------------------------------------------------------------------------------------------

RUNNERS = {
    "activation": (scenario_activation, print_activation),
    "replay": (scenario_replay, print_replay),
    "restart": (scenario_restart, print_restart),
    "memory": (scenario_memory, print_memory),
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("scenario", choices=[*SCENARIOS, "all"], nargs="*", default=["all"], help="one or more (default all)")
    parser.add_argument("--quick", action="store_true", help="tiny sizes, a few seconds per scenario")
    parser.add_argument("--backend", choices=["sqlite", "postgres", "both"], default=None)
    parser.add_argument("--postgres", action="store_true", help="same as --backend postgres")
    parser.add_argument("--postgres-url", default=None, help="base URL (a fresh schema is made in it)")
    parser.add_argument("--events", type=int, default=None, help="events of the replay/restart journal (rounded to 1,000 per channel)")
    args = parser.parse_args(argv)
    backend = args.backend or ("postgres" if args.postgres else "sqlite")
    backends = ["sqlite", "postgres"] if backend == "both" else [backend]
    sizes = dict(QUICK if args.quick else FULL)
    if args.events:
        sizes["replay_channels"] = max(1, args.events // (sizes["replay_messages"] + 1))
    names = list(SCENARIOS) if "all" in args.scenario else list(dict.fromkeys(args.scenario))

    report: dict[str, Any] = {
        "bench": "state",
        "date": now_utc(),
        "machine": f"{os.cpu_count()} vCPU, {platform.system()} {platform.release()}, Python {platform.python_version()}",
        "commit": _git_commit(),
        "quick": args.quick,
        "backends": backends,
        "targets": TARGETS,
        "load_average_before": load_average(),
        "scenarios": {},
        "checks": {},
    }
    failures: list[str] = []
    started = time.perf_counter()
    try:
        for name in names:
            fn, show = RUNNERS[name]
            result: dict[str, Any] = {}
            t0 = time.perf_counter()
            for b in backends:
                try:
                    result[b] = fn(b, sizes, args)
                    show(b, result[b])
                except BenchFailure as exc:
                    failures.append(f"{name}[{b}]: {exc}")
                    result[b] = {"error": str(exc)}
                    print(f"\n!!! {name} [{b}] FAILED: {exc}", file=sys.stderr)
                for check, ok in result[b].get("checks", {}).items():
                    report["checks"][f"{name}.{b}.{check}"] = ok
                    if not ok:
                        failures.append(f"{name}.{b}.{check}")
            result["wall_s"] = round(time.perf_counter() - t0, 1)
            report["scenarios"][name] = result
    finally:
        close_datasets()
    return finish_report(report, failures, started)


if __name__ == "__main__":
    sys.exit(main())
