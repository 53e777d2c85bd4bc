"""The journal against real databases (SQLite file and Postgres schema)."""

from __future__ import annotations

import gc
import hashlib
import sys
import threading

import orjson
import pytest
import sqlalchemy as sa
import trio
import trio.testing

from parley.journal import ConcurrencyError, Journal, JournalUnavailable, NewEvent, migrate
from parley.journal.effects import AllOf, PutBlobs, ReleaseLease
from parley.journal.store import compute_hash


def ev(type_: str = "tick", **data) -> NewEvent:
    return NewEvent(type_, data)


async def hold_writer(journal: Journal, nursery: trio.Nursery) -> threading.Event:
    """Occupy the writer thread until the returned event is set, so that the
    submissions made meanwhile form the next batch."""
    inside, release = threading.Event(), threading.Event()

    def hold(conn) -> None:
        inside.set()
        release.wait(30)

    nursery.start_soon(journal._write, hold)
    await trio.to_thread.run_sync(inside.wait, 30)  # the writer thread is inside ``hold``
    return release


async def submitted() -> None:
    """Every task started so far is waiting on the writer (its request is queued)."""
    await trio.testing.wait_all_tasks_blocked()


# --------------------------------------------------------------------------- basics


async def test_data_text_is_stored_exactly_as_encoded(journal: Journal):
    """The contract tests (test_contract.py) check the round trip; on SQL the
    stored text is also the exact orjson encoding the hash covers."""
    stored = await journal.append("channel:general", [ev("posted", z=1, a=2), ev("edited", n=2)], 0)
    # the text is stored exactly as orjson encoded it (key order, no spaces)
    with journal._engine.connect() as conn:
        raw = conn.execute(sa.text("SELECT data FROM events WHERE seq = 2")).scalar()
    assert raw == '{"n":2}'
    assert stored[1].hash == compute_hash(stored[0].hash, "channel:general", 2, "edited", raw)


async def test_a_batch_of_rows_is_stored_exactly_with_its_positions_and_time(journal: Journal):
    """SQLite inserts a run of rows as one statement reading a JSON array
    (ADR-0061): text that JSON escapes (quotes, backslashes, control
    characters, non-ASCII, U+2028) must come back byte for byte, each row at
    the position the append returned, with the very ``recorded_at`` float."""
    tricky = ['say "hi"\\ back\\slash', "tab\tnew\nline\r\u0001\u001f", "caf\u00e9 \u2028 \U0001f600 \u4e2d", "", "{}[],:"]
    streams = [f"channel:t-{k}" for k in range(3)]
    async with trio.open_nursery() as nursery:
        release = await hold_writer(journal, nursery)
        results: dict[str, list] = {}

        async def append(sid: str) -> None:
            events = [ev("posted", body=text, k=i, f=i / 3) for i, text in enumerate(tricky * 4)]
            results[sid] = await journal.append(sid, events, 0)

        for sid in streams:
            nursery.start_soon(append, sid)
        await submitted()
        release.set()  # the three appends commit in one batch, one run of rows
    stored = [e for sid in streams for e in results[sid]]
    with journal._engine.connect() as conn:
        rows = conn.execute(
            sa.text("SELECT position, stream_id, seq, type, data, recorded_at, prev_hash, hash FROM events WHERE stream_id LIKE 'channel:t-%' ORDER BY position")
        ).all()
    assert [tuple(r) for r in rows] == [
        (e.position, e.stream_id, e.seq, e.type, orjson.dumps(e.data).decode(), e.recorded_at, e.prev_hash, e.hash) for e in sorted(stored, key=lambda e: e.position)
    ]
    assert [e.data["body"] for e in results[streams[0]]] == tricky * 4
    assert (await journal.verify()).ok


async def test_an_idle_writer_holds_nothing_of_its_last_batch(journal: Journal):
    # A passivating actor's snapshot carries its whole message list; the
    # writer thread used to keep its last batch alive while idle, so the
    # messages of every actor that had just passivated were never freed.
    messages = [{"msg_id": "m1", "body": "x"}]
    before = sys.getrefcount(messages)
    await journal.save_snapshot("channel:idle", 1, {"messages": messages})
    # The answer comes before the writer thread finishes its loop turn: wait
    # (bounded) for it to let go. With the old loop it never did.
    with trio.fail_after(2):
        while sys.getrefcount(messages) != before:
            gc.collect()
            await trio.sleep(0.01)


async def test_verify_detects_a_flipped_byte(journal: Journal):
    for i in range(3):
        await journal.append(f"a{i}", [ev(n=1), ev(n=2)], 0)
    victim = (await journal.append("victim", [ev(n=1), ev(n=2), ev(n=3)], 0))[1]
    await journal.append("zzz", [ev(n=1)], 0)

    report = await journal.verify()
    assert report.ok and report.streams_checked == 5 and report.events_checked == 10
    assert report.broken_stream is None

    with journal._engine.begin() as conn:
        conn.execute(
            sa.text("UPDATE events SET data = :d WHERE position = :p"),
            {"d": '{"n":7}', "p": victim.position},
        )
    report = await journal.verify()
    assert not report.ok
    assert report.broken_stream == "victim"
    assert report.broken_position == victim.position
    assert "hash" in report.reason


async def test_verify_detects_a_missing_event(journal: Journal):
    stored = await journal.append("s", [ev(n=1), ev(n=2), ev(n=3)], 0)
    with journal._engine.begin() as conn:
        conn.execute(sa.text("DELETE FROM events WHERE position = :p"), {"p": stored[1].position})
    report = await journal.verify()
    assert not report.ok and report.broken_stream == "s"
    assert report.broken_position == stored[2].position


# --------------------------------------------------------------------------- batches


async def test_side_effect_failure_rolls_back_only_its_request(journal: Journal):
    good_blob, bad_blob = b"good", b"written-then-rolled-back"
    good_side = PutBlobs("good", ((hashlib.sha256(good_blob).hexdigest(), good_blob),))
    # writes its blob, then fails: no such lease to release
    bad_side = AllOf((PutBlobs("bad", ((hashlib.sha256(bad_blob).hexdigest(), bad_blob),)), ReleaseLease("nobody", 1)))

    await journal.append("conflicted", [ev()], 0)
    results: dict[str, object] = {}

    async def run(name, stream, events, expected, side_effect=None):
        try:
            results[name] = await journal.append(stream, events, expected, side_effect=side_effect)
        except Exception as e:  # noqa: BLE001
            results[name] = e

    before = journal.statistics().batches
    async with trio.open_nursery() as nursery:
        release = await hold_writer(journal, nursery)
        # submitted one after the other (trio may run sibling tasks in any order)
        for args in [
            ("ok1", "s1", [ev(n=1)], 0),
            ("bad", "s2", [ev(n=1), ev(n=2)], 0, bad_side),
            ("conflict", "conflicted", [ev()], 0),
            ("good", "s3", [ev(n=1)], 0, good_side),
            ("ok2", "s1", [ev(n=2)], 1),  # same stream as ok1, same batch
        ]:
            nursery.start_soon(run, *args)
            await submitted()
        release.set()
    stats = journal.statistics()
    assert stats.batches - before == 2  # the sleeper, then all five together
    assert stats.last_batch_size == 5

    assert isinstance(results["bad"], ConcurrencyError) and results["bad"].stream_id == "lease:nobody"
    assert isinstance(results["conflict"], ConcurrencyError)
    assert results["conflict"].actual_seq == 1
    assert [e.seq for e in results["ok1"]] == [1]
    assert [e.seq for e in results["ok2"]] == [2]
    assert [e.seq for e in results["good"]] == [1]
    assert await journal.read_stream("s2") == []
    assert [e.seq for e in await journal.read_stream("s1")] == [1, 2]
    assert await journal.artifact_sizes() == {"good": len(good_blob)}
    # the failed request did not poison the head cache of its stream
    assert [e.seq for e in await journal.append("s2", [ev()], 0)] == [1]
    assert (await journal.verify()).ok


async def test_group_commit_shares_transactions(journal: Journal):
    n = 50
    before = journal.statistics()
    async with trio.open_nursery() as nursery:
        for i in range(n):
            nursery.start_soon(journal.append, f"distinct:{i}", [ev(i=i)], 0)
    after = journal.statistics()
    assert after.events - before.events == n
    assert after.batches - before.batches < n
    assert after.queue_depth == 0
    assert sum(after.batch_size_histogram.values()) == after.batches
    assert after.batch_size_histogram["1"] < n
    assert len(await journal.read_all(limit=1000)) == n


async def test_cancelled_appender_still_learns_the_outcome(journal: Journal):
    result = []
    async with trio.open_nursery() as nursery:
        release = await hold_writer(journal, nursery)

        async def release_once_waiting() -> None:
            await submitted()  # the append below is queued, and its caller cancelled
            release.set()

        nursery.start_soon(release_once_waiting)
        with trio.move_on_after(0):
            result.append(await journal.append("s", [ev()], 0))
    # the wait was shielded: the append completed and its result was delivered
    assert [e.seq for e in result[0]] == [1]


async def test_tail_is_gap_free_with_concurrent_writers(migrated_url: str):
    """Two journals (two writer threads/connections, like two processes) append
    while a tailer polls read_all(position > last): it must see every event."""
    writers = [Journal.open(migrated_url), Journal.open(migrated_url)]
    tail_j = Journal.open(migrated_url)
    for j in (*writers, tail_j):
        await j.start()
    per_task, tasks_per_writer = 20, 6
    total = per_task * tasks_per_writer * len(writers)
    seen = []
    try:
        async def write(j: Journal, name: str) -> None:
            for n in range(per_task):
                await j.append(name, [ev(n=n)], n)

        async def tail() -> None:
            last = 0
            with trio.fail_after(30):
                while len(seen) < total:
                    page = await tail_j.read_all(after_position=last, limit=17)
                    if not page:
                        await trio.sleep(0.001)
                        continue
                    seen.extend(page)
                    last = page[-1].position

        async with trio.open_nursery() as nursery:
            nursery.start_soon(tail)
            for w, j in enumerate(writers):
                for t in range(tasks_per_writer):
                    nursery.start_soon(write, j, f"w{w}:t{t}")
        everything = await tail_j.read_all(limit=10 * total)
    finally:
        for j in (*writers, tail_j):
            await j.aclose()
    positions = [e.position for e in seen]
    assert all(a < b for a, b in zip(positions, positions[1:]))
    assert len(everything) == total
    assert seen == everything  # nothing committed was skipped by the tailer


async def test_stale_head_cache_is_detected_and_repaired(journal: Journal, migrated_url: str):
    """Another writer (process) appends behind our writer's back: our cached head
    is stale. The bulk insert hits UNIQUE(stream_id, seq) and is redone request
    by request, so only the really-conflicting request fails."""
    await journal.append("shared", [ev(n=1)], 0)  # our writer now caches head seq 1
    async with Journal.open(migrated_url) as other:
        await other.append("shared", [ev(n=2, by="other")], 1)

    results: dict[str, object] = {}

    async def run(name, stream, expected):
        try:
            results[name] = await journal.append(stream, [ev(name=name)], expected)
        except ConcurrencyError as e:
            results[name] = e

    async with trio.open_nursery() as nursery:
        release = await hold_writer(journal, nursery)
        for args in [("fresh", "unrelated", 0), ("stale", "shared", 1), ("after", "unrelated", 1)]:
            nursery.start_soon(run, *args)
            await submitted()
        release.set()
    assert isinstance(results["stale"], ConcurrencyError) and results["stale"].actual_seq == 2
    assert [e.seq for e in results["fresh"]] == [1]
    assert [e.seq for e in results["after"]] == [1 + 1]
    # expected_seq newer than our (now dropped) cache: accepted after a fresh read
    assert [e.seq for e in await journal.append("shared", [ev(n=3)], 2)] == [3]
    # a cached head that is behind the caller's expected_seq is re-read, not trusted
    async with Journal.open(migrated_url) as other:
        await other.append("shared", [ev(n=4, by="other")], 3)
    assert [e.seq for e in await journal.append("shared", [ev(n=5)], 4)] == [5]
    assert [e.data["n"] for e in await journal.read_stream("shared")] == [1, 2, 3, 4, 5]
    assert (await journal.verify()).ok


async def test_batch_positions_match_storage(journal: Journal):
    """Positions returned by a multi-request, multi-event batch are the stored ones."""
    returned = []

    async def one(i):
        returned.extend(await journal.append(f"p{i % 5}:{i}", [ev(i=i, k=k) for k in range(i % 3 + 1)], 0))

    async with trio.open_nursery() as nursery:
        release = await hold_writer(journal, nursery)
        for i in range(40):
            nursery.start_soon(one, i)
        await submitted()
        release.set()
    stored = await journal.read_all(limit=1000)
    assert sorted(returned, key=lambda e: e.position) == stored
    for a, b in zip(stored, stored[1:]):
        if a.stream_id == b.stream_id:
            assert b.seq == a.seq + 1


# --------------------------------------------------------------------------- failures


async def test_writer_survives_a_failed_batch(journal: Journal):
    """A database failure fails the whole batch with JournalUnavailable; the
    writer reconnects for the next batch."""
    await journal.append("s", [ev(n=1)], 0)
    postgres = journal._engine.dialect.name == "postgresql"

    def kill_my_connection(conn):
        if postgres:
            conn.exec_driver_sql("SELECT pg_terminate_backend(pg_backend_pid())")
        else:
            conn.connection.dbapi_connection.close()

    results: dict[str, object] = {}

    async def run(name, coro_fn, *args):
        try:
            results[name] = await coro_fn(*args)
        except Exception as e:  # noqa: BLE001
            results[name] = e

    async with trio.open_nursery() as nursery:
        release = await hold_writer(journal, nursery)
        nursery.start_soon(run, "victim", journal.append, "s", [ev(n=2)], 1)
        await submitted()
        nursery.start_soon(run, "killer", journal._write, kill_my_connection)
        await submitted()
        release.set()
    assert isinstance(results["victim"], JournalUnavailable)
    assert isinstance(results["killer"], JournalUnavailable)
    assert "postgresql" not in str(results["victim"])  # no URL in the message
    stats = journal.statistics()
    assert stats.failed_batches == 1

    # the writer is alive, reconnected, and the rolled-back event is absent
    stored = await journal.append("s", [ev(n=2)], 1)
    assert [e.seq for e in stored] == [2]
    assert [e.data["n"] for e in await journal.read_stream("s")] == [1, 2]
    assert (await journal.verify()).ok
    await journal.ping()


@pytest.mark.postgres
async def test_writer_replaces_a_connection_that_died_while_idle(postgres_url: str):
    """Postgres closed the writer's idle connection: the next batch notices at its
    first statement (nothing written yet), reconnects and succeeds."""
    migrate.upgrade(postgres_url)
    async with Journal.open(postgres_url) as journal:
        await _idle_connection_killed(journal)


async def _idle_connection_killed(journal: Journal) -> None:
    await journal.append("s", [ev(n=1)], 0)
    pid = await journal._write(lambda conn: conn.exec_driver_sql("SELECT pg_backend_pid()").scalar())
    with journal._engine.connect() as conn:
        assert conn.exec_driver_sql(f"SELECT pg_terminate_backend({int(pid)})").scalar()
    await trio.sleep(0.1)
    stored = await journal.append("s", [ev(n=2)], 1)
    assert [e.seq for e in stored] == [2]
    stats = journal.statistics()
    assert stats.stale_connection_retries == 1 and stats.failed_batches == 0


async def test_closed_journal_refuses_work(migrated_url: str):
    j = Journal.open(migrated_url)
    with pytest.raises(JournalUnavailable):
        await j.append("s", [ev()], 0)  # not started
    await j.start()
    await j.append("s", [ev()], 0)
    await j.aclose()
    with pytest.raises(JournalUnavailable):
        await j.append("s", [ev()], 1)
    with pytest.raises(JournalUnavailable):
        await j.read_stream("s")
    await j.aclose()  # idempotent


async def test_aclose_flushes_pending_appends(migrated_url: str):
    j = Journal.open(migrated_url)
    await j.start()
    done = []

    async def one(i):
        done.append(await j.append(f"f{i}", [ev(i=i)], 0))

    async with trio.open_nursery() as nursery:
        for i in range(20):
            nursery.start_soon(one, i)
        await trio.sleep(0)  # all submitted
        nursery.start_soon(j.aclose)
    assert len(done) == 20
    j2 = Journal.open(migrated_url)
    async with j2:
        assert len(await j2.read_all()) == 20


async def test_ping_fails_when_the_database_is_unreachable():
    j = Journal.open("postgresql://nobody:secret@127.0.0.1:1/none")
    async with j:
        with pytest.raises(JournalUnavailable) as info:
            await j.ping()
        assert "secret" not in str(info.value)
