"""Typed side effects that commit in an append's own transaction.

An append may carry one :data:`Effect`: artifact bytes to store, seatbelt
windows to charge, a session lease to release. The actor layer names *what*
must commit with its events; how that becomes SQL is decided here, in the
journal, so no function of a database connection crosses the layer boundary
(issue 17, item 1; ADR-0026). A failing effect (``WindowFull``, a moved lease
epoch) rolls back its own append only, exactly like a version conflict.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Union

__all__ = [
    "AllOf",
    "ChargeWindows",
    "Effect",
    "PutBlobs",
    "ReleaseLease",
    "WindowCharge",
    "apply_effect",
    "check_effect",
    "chain",
]


@dataclass(frozen=True, slots=True)
class WindowCharge:
    """Stamps (ms) to add to one window: ``scope`` is ``channel``, ``global`` or ``create``."""

    scope: str
    key: str
    cap: int
    stamps: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class PutBlobs:
    """Store content-addressed artifact bytes of ``channel`` (``(sha256, bytes)`` pairs)."""

    channel: str
    blobs: tuple[tuple[str, bytes], ...]


@dataclass(frozen=True, slots=True)
class ChargeWindows:
    """Record seatbelt stamps in the shared windows, or refuse with ``WindowFull`` (ADR-0025)."""

    charges: tuple[WindowCharge, ...]
    window_ms: int


@dataclass(frozen=True, slots=True)
class ReleaseLease:
    """Give back a session turn lease; ``ConcurrencyError`` if its epoch moved."""

    session_id: str
    epoch: int


@dataclass(frozen=True, slots=True)
class AllOf:
    """Several effects, applied in order."""

    effects: tuple[Effect, ...]


Effect = Union[PutBlobs, ChargeWindows, ReleaseLease, AllOf]


def chain(effects: Sequence[Effect | None]) -> Effect | None:
    """One effect for ``effects`` in order (None when there are none)."""
    present = tuple(e for e in effects if e is not None)
    if not present:
        return None
    if len(present) == 1:
        return present[0]
    return AllOf(present)



def check_effect(effect: object) -> Effect:
    """``effect`` if it is one of the effects above; TypeError otherwise."""
    if not isinstance(effect, (AllOf, ChargeWindows, PutBlobs, ReleaseLease)):
        raise TypeError(f"side_effect must be a parley.journal.effects value, not {type(effect).__name__}")
    if isinstance(effect, AllOf):
        for inner in effect.effects:
            check_effect(inner)
    return effect


def apply_effect(conn: Any, effect: Effect) -> None:
    """Run ``effect`` on the SQL connection of the append's savepoint."""
    from .leases import release_lease
    from .store import put_artifact
    from .windows import charge_windows

    if isinstance(effect, AllOf):
        for inner in effect.effects:
            apply_effect(conn, inner)
    elif isinstance(effect, PutBlobs):
        for sha, data in effect.blobs:
            put_artifact(conn, effect.channel, sha, data)
    elif isinstance(effect, ChargeWindows):
        charge_windows(effect.charges, effect.window_ms)(conn)
    elif isinstance(effect, ReleaseLease):
        release_lease(conn, effect.session_id, effect.epoch)
    else:
        raise TypeError(f"not a journal effect: {type(effect).__name__}")
