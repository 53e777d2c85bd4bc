"""``Actor.take_waiting`` (ADR-0057): what an actor takes from its mailbox while it
handles a batch is its own to answer, never slipped into the list it was given,
and supervision answers it when the actor fails."""

from __future__ import annotations

import trio

from parley.actors.runtime import Actor, Registry
from parley.errors import InternalError


class Taker(Actor):
    """Takes what waits while handling its first batch; fails on the command "boom"."""

    def __init__(self, key: str) -> None:
        self.key = key
        self.given: list[list[object]] = []

    async def handle_batch(self, batch) -> None:
        given = [e.command for e in batch]
        self.given.append(given)
        taken = self.take_waiting()
        assert [e.command for e in batch] == given, "the batch list changed under the actor"
        for envelope in [*batch, *taken]:
            if envelope.command == "boom":
                raise RuntimeError("boom")
            envelope.reply.set_result(envelope.command)


async def test_taken_commands_are_answered_and_never_join_the_given_batch():
    registry = Registry(Taker, mailbox_size=8, batch_max=2)
    async with trio.open_nursery() as nursery:
        await nursery.start(registry.run)
        replies = [registry.tell("k", f"c{i}") for i in range(5)]
        assert [await r.wait() for r in replies] == [f"c{i}" for i in range(5)]
        actor = registry.peek("k")
        assert actor.given[0] == ["c0", "c1"]  # c2, c3 were taken, not given
        assert registry.statistics().restarts == 0
        await registry.shutdown()


async def test_supervision_answers_what_a_failing_actor_took():
    registry = Registry(Taker, mailbox_size=8, batch_max=2)
    async with trio.open_nursery() as nursery:
        await nursery.start(registry.run)
        replies = [registry.tell("k", c) for c in ("a", "b", "boom", "d")]
        outcomes = []
        for reply in replies:
            try:
                outcomes.append(await reply.wait())
            except InternalError:
                outcomes.append("internal_error")
        # "boom" was taken, not given; supervision retries the given and the taken one by one.
        assert outcomes == ["a", "b", "internal_error", "d"]
        assert registry.statistics().restarts >= 1
        await registry.shutdown()
