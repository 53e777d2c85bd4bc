"""The channel actor on the in-memory journal: append, claims, idempotency, replay.

No database, no server, no socket: the backbone's operations are called
directly (the same ones the HTTP routes call), and the journal is read back
to show what was committed.
"""

from __future__ import annotations

import pytest
import trio

from parley.actors.channel_actor import ChannelActor, stream_id
from parley.domain import channel as rules
from parley.domain.outcomes import Appended, Created, Replayed
from parley.errors import MsgIdConflict
from parley.journal.memory import MemoryJournal
from tests.actors.memory_backbone import ALICE, BOB, memory_backbone
from tests.support.messages import ulid


def note(i: int, **extra) -> dict:
    return {"type": "note", "body": f"m{i}", "msg_id": ulid(i), **extra}


async def test_append_commits_before_it_answers():
    async with memory_backbone() as backbone:
        created = await backbone.create_channel({"channel": "plan"}, ALICE)
        assert isinstance(created, Created)
        result = await backbone.append("plan", note(1), ALICE)
        assert isinstance(result, Appended)
        events = await backbone.journal.read_stream(stream_id("plan"))
        assert [e.type for e in events] == ["channel_created", "message"]
        assert events[1].data["message"]["msg_id"] == ulid(1)
        page, head = await backbone.read_from("plan", 0, 10)
        assert head == 1 and [m["msg_id"] for m in page] == [ulid(1)]


async def test_a_repeated_msg_id_is_answered_from_the_journal_once():
    async with memory_backbone() as backbone:
        await backbone.create_channel({"channel": "plan"}, ALICE)
        first = await backbone.append("plan", note(1), ALICE)
        again = await backbone.append("plan", note(1), ALICE)
        assert isinstance(again, Replayed) and again.body == first.body
        assert await backbone.journal.last_seq(stream_id("plan")) == 2  # created + one message
        with pytest.raises(MsgIdConflict):  # same msg_id, other content: refused, nothing written
            await backbone.append("plan", note(1, body="different"), ALICE)
        assert await backbone.journal.last_seq(stream_id("plan")) == 2


async def test_sixteen_racing_claims_grant_exactly_one():
    async with memory_backbone() as backbone:
        await backbone.create_channel({"channel": "work"}, ALICE)
        outcomes: list[str] = []

        async def racer(i: int) -> None:
            who = ALICE if i % 2 else BOB
            body = {"type": "claim", "body": "mine", "msg_id": ulid(100 + i), "target": "task-1", "lease_ttl": 30}
            result = await backbone.claim("work", "claim", body, who)
            outcomes.append(result.body["outcome"])

        async with trio.open_nursery() as nursery:
            for i in range(16):
                nursery.start_soon(racer, i)
        assert sorted(outcomes).count("granted") == 1 and len(outcomes) == 16
        claims = (await backbone.claims("work"))["claims"]
        assert len(claims) == 1


async def test_a_reactivated_actor_replays_to_the_live_state():
    journal = MemoryJournal()
    async with memory_backbone(journal) as backbone:
        await backbone.create_channel({"channel": "log"}, ALICE)
        for i in range(12):
            assert isinstance(await backbone.append("log", note(i), BOB if i % 3 else ALICE), Appended)
        live = backbone.channels._cells["log"].actor
        await journal.save_snapshot(stream_id("log"), live.state.seq - 5, {"stale": "ignored"})  # a bad snapshot
        fresh = ChannelActor("log", backbone)
        await fresh.activate()
        assert rules.to_snapshot(fresh.state) == rules.to_snapshot(live.state)
        await journal.save_snapshot(stream_id("log"), live.state.seq, rules.to_snapshot(live.state))
        assert isinstance(await backbone.append("log", note(50), ALICE), Appended)
        snap_plus_tail = ChannelActor("log", backbone)
        await snap_plus_tail.activate()
        assert snap_plus_tail._snapshot_seq == live.state.seq - 1
        assert rules.to_snapshot(snap_plus_tail.state) == rules.to_snapshot(live.state)
    # a new process on the same (memory) journal starts from what was committed
    async with memory_backbone(journal) as again:
        page, head = await again.read_from("log", 0, 100)
        assert head == 13 and page[-1]["msg_id"] == ulid(50)
