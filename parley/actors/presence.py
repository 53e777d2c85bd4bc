"""Presence: which agents were seen recently, kept in memory only.

An agent is *seen* whenever one of its bearer tokens is resolved (writes,
session turns, authenticated tails), so presence costs a dict update on the
hot path and never a database write. It is per process and starts empty
after a restart (ADR-0010).
"""

from __future__ import annotations

from dataclasses import dataclass

from ..domain.identity import Identity
from ..domain.message import stamp

MAX_TRACKED = 4096


@dataclass
class Sighting:
    identity: Identity
    last_seen_ms: int


class Presence:
    def __init__(self, clock, ttl_s: float = 300.0) -> None:
        self._clock = clock
        self.ttl_ms = int(ttl_s * 1000)
        self._seen: dict[Identity, Sighting] = {}

    def seen(self, identity: Identity) -> None:
        now = self._clock.now_ms()
        sighting = self._seen.pop(identity, None)
        if sighting is None:
            sighting = Sighting(identity, now)
        sighting.last_seen_ms = max(sighting.last_seen_ms, now)
        self._seen[identity] = sighting  # most recent last (LRU order)
        if len(self._seen) > MAX_TRACKED:
            del self._seen[next(iter(self._seen))]

    def peers(self) -> list[dict[str, str]]:
        """Most recently seen first; ``idle`` once the TTL has passed."""
        now = self._clock.now_ms()
        out = []
        for sighting in reversed(self._seen.values()):
            out.append(
                {
                    "agent_id": sighting.identity.agent_id,
                    "owner": sighting.identity.owner,
                    "last_seen": stamp(sighting.last_seen_ms, 0).split("#", 1)[0],
                    "status": "active" if now - sighting.last_seen_ms < self.ttl_ms else "idle",
                }
            )
        return out
