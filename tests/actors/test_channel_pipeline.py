"""The channel actor decides its next batch while the current one commits (ADR-0057).

Many senders race into one channel so that the mailbox always holds the next
batch while a commit is under way. Whatever happens to a commit, the journal
must end up holding every acknowledged message exactly once, nothing that was
not acknowledged as stored, gap-free seqs, and idempotency answered exactly
(a resent ``msg_id`` replays the first cursor; other content is refused).
"""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import trio

from parley.actors.backbone import Backbone
from parley.actors.channel_actor import stream_id
from parley.domain.identity import Identity
from parley.actors.channel_actor import Claim
from parley.actors.runtime import Envelope
from parley.domain.outcomes import Appended, Claimed, ClaimRefused, Replayed
from parley.errors import MsgIdConflict, ParleyError, Unavailable
from parley.journal import migrate
from parley.journal.memory import MemoryJournal
from tests.actors.memory_backbone import memory_backbone, running_backbone
from tests.support.messages import ulid

RAISED = {"max_posts_per_minute": 10_000_000, "global_max_posts_per_minute": 10_000_000, "max_messages_per_channel": 1_000_000}
SENDERS = 16
CALL = 256


def sender_identity(i: int) -> Identity:
    return Identity(f"sess-{i}", f"agent-{i}")


def note(sender: int, k: int, body: str | None = None) -> dict:
    return {"type": "note", "body": body or f"s{sender} m{k}", "msg_id": ulid(sender * 100_000 + k)}


async def journal_messages(backbone: Backbone, channel: str) -> list[dict]:
    events = await backbone.journal.read_stream(stream_id(channel))
    assert [e.seq for e in events] == list(range(1, len(events) + 1)), "a gap or a duplicate seq"
    return [e.data["message"] for e in events if e.type == "message"]


def assert_exact(messages: list[dict], acked: dict[str, int]) -> None:
    """Every acknowledged msg_id stored once, at its acknowledged cursor, and nothing else."""
    ids = [m["msg_id"] for m in messages]
    assert len(ids) == len(set(ids)), "a message stored twice"
    assert set(ids) == set(acked), (len(set(ids) - set(acked)), len(set(acked) - set(ids)))
    for index, msg_id in enumerate(ids, start=1):
        assert acked[msg_id] == index, (msg_id, acked[msg_id], index)


async def race(backbones: list[Backbone], channel: str, calls: int, acked: dict[str, int], refused: list) -> None:
    """SENDERS senders (spread over ``backbones``), each ``calls`` append_many calls of
    CALL messages; every third call resends the previous call's first 16 messages
    (a replay decided on the view stacked on the batch that stored them) and one
    of them with other content (refused)."""

    async def sender(i: int) -> None:
        backbone = backbones[i % len(backbones)]
        who = sender_identity(i)
        k = 0
        previous: list[dict] = []
        for call in range(calls):
            bodies = [note(i, k + n) for n in range(CALL)]
            k += CALL
            resent = previous[:16] if call % 3 == 2 else []
            stored = resent and previous[16]["msg_id"] in acked
            conflict = [{**previous[16], "body": "other content"}] if stored else []
            slots = await backbone.append_many(channel, [*resent, *bodies, *conflict], who)
            for body, slot in zip([*resent, *bodies, *conflict], slots):
                if body in conflict:
                    if not isinstance(slot, MsgIdConflict):
                        refused.append(("conflict not refused", body["msg_id"], slot))
                    continue
                if isinstance(slot, Unavailable):
                    refused.append(("503", body["msg_id"], slot))
                    continue
                assert not isinstance(slot, ParleyError), slot
                cursor = slot.body["cursor"]
                if body in resent:
                    if body["msg_id"] in acked:
                        assert isinstance(slot, Replayed) and acked[body["msg_id"]] == cursor, slot
                    else:
                        acked[body["msg_id"]] = cursor  # its first try got a 503: stored now
                else:
                    assert isinstance(slot, Appended), slot
                    assert body["msg_id"] not in acked
                    acked[body["msg_id"]] = cursor
            previous = bodies

    async with trio.open_nursery() as nursery:
        for i in range(SENDERS):
            nursery.start_soon(sender, i)


async def test_sixteen_senders_into_one_channel_are_stored_exactly_once_while_deciding_ahead():
    async with memory_backbone(**RAISED) as backbone:
        await backbone.create_channel({"channel": "bulk"}, sender_identity(0))
        acked: dict[str, int] = {}
        refused: list = []
        await race([backbone], "bulk", 6, acked, refused)
        assert refused == []
        actor = backbone.channels.peek("bulk")
        assert actor.decided_ahead > 0, "the pipeline was never used"
        assert actor.ahead_dropped == 0
        # The process-wide counts /metrics exports agree with the actor's own.
        assert (backbone.pipeline.decided_ahead, backbone.pipeline.dropped) == (actor.decided_ahead, 0)
        assert backbone.channels.statistics().restarts == 0
        assert len(acked) == SENDERS * 6 * CALL
        assert_exact(await journal_messages(backbone, "bulk"), acked)
        stats = backbone.seatbelt.statistics()
        assert stats.pending_sheets == 0 and backbone.pending_artifact_bytes == 0


async def test_two_processes_racing_on_one_channel_decide_ahead_and_lose_races_cleanly():
    journal = MemoryJournal()
    async with memory_backbone(journal, **RAISED) as one, memory_backbone(journal, **RAISED) as two:
        await one.create_channel({"channel": "shared"}, sender_identity(0))
        acked: dict[str, int] = {}
        refused: list = []
        await race([one, two], "shared", 4, acked, refused)
        assert [r for r in refused if r[0] != "503"] == []
        assert one.lost_races + two.lost_races > 0, "the processes never raced"
        ahead = sum(b.channels.peek("shared").decided_ahead for b in (one, two))
        assert ahead > 0
        assert one.channels.statistics().restarts == two.channels.statistics().restarts == 0
        assert_exact(await journal_messages(one, "shared"), acked)


@asynccontextmanager
async def sqlite_backbone(url: str, **overrides) -> AsyncIterator[Backbone]:
    await trio.to_thread.run_sync(migrate.upgrade, url)
    async with running_backbone(url, **overrides) as backbone:
        yield backbone


async def test_a_commit_failing_under_a_decided_batch_stores_nothing_unacknowledged(tmp_path):
    """SQLite file locked by another connection while senders race: the commit in
    flight fails (503), the batch decided on top of it is dropped and decided
    again; resending everything afterwards stores each message exactly once."""
    path = tmp_path / "journal.db"
    url = f"sqlite:///{path}"
    async with sqlite_backbone(url, **RAISED) as backbone:
        await backbone.create_channel({"channel": "locked"}, sender_identity(0))
        acked: dict[str, int] = {}
        refused: list = []
        actor_seen = trio.Event()

        async def lock_once_deciding_ahead() -> None:
            while True:
                actor = backbone.channels.peek("locked")
                if actor is not None and actor.decided_ahead > 2:
                    break
                await trio.sleep(0.005)
            locker = sqlite3.connect(str(path), isolation_level=None, timeout=5)
            try:
                locker.execute("BEGIN EXCLUSIVE")
                while not refused:  # the writer's busy timeout ran out under a batch
                    await trio.sleep(0.01)
                locker.execute("ROLLBACK")
            finally:
                locker.close()
            actor_seen.set()

        async with trio.open_nursery() as nursery:
            nursery.start_soon(lock_once_deciding_ahead)
            await race([backbone], "locked", 6, acked, refused)
        assert actor_seen.is_set()
        assert refused and {r[0] for r in refused} == {"503"}
        actor = backbone.channels.peek("locked")
        assert actor.ahead_dropped > 0, "no batch was decided on top of the failed commit"
        assert backbone.pipeline.dropped == actor.ahead_dropped
        assert backbone.channels.statistics().restarts == 0
        assert_exact(await journal_messages(backbone, "locked"), acked)

        # Resend every message: the stored ones replay at their cursor, the
        # refused ones are stored now, once.
        for i in range(SENDERS):
            bodies = [note(i, k) for k in range(6 * CALL)]
            for start in range(0, len(bodies), CALL):
                chunk = bodies[start : start + CALL]
                slots = await backbone.append_many("locked", chunk, sender_identity(i))
                for body, slot in zip(chunk, slots):
                    assert not isinstance(slot, ParleyError), slot
                    if body["msg_id"] in acked:
                        assert isinstance(slot, Replayed) and slot.body["cursor"] == acked[body["msg_id"]]
                    else:
                        assert isinstance(slot, Appended)
                        acked[body["msg_id"]] = slot.body["cursor"]
        assert len(acked) == SENDERS * 6 * CALL
        assert_exact(await journal_messages(backbone, "locked"), acked)


async def test_a_claim_decided_on_a_stacked_view_sees_the_claims_of_the_batch_below():
    """ADR-0057 for claims: the batch decided while another commits is decided on
    a view stacked on that batch, so a claim of a target the batch below claimed
    is refused (``already_claimed`` by the claimant below), and a target the
    batch below left alone is granted; nothing of either is in the state until
    they commit."""
    async with memory_backbone(**RAISED) as backbone:
        await backbone.create_channel({"channel": "work"}, sender_identity(0))
        await backbone.append("work", note(0, 0), sender_identity(0))  # the actor is active
        actor = backbone.channels.peek("work")

        def claim(r: int, target: str) -> Envelope:
            body = {"type": "claim", "body": "mine", "msg_id": ulid(900_000 + r), "target": target}
            return Envelope(Claim("claim", body, sender_identity(r), None, None))

        below = actor._decide_batch([claim(1, "task-a")], None)
        above = actor._decide_batch([claim(2, "task-a"), claim(3, "task-b")], below)
        try:
            (_, first), = below.answers
            (_, taken), (_, free) = above.answers
            assert isinstance(first, Claimed)
            assert isinstance(taken, ClaimRefused) and taken.body["outcome"] == "already_claimed"
            assert taken.body["by"]["agent_id"] == sender_identity(1).agent_id
            assert isinstance(free, Claimed)
            assert (await backbone.claims("work"))["claims"] == []  # nothing committed yet
        finally:
            actor._release(above)
            actor._release(below)
