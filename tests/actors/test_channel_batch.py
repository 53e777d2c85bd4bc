"""One channel batch against the seatbelt (ADR-0037): decided on a pending
view and sheet, charged only after its commit."""

from __future__ import annotations

import pytest

from parley.actors.channel_actor import Append
from parley.domain.identity import Identity
from parley.errors import RateLimited
from tests.support.messages import ulid

ALICE = Identity("a1", "alice")


async def test_the_surplus_of_one_batch_over_the_rate_is_refused_before_the_commit(server):
    backbone = server.backbone
    async with server.client("tok-a") as client:
        assert (await client.post("/channels", json={"channel": "batch"})).status_code == 201
    cap = backbone.seatbelt.max_posts
    before = backbone.channels.statistics().batches
    # Told in one go, the commands wait in the mailbox together: one batch.
    replies = [
        backbone.channels.tell("batch", Append({"type": "note", "body": f"n{i}", "msg_id": ulid(i)}, ALICE))
        for i in range(cap + 5)
    ]
    outcomes = []
    for reply in replies:
        try:
            outcomes.append(await reply.wait())
        except RateLimited:
            outcomes.append(None)
    # One batch of appends; on Postgres the tailer may add a Refresh for our own
    # commit when it reads it before the actor has moved the directory's head.
    assert backbone.channels.statistics().batches - before in (1, 2)
    assert [o is not None for o in outcomes] == [True] * cap + [False] * 5
    assert [o.body["cursor"] for o in outcomes[:cap]] == list(range(1, cap + 1))
    stats = backbone.seatbelt.statistics()
    assert stats.pending_sheets == 0 and stats.channel_windows >= 1
    with pytest.raises(RateLimited):  # the charged posts fill the window for the next batch too
        await backbone.channels.ask("batch", Append({"type": "note", "body": "late", "msg_id": ulid(999)}, ALICE))
    state = backbone.channels.peek("batch").state
    assert state.head == cap
