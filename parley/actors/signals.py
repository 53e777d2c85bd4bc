"""Commit signals: how a live tail or a waiting session learns of a new message.

Nothing is pushed through a buffer here, so a slow reader can never grow
memory or slow a writer: a reader takes the channel's current ``trio.Event``
*before* it reads, reads everything after its cursor, and when it finds
nothing it waits on that event. A commit sets the event and installs a fresh
one, so the wake-up cannot be missed (no polling inside a process, D7).
While :meth:`CommitSignals.run_waker` runs, the events of a commit are set
:data:`WAKE_STEPS` scheduling steps after it, so the appenders' replies go
out before the live tails' writes (ADR-0054).
"""

from __future__ import annotations

import trio

#: Scheduling steps from a commit to its waiters' wake-up: the reply to an
#: appender needs one step (Hypercorn's send lock) before its write, so two
#: put every 201 of the batch ahead of the tails' writes (ADR-0054).
WAKE_STEPS = 2


class CommitSignals:
    def __init__(self) -> None:
        self._events: dict[str, trio.Event] = {}
        #: Heartbeat ticks so far (:meth:`beat`); a live tail that wakes to a
        #: new count sends a keep-alive.
        self.beats = 0
        #: Commit events waiting for :meth:`run_waker` (``None``: no waker, set at once).
        self._deferred: list[trio.Event] | None = None
        self._kick = trio.Event()

    async def run_waker(self, *, steps: int = WAKE_STEPS, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Set the events of :meth:`notify` ``steps`` scheduling steps later (ADR-0054).

        The committing actor answers its batch right after :meth:`notify`;
        with the wake-up deferred, each reply's task takes its steps to the
        201's write before the live tails wake and write, so an ack never
        waits for 64 tails (it is still sent only after the commit). Until
        this runs (and after it ends) :meth:`notify` sets the event at once.
        """
        self._deferred = []
        task_status.started()
        try:
            while True:
                await self._kick.wait()
                self._kick = trio.Event()
                for _ in range(steps - 1):
                    await trio.lowlevel.cancel_shielded_checkpoint()
                events, self._deferred = self._deferred, []
                for event in events:
                    event.set()
        finally:
            events, self._deferred = self._deferred or [], None
            for event in events:
                event.set()

    def event(self, channel: str) -> trio.Event:
        """The event the next commit on ``channel`` will set."""
        event = self._events.get(channel)
        if event is None:
            event = self._events[channel] = trio.Event()
        return event

    def notify(self, channel: str) -> None:
        event = self._events.pop(channel, None)
        if event is None:
            return
        if self._deferred is None:
            event.set()
            return
        self._deferred.append(event)
        self._kick.set()

    def notify_all(self) -> None:
        """Wake every waiter (used on shutdown so waits end early)."""
        events, self._events = self._events, {}
        for event in events.values():
            event.set()

    def beat(self) -> None:
        """A heartbeat tick: wake every waiter. Live tails then send a
        keep-alive; a waiting session finds nothing new and waits on."""
        self.beats += 1
        self.notify_all()


async def wait_any(events: list[trio.Event], timeout: float) -> bool:
    """Wait until one of ``events`` is set or ``timeout`` passes; True if woken."""
    if any(e.is_set() for e in events):
        return True
    woken = False
    with trio.move_on_after(timeout):
        async with trio.open_nursery() as nursery:

            async def watch(e: trio.Event) -> None:
                nonlocal woken
                await e.wait()
                woken = True
                nursery.cancel_scope.cancel()

            for e in events:
                nursery.start_soon(watch, e)
    return woken


class Stamper:
    """The backbone-wide ``ts`` counter (channels.md §2.4).

    Seeded from the journal's last position at start and raised past every
    committed position it hears of, so stamps written after a restart sort
    after every stamp written before it (a stamp never exceeds the position
    of the event that carries it).
    """

    def __init__(self, clock, start: int = 0) -> None:
        self._clock = clock
        self._seq = start

    def observe(self, position: int) -> None:
        if position > self._seq:
            self._seq = position

    def next(self) -> str:
        from ..domain.message import stamp

        self._seq += 1
        return stamp(self._clock.now_ms(), self._seq)
