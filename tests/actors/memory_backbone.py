"""A backbone on the in-memory journal: the actors without a database, a server or a socket."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import trio

from parley.actors.backbone import Backbone
from parley.clock import ManualClock
from parley.config import Settings
from parley.domain.identity import Identity
from parley.journal.memory import MemoryJournal

ALICE = Identity("sess-a", "alice")
BOB = Identity("sess-b", "bob")


@asynccontextmanager
async def memory_backbone(journal: MemoryJournal | None = None, **overrides) -> AsyncIterator[Backbone]:
    """A running :class:`Backbone` over ``journal`` (a fresh one by default)."""
    settings = Settings(database_url="memory://", session_secret="memory-backbone-secret-0123456789", **overrides)
    backbone = Backbone(settings, clock=ManualClock(), journal=journal or MemoryJournal())
    async with trio.open_nursery() as nursery:
        await nursery.start(backbone.run)
        try:
            yield backbone
        finally:
            backbone.stop()
