"""Runtime hooks the session turns rely on (ADR-0030): ``Actor.busy`` and ``Registry.deliver``."""

from __future__ import annotations

import pytest
import trio
import trio.testing

from parley.actors.runtime import Actor, Registry
from parley.errors import Unavailable


class Gate(Actor):
    """Holds each batch until ``gate`` is set; stays ``busy`` while ``hold`` is set."""

    def __init__(self, key: str) -> None:
        self.key = key
        self.hold = False
        self.gate = trio.Event()
        self.seen: list[object] = []

    def busy(self) -> bool:
        return self.hold

    async def handle_batch(self, batch) -> None:
        await self.gate.wait()
        for envelope in batch:
            self.seen.append(envelope.command)
            envelope.reply.set_result(len(self.seen))


@pytest.fixture
async def gates():
    registry = Registry(Gate, mailbox_size=1, idle_timeout=0.05)
    async with trio.open_nursery() as nursery:
        await nursery.start(registry.run)
        yield registry
        await registry.shutdown()


async def test_a_busy_actor_is_not_passivated_when_idle(gates, autojump_clock):
    first = gates.tell("k", "hello")
    actor = gates.peek("k")
    assert isinstance(actor, Gate)
    actor.gate.set()
    await first.wait()
    actor.hold = True
    await trio.sleep(1)  # twenty idle timeouts
    assert gates.peek("k") is actor
    actor.hold = False
    await trio.sleep(1)
    assert not gates.is_active("k")


async def test_send_waits_for_room_where_tell_refuses(gates):
    first = gates.tell("k", 1)  # taken by the actor, which waits at its gate
    await trio.testing.wait_all_tasks_blocked()
    second = gates.tell("k", 2)  # fills the one-slot mailbox
    with pytest.raises(Unavailable):
        gates.tell("k", 3)
    sent: list = []

    async def send_third() -> None:
        sent.append(await gates.deliver("k", 3))

    async with trio.open_nursery() as nursery:
        nursery.start_soon(send_third)
        await trio.testing.wait_all_tasks_blocked()
        assert sent == []  # still waiting for room
        gates.peek("k").gate.set()
    assert [await r.wait() for r in (first, second, sent[0])] == [1, 2, 3]
