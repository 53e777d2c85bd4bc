"""The actor runtime: batching, supervision, passivation, back-pressure, drain."""

from __future__ import annotations

import pytest
import trio

from parley.actors.runtime import Actor, Registry
from parley.errors import InternalError, Unavailable
from parley.journal.errors import JournalUnavailable


class Counter(Actor):
    """Adds numbers; raises on 'boom'; records the batches it saw."""

    activations = 0

    def __init__(self, key: str, log: list) -> None:
        self.key = key
        self.total = 0
        self.log = log

    async def activate(self) -> None:
        Counter.activations += 1
        self.total = 0

    async def handle_batch(self, batch) -> None:
        self.log.append(len(batch))
        for envelope in batch:
            if envelope.command == "boom":
                raise RuntimeError("boom")
            if envelope.command == "wait":
                await trio.sleep(0)
            self.total += envelope.command if isinstance(envelope.command, int) else 0
            envelope.reply.set_result(self.total)


@pytest.fixture
async def registry():
    log: list[int] = []
    reg = Registry(lambda key: Counter(key, log), mailbox_size=8, idle_timeout=60)
    async with trio.open_nursery() as nursery:
        await nursery.start(reg.run)
        reg.batch_log = log
        yield reg
        await reg.shutdown()


async def test_commands_waiting_together_arrive_as_one_batch(registry):
    replies = [registry.tell("k", 1) for _ in range(5)]
    results = [await r.wait() for r in replies]
    assert results == [1, 2, 3, 4, 5]
    assert registry.batch_log == [5]


async def test_statistics_count_batches_commands_and_the_deepest_mailbox(registry):
    """RegistryStatistics (ADR-0038): what /metrics exports per actor kind."""
    for _ in range(3):
        registry.tell("deep", 1)
    registry.tell("shallow", 1)
    waiting = registry.statistics()
    assert (waiting.mailbox_depth, waiting.largest_mailbox, waiting.active) == (4, 3, 2)
    assert await registry.ask("deep", 0) == 3 and await registry.ask("shallow", 0) == 1
    done = registry.statistics()
    assert done.commands == 6 and done.batches == len(registry.batch_log)
    assert done.batches < done.commands  # the three waiting commands arrived as one batch
    assert (done.mailbox_depth, done.largest_mailbox) == (0, 0)
    with pytest.raises(AttributeError):
        done.batches = 0  # type: ignore[misc]  # a frozen snapshot


async def test_a_raising_command_is_answered_internal_error_and_the_rest_are_served(registry):
    replies = [registry.tell("k", 1), registry.tell("k", "boom"), registry.tell("k", 2)]
    assert await replies[0].wait() >= 1
    with pytest.raises(InternalError):
        await replies[1].wait()
    assert await replies[2].wait() >= 2
    assert await registry.ask("k", 10) >= 10
    assert registry.statistics().restarts >= 1


async def test_a_full_mailbox_is_backpressure_not_growth(registry):
    for _ in range(8):
        registry.tell("full", 1)
    with pytest.raises(Unavailable):
        registry.tell("full", 1)


async def test_idle_actors_passivate_and_come_back(autojump_clock):
    log: list[int] = []
    reg = Registry(lambda key: Counter(key, log), idle_timeout=5)
    async with trio.open_nursery() as nursery:
        await nursery.start(reg.run)
        assert await reg.ask("p", 3) == 3
        assert reg.is_active("p")
        await trio.sleep(10)
        assert not reg.is_active("p")
        assert reg.statistics().passivations == 1
        assert await reg.ask("p", 4) == 4  # state rebuilt by activation
        await reg.shutdown()


async def test_shutdown_drains_queued_commands():
    log: list[int] = []
    reg = Registry(lambda key: Counter(key, log))
    async with trio.open_nursery() as nursery:
        await nursery.start(reg.run)
        replies = [reg.tell("d", 1) for _ in range(3)]
        await reg.shutdown()
        assert [await r.wait() for r in replies] == [1, 2, 3]
        with pytest.raises(Unavailable):
            reg.tell("d", 1)


class Unreachable(Actor):
    """An actor whose state cannot be loaded: the database is down."""

    def __init__(self, key: str) -> None:
        self.key = key

    async def activate(self) -> None:
        raise JournalUnavailable("journal database unavailable: AdminShutdown")

    async def handle_batch(self, batch) -> None:  # pragma: no cover - never activated
        raise AssertionError


async def test_an_activation_that_meets_a_database_failure_answers_503_not_500():
    reg = Registry(Unreachable, mailbox_size=8, idle_timeout=60)
    async with trio.open_nursery() as nursery:
        await nursery.start(reg.run)
        with pytest.raises(Unavailable) as caught:
            await reg.ask("k", 1)
        assert caught.value.retry_after == 1
        await reg.shutdown()


class Fragile(Actor):
    """The first instance fails its first batch, and its restart meets a
    database that went away; later instances work."""

    def __init__(self, key: str, born: list["Fragile"]) -> None:
        self.key = key
        self.first = not born
        self.activations = 0
        born.append(self)

    async def activate(self) -> None:
        self.activations += 1
        if self.first and self.activations == 2:  # the supervised restart
            raise JournalUnavailable("journal database unavailable: AdminShutdown")

    async def handle_batch(self, batch) -> None:
        if self.first:
            raise RuntimeError("boom")
        for envelope in batch:
            envelope.reply.set_result(envelope.command)


async def test_a_restart_that_cannot_rebuild_the_state_answers_503_and_a_fresh_actor_serves_the_next():
    born: list[Fragile] = []
    reg = Registry(lambda key: Fragile(key, born), mailbox_size=8, idle_timeout=60)
    async with trio.open_nursery() as nursery:
        await nursery.start(reg.run)
        with pytest.raises(Unavailable) as caught:
            await reg.ask("k", 1)
        assert caught.value.retry_after == 1
        # The registry survived the failed restart: a new actor activates and answers.
        assert await reg.ask("k", 2) == 2
        assert len(born) == 2 and reg.restarts == 1
        await reg.shutdown()
