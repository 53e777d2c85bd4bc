"""StreamSlots.statistics (ADR-0038): open, anonymous and refused tails."""

from __future__ import annotations

import pytest

from parley.actors.streams import StreamSlots
from parley.domain.identity import Identity
from parley.errors import StreamCapacity


def test_statistics_follow_slots_taken_released_and_refused() -> None:
    slots = StreamSlots(3, per_identity=1, anonymous=1)
    alice = slots.acquire(Identity("a1", "alice"))
    anonymous = slots.acquire(None)
    with pytest.raises(StreamCapacity):
        slots.acquire(None)  # the anonymous pool holds one
    with pytest.raises(StreamCapacity):
        slots.acquire(Identity("a1", "alice"))  # one per identity
    stats = slots.statistics()
    assert (stats.open, stats.anonymous_open, stats.identities) == (2, 1, 1)
    assert (stats.capacity, stats.anonymous_capacity, stats.opened, stats.refusals) == (3, 1, 2, 2)
    alice.release()
    anonymous.release()
    after = slots.statistics()
    assert (after.open, after.anonymous_open, after.identities, after.opened, after.refusals) == (0, 0, 0, 2, 2)
