"""Channel creates are ordered by one actor's mailbox (ADR-0047), on the in-memory journal."""

from __future__ import annotations

import trio

from parley.domain.outcomes import Created
from parley.errors import ChannelExists, ParleyError
from tests.actors.memory_backbone import ALICE, BOB, memory_backbone


async def race(backbone, bodies) -> list[object]:
    results: list[object] = [None] * len(bodies)

    async def one(i: int) -> None:
        try:
            results[i] = await backbone.create_channel(bodies[i], ALICE if i % 2 else BOB)
        except ParleyError as error:
            results[i] = error

    async with trio.open_nursery() as nursery:
        for i in range(len(bodies)):
            nursery.start_soon(one, i)
    return results


async def test_sixteen_racing_creates_of_one_name_make_one_channel():
    async with memory_backbone(max_channel_creates_per_minute=1000) as backbone:
        results = await race(backbone, [{"channel": "plan"}] * 16)
        assert sum(isinstance(r, Created) for r in results) == 1
        assert sum(isinstance(r, ChannelExists) for r in results) == 15
        assert [c["channel"] for c in backbone.list_channels()["channels"]] == ["plan"]


async def test_racing_creates_never_overshoot_the_channel_cap():
    async with memory_backbone(max_channels=5, max_channel_creates_per_minute=1000) as backbone:
        results = await race(backbone, [{"channel": f"c{i}"} for i in range(12)])
        assert sum(isinstance(r, Created) for r in results) == 5
        assert len(backbone.list_channels()["channels"]) == 5
        assert backbone.creates.statistics().commands == 12
