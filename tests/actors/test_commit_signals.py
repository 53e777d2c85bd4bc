"""Commit signals wake the live tails after the committing actor's replies (ADR-0054)."""

from __future__ import annotations

import trio
from trio.testing import wait_all_tasks_blocked

from parley.actors.signals import CommitSignals


async def _race(signals: CommitSignals) -> list[str]:
    """A tail waiting on the channel and an appender waiting for its reply, both
    released by one commit (notify, then the reply, as the channel actor does);
    the appender needs one more step before it writes (Hypercorn's send lock)."""
    order: list[str] = []
    wake = signals.event("c")
    reply = trio.Event()

    async def tail() -> None:
        await wake.wait()
        order.append("tail writes")

    async def appender() -> None:
        await reply.wait()
        await trio.lowlevel.cancel_shielded_checkpoint()  # the send lock's checkpoint
        order.append("201 written")

    async with trio.open_nursery() as nursery:
        nursery.start_soon(tail)
        nursery.start_soon(appender)
        await wait_all_tasks_blocked()
        signals.notify("c")
        reply.set()
    return order


async def test_with_the_waker_every_reply_is_written_before_the_tails_wake():
    signals = CommitSignals()
    async with trio.open_nursery() as nursery:
        await nursery.start(signals.run_waker)
        for _ in range(20):  # trio reverses a run batch at random: one pass could pass by luck
            assert await _race(signals) == ["201 written", "tail writes"]
        nursery.cancel_scope.cancel()


async def test_without_the_waker_notify_wakes_at_once():
    signals = CommitSignals()
    wake = signals.event("c")
    signals.notify("c")
    assert wake.is_set()
    assert signals.event("c") is not wake  # the next commit gets a fresh event


async def test_a_wake_pending_when_the_waker_ends_is_not_lost():
    signals = CommitSignals()
    wake = signals.event("c")
    with trio.CancelScope() as scope:
        async with trio.open_nursery() as nursery:
            await nursery.start(signals.run_waker)
            signals.notify("c")
            assert not wake.is_set()  # deferred
            scope.cancel()
    assert wake.is_set()
    later = signals.event("c")
    signals.notify("c")
    assert later.is_set()  # after the waker: at once again


async def test_a_deferred_wake_still_reaches_every_waiter_of_the_commit():
    signals = CommitSignals()
    woken: list[int] = []
    async with trio.open_nursery() as nursery:
        await nursery.start(signals.run_waker)
        wake = signals.event("c")

        async def waiter(i: int) -> None:
            await wake.wait()
            woken.append(i)

        for i in range(8):
            nursery.start_soon(waiter, i)
        await wait_all_tasks_blocked()
        signals.notify("c")
        await wait_all_tasks_blocked()
        assert sorted(woken) == list(range(8))
        nursery.cancel_scope.cancel()
