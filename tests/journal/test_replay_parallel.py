"""``replay(workers=N)`` (:mod:`parley.replay`): streams cut into ``stream_id`` ranges folded by
spawned processes give the report of the single-process replay, on real
SQLite files and real Postgres schemas.

The journals are written straight into ``events`` (replay folds ``data``; it
does not check hashes, ``parley journal verify`` does), so a 60,000-event
journal takes a fraction of a second to build.
"""

from __future__ import annotations

import sqlite3

import orjson
import pytest
import sqlalchemy as sa

from parley import replay as replaying
from parley.domain import channel
from parley.domain import session_state as ss
from parley.domain.identity import Identity
from parley.journal import JournalUnavailable, queries, schema, tools
from parley.journal.engine import make_engine
from tests.cli import run

E = schema.events
IDENT = Identity("a1", "alice")
#: Channel ids whose order differs between byte order and a linguistic
#: collation (Postgres): the ranges must follow the database's own order.
CHANNELS = ["c-00", "c.01", "c_02", "C03", "c04", "c-05", "b06", "z07", "a08", "c09", "m10", "c11"]
SESSIONS = ["ses_00", "ses_01", "ses_02", "ses_03", "ses_04", "ses_05"]


def _message(n: int) -> dict:
    return {"type": "note", "body": f"hello {n} \u2603", "msg_id": f"m{n}", "agent_id": "a1",
            "owner": "alice", "v": 1, "ts": f"2025-01-01T00:00:00.000Z#{n}"}  # fmt: skip


def channel_events(name: str, messages: int) -> list[tuple[str, dict]]:
    out = [("channel_created", {"descriptor": {"channel": name, "kind": "ephemeral", "created_by": "alice"}})]
    out += [("message", {"message": _message(n), "fp": f"f{n}"}) for n in range(messages)]
    return out


def session_events(sid: str, turns: int) -> list[tuple[str, dict]]:
    out = [(ss.SESSION_STARTED, ss.session_started_data(sid, IDENT, handler="inbox", ts="t0", lease_epoch=1))]
    for t in range(1, turns + 1):
        out.append((ss.TURN_COMMITTED, ss.turn_committed_data(
            turn=t, token_digest=f"d{t}", subscriptions={"c-00": t}, response={"n": t}, ts=f"t{t}", lease_epoch=1,
        )))  # fmt: skip
    return out


def build(url: str, *, messages: int = 30, turns: int = 4, big: int = 0) -> dict[str, list[tuple[str, dict]]]:
    """Channels, sessions and streams replay skips, interleaved by position.

    ``big`` adds that many messages to each of four more channels (``big-*``).
    """
    streams: dict[str, list[tuple[str, dict]]] = {}
    for i, name in enumerate(CHANNELS):
        streams[f"channel:{name}"] = channel_events(name, messages + i)
    for i, sid in enumerate(SESSIONS):
        streams[f"session:{sid}"] = session_events(sid, turns + i)
    for k in range(4 if big else 0):
        streams[f"channel:big-{k}"] = channel_events(f"big-{k}", big)
    others = {"tokens": [("token_minted", {"digest": "00" * 32})] * 5, "misc": [("x", {"a": 1})] * 3,
              "d:mid": [("x", {"a": 2})] * 4}  # fmt: skip
    rows = []
    seqs = {sid: 0 for sid in [*streams, *others]}
    queues = {sid: list(evs) for sid, evs in {**streams, **others}.items()}
    while queues:  # round robin: positions interleave across the streams
        for sid in list(queues):
            type_, data = queues[sid].pop(0)
            seqs[sid] += 1
            rows.append({"stream_id": sid, "seq": seqs[sid], "type": type_, "data": orjson.dumps(data).decode(),
                         "recorded_at": 1.0, "prev_hash": "x", "hash": "y"})  # fmt: skip
            if not queues[sid]:
                del queues[sid]
    engine = make_engine(url)
    try:
        with engine.begin() as conn:
            for i in range(0, len(rows), 10_000):
                conn.execute(E.insert(), rows[i : i + 10_000])
    finally:
        engine.dispose()
    return streams


def snapshot_of(kind_events: list[tuple[str, dict]], sid: str, upto: int) -> dict:
    if sid.startswith("session:"):
        return ss.to_snapshot(ss.fold(kind_events[:upto]))
    state = channel.ChannelState(sid.split(":", 1)[1])
    for type_, data in kind_events[:upto]:
        channel.apply(state, type_, data)
    return orjson.loads(orjson.dumps(channel.to_snapshot(state)))


def put_snapshot(url: str, sid: str, seq: int, data: dict) -> None:
    engine = make_engine(url)
    try:
        with engine.begin() as conn:
            conn.execute(schema.snapshots.insert(), {"stream_id": sid, "seq": seq, "data": orjson.dumps(data).decode(),
                                                     "recorded_at": 1.0})  # fmt: skip
    finally:
        engine.dispose()


@pytest.fixture
def engine(migrated_url):
    e = make_engine(migrated_url)
    yield e
    e.dispose()


def replayed_events(report: replaying.ReplayReport) -> int:
    return sum(c.events for c in report.kinds.values())


def test_stream_heads_lists_every_stream_in_database_order(migrated_url, engine):
    streams = build(migrated_url, messages=3, turns=1)
    heads = queries.stream_heads(engine)
    with engine.connect() as conn:
        expected = conn.execute(
            sa.select(E.c.stream_id, sa.func.count()).group_by(E.c.stream_id).order_by(E.c.stream_id)
        ).all()
    assert heads == [(sid, n) for sid, n in expected]
    assert len(heads) == len(streams) + 3
    assert queries.stream_heads(make_engine(migrated_url)) == heads


def test_stream_heads_of_an_empty_journal(engine):
    assert queries.stream_heads(engine) == []
    assert replaying.replay_ranges(engine, 8) == [(None, None)]


def test_ranges_cover_every_stream_exactly_once(migrated_url, engine):
    streams = build(migrated_url)
    total = sum(len(evs) for evs in streams.values())
    ranges = replaying.replay_ranges(engine, 8)
    assert len(ranges) >= 6
    assert ranges[0][0] is None and ranges[-1][1] is None
    assert all(a[1] == b[0] is not None for a, b in zip(ranges, ranges[1:]))
    seen: list[str] = []
    events = 0
    for lo, hi in ranges:
        mine: list[str] = []
        for sid, seq, _type, _data in queries.iter_stream_range(
            engine, start=lo, stop=hi, where=replaying.replay_filter(None), chunk=7
        ):
            if not mine or mine[-1] != sid:
                assert seq == 1, (sid, seq)  # a stream is never split between ranges
                mine.append(sid)
            events += 1
        assert mine, (lo, hi)  # no empty range
        seen += mine
    assert sorted(seen) == sorted(streams) and len(seen) == len(set(seen))
    assert events == total
    # one range per requested part at most, and a journal below min_events is one range
    assert len(replaying.replay_ranges(engine, 2)) == 2
    assert replaying.replay_ranges(engine, 8, min_events=total + 1) == [(None, None)]


@pytest.mark.parametrize("local_worker", [True, False], ids=["with-parent", "children-only"])
def test_parallel_report_equals_the_single_process_one(migrated_url, engine, local_worker):
    streams = build(migrated_url)
    total = sum(len(evs) for evs in streams.values())
    general, ses = "channel:c-05", "session:ses_03"
    put_snapshot(migrated_url, general, 10, snapshot_of(streams[general], general, 10))
    put_snapshot(migrated_url, ses, 3, snapshot_of(streams[ses], ses, 3))
    odd = snapshot_of(streams["channel:z07"], "channel:z07", 5)
    odd["archived"] = True
    put_snapshot(migrated_url, "channel:z07", 5, odd)
    put_snapshot(migrated_url, "channel:c-ghost", 1, odd)  # inside a range, no events
    put_snapshot(migrated_url, "session:zz_ghost", 1, odd)  # after the last stream

    single = replaying.replay(engine)
    steps: list[int] = []
    parallel = replaying.replay(engine, workers=3, min_parallel_events=0, chunk=50, advance=steps.append,
                            local_worker=local_worker)  # fmt: skip
    assert parallel.as_dict() == single.as_dict()
    assert replayed_events(parallel) == total and sum(steps) == total
    kinds = parallel.as_dict()["kinds"]
    assert kinds["channel"]["streams"] == len(CHANNELS) and kinds["session"]["streams"] == len(SESSIONS)
    assert (kinds["channel"]["snapshots_compared"], kinds["channel"]["snapshots_matching"]) == (2, 1)
    assert (kinds["session"]["snapshots_compared"], kinds["session"]["snapshots_matching"]) == (1, 1)
    findings = [(f.stream_id, f.detail) for f in parallel.findings]
    assert findings == [
        ("channel:z07", "snapshot at seq 5: $.archived: snapshot true != replay false"),
        ("channel:c-ghost", "a snapshot exists but the stream has no events"),
        ("session:zz_ghost", "a snapshot exists but the stream has no events"),
    ]


def test_a_corrupt_event_is_found_once(migrated_url, engine):
    build(migrated_url)
    with engine.begin() as conn:
        conn.execute(sa.update(E).where(E.c.stream_id == "channel:c_02", E.c.seq == 7).values(data='{"nope": 1}'))
        conn.execute(sa.update(E).where(E.c.stream_id == "session:ses_04", E.c.seq == 2).values(data="not json"))
    single = replaying.replay(engine)
    for local_worker in (True, False):
        parallel = replaying.replay(engine, workers=2, min_parallel_events=0, chunk=40, local_worker=local_worker)
        assert parallel.as_dict() == single.as_dict()
        assert [(f.stream_id, f.kind) for f in parallel.findings] == [
            ("channel:c_02", "fold_error"),
            ("session:ses_04", "fold_error"),
        ]
        assert parallel.findings[0].detail.startswith("seq 7 (message): KeyError")


def test_a_small_journal_stays_in_one_process(migrated_url, engine):
    build(migrated_url, messages=2, turns=1)
    assert replaying.replay_ranges(engine, 8, min_events=replaying.PARALLEL_MIN_EVENTS) == [(None, None)]
    report = replaying.replay(engine, workers=4)
    assert report.ok and report.as_dict() == replaying.replay(engine).as_dict()


def test_a_worker_database_failure_is_one_safe_error(tmp_path):
    """The children open ``engine.url``; here it names an empty file the parent's
    connections (``creator``) do not use, so only the children fail."""
    from parley.journal import migrate

    real = tmp_path / "real.db"
    url = f"sqlite:///{real}"
    migrate.upgrade(url)
    build(url, messages=5, turns=1)
    decoy = tmp_path / "secret-name.db"
    # An empty database already in WAL mode: the children only open it. Left to
    # create it, two children racing to switch a new file to WAL could meet
    # "database is locked" (also one safe line, but not the cause checked here).
    with sqlite3.connect(str(decoy)) as conn:
        conn.execute("PRAGMA journal_mode=WAL")
    conn.close()
    engine = make_engine(f"sqlite:///{decoy}", creator=lambda: sqlite3.connect(str(real), check_same_thread=False))
    try:
        assert replaying.replay(engine).ok  # the parent's own connections work
        with pytest.raises(JournalUnavailable) as info:
            replaying.replay(engine, workers=2, min_parallel_events=0, local_worker=False)
    finally:
        engine.dispose()
    message = str(info.value)
    assert message.startswith("journal database unavailable: OperationalError: no such table")
    assert "\n" not in message and "secret-name" not in message


def test_cli_replay_with_workers_prints_what_one_process_prints(migrated_url):
    """Over PARALLEL_MIN_EVENTS events, so ``--workers 2`` really forks out."""
    streams = build(migrated_url, messages=10, big=replaying.PARALLEL_MIN_EVENTS // 4)
    total = sum(len(evs) for evs in streams.values())
    assert total >= replaying.PARALLEL_MIN_EVENTS
    one = run("journal", "replay", "--database-url", migrated_url, "--workers", "1")
    two = run("journal", "replay", "--database-url", migrated_url, "--workers", "2")
    assert one.exit_code == two.exit_code == 0, (one.stderr, two.stderr)
    assert two.stdout == one.stdout and two.stderr == one.stderr == ""
    assert f"channel  {len(CHANNELS) + 4} streams, {total - sum(len(streams[f'session:{s}']) for s in SESSIONS)} events" in two.stdout
    as_json = orjson.loads(run("journal", "replay", "--database-url", migrated_url, "--json", "--workers", "2").stdout)
    assert sum(k["events"] for k in as_json["kinds"].values()) == total and as_json["ok"] is True


def test_cli_rejects_a_bad_workers_value(migrated_url):
    result = run("journal", "replay", "--database-url", migrated_url, "--workers", "0")
    assert result.exit_code == 2 and "expected 'auto' or a whole number >= 1" in result.stderr
    assert run("journal", "replay", "--database-url", migrated_url, "--workers", "auto").exit_code == 0


def test_a_killed_worker_is_one_error_not_a_hang(sqlite_url):
    """SIGKILL (as the OOM killer would) every worker at the first progress report."""
    import multiprocessing
    import os
    import signal

    from parley.journal import migrate

    migrate.upgrade(sqlite_url)
    build(sqlite_url)
    engine = make_engine(sqlite_url)
    killed: list[int] = []

    def advance(_n: int) -> None:
        for child in multiprocessing.active_children():
            if child.name.startswith("parley-replay-") and child.pid not in killed:
                os.kill(child.pid, signal.SIGKILL)
                killed.append(child.pid)

    try:
        with pytest.raises(tools.ToolError, match=r"^a replay worker process ended unexpectedly \(exit code -9\)$"):
            replaying.replay(engine, workers=2, min_parallel_events=0, chunk=5, advance=advance, local_worker=False)
    finally:
        engine.dispose()
    assert killed and not [c for c in multiprocessing.active_children() if c.name.startswith("parley-replay-")]


@pytest.mark.parametrize("workers", [1, 2])
def test_prefixes_are_case_sensitive(migrated_url, engine, workers):
    # SQLite's LIKE ignores case: "Channel:x" used to reach the channel fold
    # (and crash it with a KeyError) although it is no channel stream.
    streams = build(migrated_url, messages=3, turns=1)
    odd = [("message", {"not": "a channel event"})] * 3
    with engine.begin() as conn:
        conn.execute(E.insert(), [
            {"stream_id": sid, "seq": n, "type": t, "data": orjson.dumps(d).decode(),
             "recorded_at": 1.0, "prev_hash": "x", "hash": "y"}
            for sid in ("Channel:x", "SESSION:y") for n, (t, d) in enumerate(odd, 1)
        ])  # fmt: skip
    report = replaying.replay(engine, workers=workers, min_parallel_events=0)
    assert report.ok, report.findings
    assert replayed_events(report) == sum(len(evs) for evs in streams.values())
    rows = list(queries.iter_stream_rows(engine, prefix="channel:"))
    assert {sid for sid, *_ in rows} == {sid for sid in streams if sid.startswith("channel:")}
