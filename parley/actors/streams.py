"""Live-tail slots: the process-wide cap, a cap per identity, and the anonymous pool.

Every SSE or WebSocket tail holds one slot while it is open. Under
``read_auth=open`` a tail needs no token, so without a separate bound 32
idle anonymous clients took every slot and locked out everyone with a token
(issue 20 item 8). Anonymous tails now share a pool of their own
(``PARLEY_MAX_ANONYMOUS_STREAMS``, default half of ``PARLEY_MAX_STREAMS``),
and each identity may hold at most ``PARLEY_MAX_STREAMS_PER_IDENTITY``
(default: all of them). A refusal is ``503 stream_capacity`` with
``Retry-After`` (ADR-0022).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

from ..domain.identity import Identity
from ..errors import StreamCapacity


@dataclass(frozen=True, slots=True)
class StreamStatistics:
    """What :meth:`StreamSlots.statistics` reports.

    Levels: ``open`` tails, ``anonymous_open`` of them without a token,
    ``identities`` holding at least one; the caps ``capacity`` (all tails)
    and ``anonymous_capacity``. Monotonic: ``refusals`` (``503
    stream_capacity`` answers since start), ``opened`` (slots ever taken).
    """

    open: int
    anonymous_open: int
    identities: int
    capacity: int
    anonymous_capacity: int
    opened: int
    refusals: int


class StreamSlots:
    def __init__(self, total: int, per_identity: int | None = None, anonymous: int | None = None) -> None:
        self.total = total
        self.per_identity = total if per_identity is None else per_identity
        self.anonymous = total // 2 if anonymous is None else min(anonymous, total)
        self.open = 0
        self._held: Counter[tuple[str, str] | None] = Counter()
        self._opened = 0
        self._refusals = 0
        #: The slots held now (each names its tail's transport once the route sets it).
        self.live: set[StreamSlot] = set()

    @classmethod
    def from_settings(cls, settings) -> StreamSlots:
        return cls(settings.max_streams, settings.max_streams_per_identity, settings.max_anonymous_streams)

    def acquire(self, identity: Identity | None) -> StreamSlot:
        """Take a slot for a tail of ``identity`` (``None``: anonymous) or raise ``StreamCapacity``."""
        key = None if identity is None else (identity.agent_id, identity.owner)
        limit = self.anonymous if key is None else self.per_identity
        if self.open >= self.total or self._held[key] >= limit:
            self._refusals += 1
            raise StreamCapacity(retry_after=1)
        self._opened += 1
        self.open += 1
        self._held[key] += 1
        slot = StreamSlot(self, key)
        self.live.add(slot)
        return slot

    def statistics(self) -> StreamStatistics:
        """The slots' levels and counts (trio's ``statistics()`` habit)."""
        anonymous = self._held.get(None, 0)
        return StreamStatistics(
            open=self.open,
            anonymous_open=anonymous,
            identities=len(self._held) - (1 if anonymous else 0),
            capacity=self.total,
            anonymous_capacity=self.anonymous,
            opened=self._opened,
            refusals=self._refusals,
        )

    def held_by(self, identity: Identity | None) -> int:
        return self._held[None if identity is None else (identity.agent_id, identity.owner)]

    def _release(self, slot: StreamSlot, key) -> None:
        self.live.discard(slot)
        self.open -= 1
        self._held[key] -= 1
        if not self._held[key]:
            del self._held[key]


class StreamSlot:
    def __init__(self, slots: StreamSlots, key) -> None:
        self._slots = slots
        self._key = key
        self._held = True
        #: The tail's connection (an opaque HTTP-layer object with a ``writes`` count), if known.
        self.transport: object | None = None

    def release(self) -> None:
        if self._held:
            self._held = False
            self._slots._release(self, self._key)
