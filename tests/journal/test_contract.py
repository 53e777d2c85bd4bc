"""The journal contract, written once and run on every backend (ADR-0028).

SQLite (a file), Postgres (a schema of its own) and the in-memory journal
answer these tests the same way, like eventsourcing's recorder test cases.
What only a SQL store can show (the writer thread, group commit, raw rows,
a dying connection) stays in test_journal.py.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import AsyncIterator

import pytest
import trio

from parley.journal import ConcurrencyError, Journal, NewEvent, migrate
from parley.journal.backend import MEMORY_URL, JournalBackend, open_journal
from parley.journal.effects import AllOf, ChargeWindows, PutBlobs, ReleaseLease, WindowCharge
from parley.journal.errors import WindowFull
from parley.journal.memory import MemoryJournal
from tests.conftest import postgres_schema_url


def ev(type_: str = "tick", **data) -> NewEvent:
    return NewEvent(type_, data)


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres), "memory"])
async def journal(request, tmp_path) -> AsyncIterator[JournalBackend]:
    if request.param == "memory":
        backend: JournalBackend = open_journal(MEMORY_URL)
        assert isinstance(backend, MemoryJournal)
        async with backend:
            yield backend
        return
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'journal.db'}"
        migrate.upgrade(url)
        async with Journal.open(url) as sql:
            yield sql
        return
    with postgres_schema_url() as url:
        migrate.upgrade(url)
        async with Journal.open(url) as sql:
            yield sql


def test_both_implementations_satisfy_the_protocol():
    assert isinstance(MemoryJournal(), JournalBackend)
    assert isinstance(Journal.open("sqlite:///unused.db"), JournalBackend)


def _never_dead(holder: str) -> bool:
    return False


async def test_append_read_round_trip(journal: Journal):
    data = {"z": 1, "a": [1, 2, {"b": None}], "text": "h\u00e9llo \u2603 \U0001f600", "nul": "a\x00b"}
    stored = await journal.append("channel:general", [ev("posted", **data), ev("edited", n=2)], 0)
    assert [e.seq for e in stored] == [1, 2]
    assert stored[0].prev_hash == "" and stored[1].prev_hash == stored[0].hash
    assert stored[0].position < stored[1].position

    read = await journal.read_stream("channel:general")
    assert read == stored
    assert read[0].data == data and list(read[0].data) == ["z", "a", "text", "nul"]
    assert read[0].type == "posted" and read[1].data == {"n": 2}
    assert abs(read[0].recorded_at - time.time()) < 60
    assert await journal.read_stream("channel:general", after_seq=1) == stored[1:]
    assert await journal.read_stream("nope") == []
    assert await journal.last_seq("channel:general") == 2
    assert await journal.last_position() == stored[1].position


async def test_expected_seq_mismatch_raises_concurrency_error(journal: Journal):
    await journal.append("s", [ev(), ev()], 0)
    for wrong in (0, 1, 3, 7):
        with pytest.raises(ConcurrencyError) as info:
            await journal.append("s", [ev()], wrong)
        assert (info.value.stream_id, info.value.expected_seq, info.value.actual_seq) == ("s", wrong, 2)
    # nothing was written by the losers, and the right version still works
    assert [e.seq for e in await journal.read_stream("s")] == [1, 2]
    assert [e.seq for e in await journal.append("s", [ev()], 2)] == [3]
    with pytest.raises(ConcurrencyError):
        await journal.append("new-stream", [ev()], 1)


async def test_invalid_requests_are_rejected_before_queueing(journal: Journal):
    with pytest.raises(TypeError):
        await journal.append("s", [ev(x=object())], 0)
    with pytest.raises(TypeError):
        await journal.append("s", [("t", {})], 0)  # type: ignore[list-item]
    with pytest.raises(ValueError):
        await journal.append("", [ev()], 0)
    with pytest.raises(ValueError):
        await journal.append("s", [ev()], -1)
    assert await journal.read_stream("s") == []


async def test_concurrent_appenders_to_one_stream_are_gap_free(journal: Journal):
    """Racing read-then-append loops: seqs stay 1..N, every loser sees ConcurrencyError."""
    conflicts = 0
    committed: list[int] = []

    async def appender(i: int) -> None:
        nonlocal conflicts
        done = 0
        while done < 5:
            last = await journal.last_seq("race")
            try:
                stored = await journal.append("race", [ev(who=i, n=done), ev(who=i, n=done, part=2)], last)
            except ConcurrencyError:
                conflicts += 1
                continue
            committed.extend(e.seq for e in stored)
            done += 1

    async with trio.open_nursery() as nursery:
        for i in range(8):
            nursery.start_soon(appender, i)

    events = await journal.read_stream("race")
    assert [e.seq for e in events] == list(range(1, 81))
    assert sorted(committed) == list(range(1, 81))
    for a, b in zip(events, events[1:]):
        assert b.prev_hash == a.hash and b.position > a.position
    assert conflicts > 0
    assert (await journal.verify()).ok


async def test_read_all_is_in_global_order_and_pages(journal: Journal):
    expected = []
    for i in range(30):
        stream = f"s{i % 4}"
        seq = await journal.last_seq(stream)
        expected += await journal.append(stream, [ev(i=i)], seq)
    everything = await journal.read_all()
    assert everything == expected
    assert [e.position for e in everything] == sorted(e.position for e in everything)

    paged, after = [], 0
    while page := await journal.read_all(after_position=after, limit=7):
        assert len(page) <= 7
        paged += page
        after = page[-1].position
    assert paged == expected
    assert await journal.read_all(after_position=expected[-1].position) == []


async def test_snapshots(journal: Journal):
    assert await journal.load_snapshot("s") is None
    await journal.save_snapshot("s", 3, {"n": 3})
    assert await journal.load_snapshot("s") is None  # no event at seq 3: unbound, never used
    await journal.append("s", [NewEvent("e", {"i": i}) for i in range(9)], 0)
    await journal.save_snapshot("s", 3, {"members": ["a", "b"], "n": 3})
    snap = await journal.load_snapshot("s")
    assert (snap.stream_id, snap.seq, snap.data) == ("s", 3, {"members": ["a", "b"], "n": 3})
    await journal.save_snapshot("s", 9, {"n": 9})
    snap = await journal.load_snapshot("s")
    assert (snap.seq, snap.data) == (9, {"n": 9})
    assert await journal.load_snapshot("other") is None


async def test_side_effect_commits_with_the_events(journal: Journal):
    blob = b"\x00\x01binary\xff" * 100
    sha = hashlib.sha256(blob).hexdigest()
    await journal.append(
        "channel:c",
        [ev("artifact_attached", sha256=sha)],
        0,
        side_effect=PutBlobs("c", ((sha, blob),)),
    )
    assert await journal.get_artifact("c", sha) == blob
    assert await journal.get_artifact("c", "0" * 64) is None
    assert await journal.list_artifacts("c") == {sha: len(blob)}
    assert await journal.put_artifact("c", sha, blob) is False  # content-addressed, idempotent
    other = b"other"
    assert await journal.put_artifact("d", hashlib.sha256(other).hexdigest(), other) is True
    assert await journal.artifact_sizes() == {"c": len(blob), "d": len(other)}
    with pytest.raises(ValueError):
        await journal.put_artifact("c", "f" * 64, b"not matching")


async def test_side_effect_must_be_a_typed_effect(journal: Journal):
    with pytest.raises(TypeError, match="parley.journal.effects"):
        await journal.append("s", [ev()], 0, side_effect=lambda conn: None)
    assert await journal.last_seq("s") == 0


async def test_lease_take_and_release_commit_with_a_turn(journal: Journal):
    """The lease ops of a session turn: take by compare-and-set, release in the
    commit (a moved epoch rolls the commit back), a live holder elsewhere wins."""
    now = time.time()
    take = dict(now=now, expires_at=now + 30, holder_is_dead=_never_dead)
    await journal.append("session:sess1", [ev("turn_started")], 0)
    assert await journal.take_lease("sess1", holder="w1", base_seq=0, **take) == "moved"
    assert await journal.take_lease("sess1", holder="w1", base_seq=1, **take) == 1
    assert await journal.take_lease("sess1", holder="w1", base_seq=1, **take) == 2  # ours: re-taken
    assert await journal.take_lease("sess1", holder="w2", base_seq=1, **take) is None  # live elsewhere
    dead = dict(take, holder_is_dead=lambda holder: holder == "w1")
    assert await journal.take_lease("sess1", holder="w2", base_seq=1, **dead) == 3
    with pytest.raises(ConcurrencyError) as info:  # w1's commit: its epoch 2 has moved on
        await journal.append("session:sess1", [ev("turn_committed")], 1, side_effect=ReleaseLease("sess1", 2))
    assert info.value.stream_id == "lease:sess1"
    assert await journal.last_seq("session:sess1") == 1
    await journal.append("session:sess1", [ev("turn_committed")], 1, side_effect=ReleaseLease("sess1", 3))
    lease, head = await journal.lease_and_head("sess1")
    assert (lease.holder, lease.epoch, head) == ("", 3, 2)
    assert await journal.take_lease("sess1", holder="w1", base_seq=2, **take) == 4  # released: free
    await journal.release_lease("sess1", 4)
    with pytest.raises(ConcurrencyError):
        await journal.release_lease("sess1", 4 - 1)


async def test_start_key_reservation(journal: Journal):
    assert await journal.reserve_start_key("session-start/k", None, "ses_a") is True
    assert await journal.reserve_start_key("session-start/k", None, "ses_b") is False  # first writer won
    assert await journal.reserve_start_key("session-start/k", "ses_x", "ses_b") is False  # not what it holds
    assert await journal.reserve_start_key("session-start/k", "ses_a", "ses_b") is True  # compare-and-set
    assert await journal.get_meta("session-start/k") == "ses_b"


async def test_meta_first_write_wins(journal: Journal):
    assert await journal.get_meta("secret") is None
    assert await journal.put_meta_if_absent("secret", "one") == "one"
    assert await journal.put_meta_if_absent("secret", "two") == "one"


async def test_on_commit_callbacks_see_committed_events_before_the_ack(journal: Journal):
    seen: list = []
    journal.on_commit.append(lambda events: seen.extend(events))
    stored = await journal.append("s", [ev(n=1), ev(n=2)], 0)
    assert seen == stored  # delivered before append() returned
    with pytest.raises(ConcurrencyError):
        await journal.append("s", [ev()], 0)
    assert seen == stored



async def test_a_refused_side_effect_rolls_its_append_back(journal: Journal):
    """A full shared window (WindowFull) and a moved lease (ConcurrencyError)
    refuse the whole append: no event, no blob, no stamp."""
    blob = b"bytes"
    sha = hashlib.sha256(blob).hexdigest()
    window = WindowCharge("channel", "c", 2, (1000, 1001))
    await journal.append("channel:c", [ev()], 0, side_effect=ChargeWindows((window,), 60_000))
    full = AllOf((PutBlobs("c", ((sha, blob),)), ChargeWindows((WindowCharge("channel", "c", 2, (1002,)),), 60_000)))
    with pytest.raises(WindowFull) as info:
        await journal.append("channel:c", [ev()], 1, side_effect=full)
    assert info.value.stamps == [1000, 1001]
    with pytest.raises(ConcurrencyError):
        await journal.append("channel:c", [ev()], 1, side_effect=AllOf((PutBlobs("c", ((sha, blob),)), ReleaseLease("x", 1))))
    assert await journal.last_seq("channel:c") == 1
    assert await journal.list_artifacts("c") == {}
    # once the window has moved on (stamps older than 60 s), the charge fits
    later = ChargeWindows((WindowCharge("channel", "c", 2, (70_000,)),), 60_000)
    await journal.append("channel:c", [ev()], 1, side_effect=AllOf((PutBlobs("c", ((sha, blob),)), later)))
    assert await journal.list_artifacts("c") == {sha: len(blob)}
    with pytest.raises(ValueError):
        await journal.put_artifact("c", "0" * 64, blob)


async def test_session_slots_count_open_sessions_and_running_starts(journal: Journal, request):
    if request.node.callspec.params["journal"] == "sqlite":
        pytest.skip("session slots serve shared journals only (Postgres, ADR-0025); SQLite counts in memory")
    slot = dict(limit=2, now_ms=1_000, expires_ms=5_000)
    assert await journal.reserve_session_slot("a", "o", "ses_1", **slot)
    assert await journal.reserve_session_slot("a", "o", "ses_2", **slot)
    assert not await journal.reserve_session_slot("a", "o", "ses_3", **slot)  # two starts running
    assert await journal.reserve_session_slot("b", "o", "ses_9", **slot)  # another identity
    await journal.release_session_slot("a", "o", "ses_2")  # that start failed
    started = {"session_id": "ses_1", "agent_id": "a", "owner": "o"}
    await journal.append("session:ses_1", [ev("session_started", **started)], 0)
    assert await journal.reserve_session_slot("a", "o", "ses_3", **slot)  # ses_1 open + ses_3 running
    assert not await journal.reserve_session_slot("a", "o", "ses_4", **slot)
    await journal.append("session:ses_1", [ev("session_closed")], 1)
    assert await journal.reserve_session_slot("a", "o", "ses_4", **slot)
    assert await journal.reserve_session_slot("a", "o", "ses_5", **dict(slot, now_ms=6_000))  # the others lapsed


async def test_read_models(journal: Journal):
    await journal.append("channel:one", [ev("channel_created", name="one"), ev("message", n=1), ev("claim_lapsed")], 0)
    await journal.append("channel:two", [ev("channel_created", name="two"), ev("message"), ev("message")], 0)
    await journal.append("channel:two", [ev("channel_archived")], 3)
    await journal.append("channel:odd", [ev("message")], 0)  # no descriptor: not a channel
    assert await journal.channel_index() == [
        ("channel:one", {"name": "one"}, 1, False, 3),
        ("channel:two", {"name": "two"}, 2, True, 4),
    ]
    for sid in ("ses_a", "ses_b"):
        started = {"session_id": sid, "agent_id": "ag", "owner": "ow"}
        await journal.append(f"session:{sid}", [ev("session_started", **started)], 0)
    await journal.append("session:ses_a", [ev("turn_committed", subscriptions={"one": 1})], 1)
    await journal.append("session:ses_b", [ev("session_closed")], 1)
    assert await journal.open_sessions("session_started", "session_closed") == {"ses_a": ("ag", "ow")}
    assert await journal.latest_subscriptions(["ses_a", "ses_b", "ses_x"]) == {"ses_a": {"one": 1}}
    folded: list = []
    assert await journal.fold_stream("channel:two", 1, lambda t, d: folded.append((t, d))) == 3
    assert folded == [("message", {}), ("message", {}), ("channel_archived", {})]
    blob = b"abc"
    await journal.put_artifact("one", hashlib.sha256(blob).hexdigest(), blob)
    assert await journal.total_artifact_bytes() == 3
    assert await journal.lease_and_head("ses_a") == (None, 2)
    assert (await journal.verify()).ok
    assert await journal.readiness() is None and await journal.writer_failure() is None
    await journal.ping()


async def test_read_data_is_a_fresh_copy(journal: Journal):
    data = {"list": [1]}
    await journal.append("s", [NewEvent("e", data)], 0)
    first = (await journal.read_stream("s"))[0]
    first.data["list"].append(2)
    assert (await journal.read_stream("s"))[0].data == {"list": [1]}
    assert (await journal.read_all())[0].data == {"list": [1]}


async def test_a_closed_journal_refuses_work(journal: Journal):
    await journal.aclose()
    with pytest.raises(Exception) as info:
        await journal.read_stream("s")
    assert type(info.value).__name__ == "JournalUnavailable"
