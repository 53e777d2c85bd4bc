"""A real parley server on a real loopback socket, inside the test's trio run.

``running_server(settings, clock=…)`` migrates the database, starts the
backbone and Hypercorn on port 0, and yields a :class:`LiveServer` with the
base URL and the backbone (so tests can reach the clock). Clients talk to it
over TCP with httpx, exactly like any other client.
"""

from __future__ import annotations

from contextlib import asynccontextmanager
from dataclasses import dataclass
from functools import partial

import httpx
import trio

from parley.actors.backbone import Backbone
from parley.clock import Clock, ManualClock
from parley.config import SeedToken, Settings
from parley.journal import migrate
from parley.server import run_server

TOKENS = (
    SeedToken("tok-a", "sess-a", "alice"),
    SeedToken("tok-b", "sess-b", "bob"),
    SeedToken("tok-c", "sess-c", "carol"),
)
ADMIN = "admin-secret"


@dataclass
class LiveServer:
    url: str
    backbone: Backbone
    stop: trio.Event

    @property
    def clock(self) -> ManualClock:
        assert isinstance(self.backbone.clock, ManualClock)
        return self.backbone.clock

    def client(self, token: str | None = None, **kwargs) -> httpx.AsyncClient:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return httpx.AsyncClient(base_url=self.url, headers=headers, timeout=30, **kwargs)


def test_settings(database_url: str, **overrides) -> Settings:
    base = Settings(
        host="127.0.0.1",
        port=0,
        database_url=database_url,
        tokens=TOKENS,
        admin_token=ADMIN,
        stream_heartbeat_s=15.0,
    )
    return base.replace(**overrides)


test_settings.__test__ = False  # a helper, not a test


@asynccontextmanager
async def running_server(settings: Settings, *, clock: Clock | None = None):
    await trio.to_thread.run_sync(migrate.upgrade, settings.database_url)
    backbone = Backbone(settings, clock=clock or ManualClock())
    stop = trio.Event()
    async with trio.open_nursery() as nursery:
        url = await nursery.start(partial(run_server, settings, backbone=backbone, stop=stop))
        try:
            yield LiveServer(url, backbone, stop)
        finally:
            stop.set()
