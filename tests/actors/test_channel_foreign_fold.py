"""Another process's appends reach an active channel actor as the events the
tailer read (``Refresh(events)``, ADR-0057): folded without reading the
stream again, and still exactly the journal's state.

Two backbones on one SQLite file are two processes: each has its own
journal writer, tailer and actors.
"""

from __future__ import annotations


import trio

from parley.actors.channel_actor import stream_id
from parley.domain import channel as rules
from parley.domain.identity import Identity
from parley.journal import Journal, migrate
from tests.actors.memory_backbone import running_backbone
from tests.support.messages import ulid

ALICE = Identity("sess-a", "alice")
RAISED = {"max_posts_per_minute": 1_000_000, "global_max_posts_per_minute": 1_000_000}


class CountingJournal(Journal):
    """The SQLite journal, counting the stream reads its actors make."""

    stream_reads = 0

    async def read_stream(self, stream_id, after_seq=0, limit=None):
        type(self).stream_reads += 1
        return await super().read_stream(stream_id, after_seq, limit)


def process(url: str, journal: Journal):  # noqa: ANN201 - an async context manager
    return running_backbone(url, journal, **RAISED)


async def test_foreign_appends_are_folded_from_the_tailer_without_a_second_read(tmp_path):
    url = f"sqlite:///{tmp_path / 'journal.db'}"
    await trio.to_thread.run_sync(migrate.upgrade, url)
    async with process(url, Journal.open(url)) as one, process(url, CountingJournal.open(url)) as two:
        await one.create_channel({"channel": "shared"}, ALICE)
        with trio.fail_after(10):
            while not two.directory.exists("shared"):
                await trio.sleep(0.01)  # the tailer polls SQLite
        await two.read_from("shared", 0, 10)  # activates the channel's actor in process two
        reads_before = CountingJournal.stream_reads
        for start in range(0, 60, 20):
            bodies = [{"type": "note", "body": f"m{i}", "msg_id": ulid(700 + i)} for i in range(start, start + 20)]
            await one.append_many("shared", bodies, ALICE)
        actor = two.channels.peek("shared")
        with trio.fail_after(10):
            while actor.state.head < 60:
                await two.signals.event("shared").wait()
        assert CountingJournal.stream_reads == reads_before, "the tail was read again"
        assert two.channels.statistics().restarts == 0
        # The folded state is the journal's state.
        replayed = rules.ChannelState("shared")
        for event in await two.journal.read_stream(stream_id("shared")):
            rules.apply(replayed, event.type, event.data)
        assert rules.to_snapshot(actor.state) == rules.to_snapshot(replayed)
        page, head = await two.read_from("shared", 0, 100)
        assert head == 60 and [m["msg_id"] for m in page] == [ulid(700 + i) for i in range(60)]
