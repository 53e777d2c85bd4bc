"""The journal tailer: what other processes committed reaches this one.

Inside a process, actors push commits to waiters directly. Across processes
sharing one database, this task reads the global log (``position > last``,
gap-free because positions are assigned in commit order, ADR-0002) with a
short poll, and for every event this process has not seen: a channel actor
in memory folds the tail in and wakes its tails; an idle channel only moves
its head in the directory; a new channel joins the directory; token changes
reach the token store (ADR-0007).
"""

from __future__ import annotations

import logging

import trio

from ..journal.errors import JournalUnavailable
from ..journal.stream_ids import TOKENS, channel_of, session_of
from .channel_actor import Refresh

log = logging.getLogger("parley.tailer")
PAGE = 1000


class JournalTailer:
    """Reads what other processes committed.

    Polls every ``interval`` seconds; on Postgres a commit notification from
    another process (journal.notify) wakes it at once, and while that
    listener is connected the poll is only a safety net every ``fallback``
    seconds.
    """

    def __init__(self, backbone, *, interval: float = 0.05, fallback: float = 0.5) -> None:
        self.backbone = backbone
        self.interval = interval
        self.fallback = fallback
        self.position = 0
        self.foreign_events = 0
        #: Journal reads, and the polls that skipped one because nothing was committed (ADR-0049).
        self.reads = 0
        self.skipped = 0
        self._wake = trio.Event()
        self._poked = False

    def poke(self, position: int = 0) -> None:
        """Read the journal now (another process committed up to ``position``)."""
        self._poked = True
        self._wake.set()

    def _own_commit(self, events) -> None:
        """Our own commit batch: skip over it when nothing foreign came before it."""
        positions = [e.position for e in events]
        if positions and positions[0] == self.position + 1 and positions[-1] - positions[0] == len(positions) - 1:
            self.position = positions[-1]

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        journal = self.backbone.journal
        self.position = await journal.last_position()
        journal.on_commit.append(self._own_commit)
        async with trio.open_nursery() as nursery:
            await nursery.start(journal.listen, self.poke)
            task_status.started()
            await self._follow(journal)

    async def _follow(self, journal) -> None:
        # SQLite: a poll reads the journal only when the probe says a commit
        # happened since the last complete read (ADR-0049); sampled *before*
        # the read, so a commit during the read is seen by the next poll.
        try:
            probe = await journal.change_probe()
        except Exception as exc:  # no probe (database trouble at start): every poll reads, as before
            log.warning("journal change probe unavailable: %s", type(exc).__name__)
            probe = None
        seen: int | None = None
        while True:
            # A fresh event before the read: a poke during the read is not lost.
            self._wake = trio.Event()
            version = probe() if probe is not None else None
            if version is not None and version == seen and not self._poked:
                self.skipped += 1
                with trio.move_on_after(self.fallback if journal.listening else self.interval):
                    await self._wake.wait()
                continue
            self._poked = False
            seen = None
            try:
                self.reads += 1
                events = await journal.read_all(self.position, PAGE)
            except Exception as exc:
                # The tailer must outlive any database trouble (down, locked,
                # schema being migrated); readiness reports it meanwhile.
                if not isinstance(exc, JournalUnavailable):
                    log.warning("journal tailer read failed: %s", type(exc).__name__)
                await trio.sleep(1)
                continue
            foreign: dict[str, list] = {}
            for event in events:
                if event.position <= self.position:
                    continue  # skipped as our own commit meanwhile
                self.position = event.position
                self._observe(event, foreign)
            for name, batch in foreign.items():
                # One Refresh per channel per page, carrying the events: the actor
                # folds them without reading its stream again (ADR-0057).
                try:
                    self.backbone.channels.tell(name, Refresh(tuple(batch)))
                except Exception:  # a full mailbox will catch up on its next append
                    pass
            if len(events) < PAGE:
                seen = version  # read to the end as of ``version``
                with trio.move_on_after(self.fallback if journal.listening else self.interval):
                    await self._wake.wait()

    def _observe(self, event, foreign: dict[str, list]) -> None:
        backbone = self.backbone
        backbone.stamper.observe(event.position)
        stream = event.stream_id
        name = channel_of(stream)
        if name is not None:
            directory = backbone.directory
            if event.seq == 1 and event.type == "channel_created":
                if not directory.exists(name):
                    data = event.data
                    directory.add(data["descriptor"], owner=data["descriptor"].get("created_by", ""), idem=data.get("idem"))
                    self.foreign_events += 1
                return
            if not directory.observe(name, event.seq, event.type):
                return  # ours, or already folded in
            self.foreign_events += 1
            if backbone.channels.is_active(name):
                foreign.setdefault(name, []).append(event)
            else:
                backbone.signals.notify(name)
        elif stream == TOKENS:
            backbone.tokens.observe(event)
        elif session_of(stream) is not None and backbone.sessions is not None:
            observe = getattr(backbone.sessions, "observe", None)
            if observe is not None:
                observe(event)
