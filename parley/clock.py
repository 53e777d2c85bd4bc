"""Time, injectable: every rule that depends on time reads it from a Clock.

Leases, seatbelt windows and session waits are tested with
:class:`ManualClock` instead of sleeps (STYLE.md: trio's MockClock habit).
"""

from __future__ import annotations

import time


class Clock:
    """Wall-clock time in milliseconds since the epoch."""

    def now_ms(self) -> int:
        return time.time_ns() // 1_000_000

    def now(self) -> float:
        return time.time()


class ManualClock(Clock):
    """A clock that only moves when told to (for tests)."""

    def __init__(self, start_ms: int = 1_780_000_000_000) -> None:
        self._ms = start_ms

    def now_ms(self) -> int:
        return self._ms

    def now(self) -> float:
        return self._ms / 1000

    def advance(self, ms: int) -> None:
        self._ms += ms

    def set(self, ms: int) -> None:
        self._ms = ms
