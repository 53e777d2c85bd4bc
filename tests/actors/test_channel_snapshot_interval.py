"""How often the channel actor snapshots a growing channel (ADR-0056).

A snapshot writes the whole state, so a fixed interval of events makes a big
channel pay its size again every ``SNAPSHOT_EVERY`` events. The interval grows
with the state instead, and activation from the last snapshot plus its tail
still rebuilds exactly the live state.
"""

from __future__ import annotations

from parley.actors.channel_actor import SNAPSHOT_EVERY, ChannelActor, snapshot_due, stream_id
from parley.domain import channel as rules
from parley.journal.memory import MemoryJournal
from tests.actors.memory_backbone import ALICE, memory_backbone
from tests.support.messages import ulid


class CountingJournal(MemoryJournal):
    """The in-memory journal, recording the seq of every snapshot it stores."""

    def __init__(self) -> None:
        super().__init__()
        self.snapshot_seqs: list[int] = []

    async def save_snapshot(self, stream_id: str, seq: int, data) -> None:
        self.snapshot_seqs.append(seq)
        await super().save_snapshot(stream_id, seq, data)


def test_the_interval_is_fixed_for_small_states_and_half_the_state_for_big_ones():
    assert not snapshot_due(SNAPSHOT_EVERY - 1, 10)
    assert snapshot_due(SNAPSHOT_EVERY, 10)
    assert snapshot_due(SNAPSHOT_EVERY, 2 * SNAPSHOT_EVERY)
    assert not snapshot_due(SNAPSHOT_EVERY, 6 * SNAPSHOT_EVERY)  # was due every 1,000 events
    assert snapshot_due(3 * SNAPSHOT_EVERY, 6 * SNAPSHOT_EVERY)


async def test_a_growing_channel_snapshots_less_often_and_still_replays_exactly():
    journal = CountingJournal()
    total = 6 * SNAPSHOT_EVERY
    async with memory_backbone(journal, max_posts_per_minute=10 * total) as backbone:
        await backbone.create_channel({"channel": "big"}, ALICE)
        for start in range(0, total, 250):
            bodies = [{"type": "note", "body": f"m{i}", "msg_id": ulid(i)} for i in range(start, start + 250)]
            slots = await backbone.append_many("big", bodies, ALICE)
            assert not [s for s in slots if isinstance(s, Exception)]
        live = backbone.channels._cells["big"].actor
        seqs = journal.snapshot_seqs
        # A fixed interval took 6 snapshots of 1,000..6,000 messages; now each
        # waits for half the state's size in events.
        assert 2 <= len(seqs) <= 4, seqs
        for before, after in zip(seqs, seqs[1:]):
            assert after - before >= max(SNAPSHOT_EVERY, (after - 1) // 2)
        fresh = ChannelActor("big", backbone)
        await fresh.activate()
        assert fresh._snapshot_seq == seqs[-1]
        assert fresh.state.seq - seqs[-1] <= max(SNAPSHOT_EVERY, fresh.state.head // 2)
        assert rules.to_snapshot(fresh.state) == rules.to_snapshot(live.state)
        assert await journal.last_seq(stream_id("big")) == total + 1
