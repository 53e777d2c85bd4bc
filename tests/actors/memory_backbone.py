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
    async with running_backbone("memory://", journal or MemoryJournal(), **overrides) as backbone:
        yield backbone


@asynccontextmanager
async def running_backbone(url: str, journal=None, **overrides) -> AsyncIterator[Backbone]:  # noqa: ANN001
    """A running :class:`Backbone` for ``url`` (over ``journal`` when given, a
    journal it opens itself otherwise), on a manual clock; stopped on exit."""
    settings = Settings(database_url=url, session_secret="memory-backbone-secret-0123456789", **overrides)
    backbone = Backbone(settings, clock=ManualClock(), journal=journal)
    async with trio.open_nursery() as nursery:
        await nursery.start(backbone.run)
        try:
            yield backbone
        finally:
            backbone.stop()
