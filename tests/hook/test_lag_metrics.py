"""``/metrics`` shows each session's lag: messages after its cursor, per subscribed channel
(contracts/mcp.md §8.4; ADR-0016). Scraped from a real ``parley serve``."""

from __future__ import annotations

import re

import httpx

from parley.client import Actions, Parley
from tests.support.process import serve, sqlite_url

from .support import Hook, quiet

ROOMY = {"PARLEY_MAX_POSTS_PER_MINUTE": "1000", "PARLEY_GLOBAL_MAX_POSTS_PER_MINUTE": "1000"}
_LINE = re.compile(r'^parley_session_lag_messages\{(?P<labels>[^}]*)\} (?P<value>\S+)$', re.M)


def lag(url: str) -> dict[tuple[str, str, str, str], float]:
    text = httpx.get(f"{url}/metrics", timeout=10).text
    out = {}
    for match in _LINE.finditer(text):
        labels = dict(re.findall(r'(\w+)="([^"]*)"', match["labels"]))
        out[(labels["agent_id"], labels["owner"], labels["session"], labels["channel"])] = float(match["value"])
    return out


def test_each_agent_lag_is_scraped_and_survives_a_restart(tmp_path):
    db = sqlite_url(tmp_path)
    with serve(db, tmp_path, **ROOMY) as srv:
        with Parley(srv.url, "tok-a") as alice, Parley(srv.url, "tok-b") as bob:
            alice.create_channel("war-room")
            hook = Hook(tmp_path, srv.url)
            quiet(hook.run())
            hook_session = hook.state()["sessionId"]
            idle = bob.start_session([Actions.subscribe("war-room", "head")])["sessionId"]
            assert lag(srv.url) == {
                ("sess-a", "alice", hook_session, "war-room"): 0.0,
                ("sess-b", "bob", idle, "war-room"): 0.0,
            }
            for i in range(3):
                alice.append("war-room", body=f"m{i}")
            assert lag(srv.url) == {
                ("sess-a", "alice", hook_session, "war-room"): 3.0,
                ("sess-b", "bob", idle, "war-room"): 3.0,
            }
            assert hook.run().stdout  # the hook's turn delivers: its lag drops to 0
            assert lag(srv.url)[("sess-a", "alice", hook_session, "war-room")] == 0.0
    with serve(db, tmp_path, **ROOMY) as again:
        with Parley(again.url, "tok-a") as alice:
            alice.append("war-room", body="after restart")
            # Seeded from the journal at start-up: idle sessions show too.
            assert lag(again.url) == {
                ("sess-a", "alice", hook_session, "war-room"): 1.0,
                ("sess-b", "bob", idle, "war-room"): 4.0,
            }
