"""A batch's view of a channel: the committed state plus its uncommitted events.

The channel actor decides every write of a batch before one journal append
commits them all, and each decision must see the ones before it (a second
post of the same ``msg_id`` replays the first, the eleventh message of a
channel capped at ten is refused). :class:`PendingState` layers the batch's
events over the committed :class:`~parley.domain.channel.ChannelState`
without touching it: :func:`parley.domain.channel.apply` folds into the view
exactly as into a state (the same attributes, duck-typed), and only after
the commit does the actor fold the same events into the state itself. A
commit that fails or loses a race to another process drops the view, so
nothing ever has to be taken back out of the state (ADR-0037).

Every layer is small: one batch adds at most a few hundred messages, while
the state under it can hold 10,000.
"""

from __future__ import annotations

from typing import Any

from .channel import ChannelState, describe
from .claims import ClaimEntry, ClaimLedger

__all__ = ["PendingState"]

_MISSING: Any = object()


class _Layered:
    """A dict's ``get`` / ``in`` / ``[]=`` over a base dict; writes stay on top."""

    __slots__ = ("base", "top")

    def __init__(self, base: dict[Any, Any]) -> None:
        self.base = base
        self.top: dict[Any, Any] = {}

    def get(self, key: Any, default: Any = None) -> Any:
        value = self.top.get(key, _MISSING)
        return self.base.get(key, default) if value is _MISSING else value

    def __contains__(self, key: object) -> bool:
        return key in self.top or key in self.base

    def __getitem__(self, key: Any) -> Any:
        value = self.get(key, _MISSING)
        if value is _MISSING:
            raise KeyError(key)
        return value

    def __setitem__(self, key: Any, value: Any) -> None:
        self.top[key] = value


class _LayeredLedger:
    """A claim ledger's ``get`` / ``put`` / ``delete``; a delete hides the base entry."""

    __slots__ = ("base", "top")

    def __init__(self, base: ClaimLedger) -> None:
        self.base = base
        self.top: dict[str, ClaimEntry | None] = {}

    def get(self, key: str) -> ClaimEntry | None:
        if key in self.top:
            return self.top[key]
        return self.base.get(key)

    def put(self, key: str, entry: ClaimEntry) -> None:
        self.top[key] = entry

    def delete(self, key: str) -> ClaimEntry | None:
        entry = self.get(key)
        self.top[key] = None
        return entry


class _LayeredMessages:
    """The message log's length, indexing and ``append`` over the committed list."""

    __slots__ = ("added", "base")

    def __init__(self, base: list[dict[str, Any]]) -> None:
        self.base = base
        self.added: list[dict[str, Any]] = []

    def __len__(self) -> int:
        return len(self.base) + len(self.added)

    def __getitem__(self, index: int) -> dict[str, Any]:
        committed = len(self.base)
        if index < 0:
            index += committed + len(self.added)
        if index < committed:
            return self.base[index]
        return self.added[index - committed]

    def append(self, message: dict[str, Any]) -> None:
        self.added.append(message)


class PendingState:
    """The attributes :func:`~parley.domain.channel.apply` and the ``decide_*``
    functions use, reading through to ``committed`` (never writing to it)."""

    def __init__(self, committed: ChannelState | PendingState) -> None:
        # ``committed`` may itself be a view (the batch still committing,
        # ADR-0057): each layer reads through the one below it.
        self.committed = committed
        self.name = committed.name
        self.descriptor = committed.descriptor
        self.messages = _LayeredMessages(committed.messages)
        self.ledger = _LayeredLedger(committed.ledger)
        self.artifacts = _Layered(committed.artifacts)
        self.artifact_bytes = committed.artifact_bytes
        self.msg_ids = _Layered(committed.msg_ids)
        self.idem = _Layered(committed.idem)
        self.archived = committed.archived
        self.seq = committed.seq

    def rebase(self, committed: ChannelState) -> None:
        """Read through to ``committed`` instead of the view this one was stacked on.

        The channel actor decides its next batch on a view stacked on the
        batch still committing (ADR-0057). Once that batch's events are folded
        into ``committed``, the view under this one would count them twice
        (its layer and its base both hold them); ``committed`` now holds
        exactly what that view did, so this view's own layer sits on it.
        """
        self.committed = committed
        self.messages.base = committed.messages
        self.ledger.base = committed.ledger
        self.artifacts.base = committed.artifacts
        self.msg_ids.base = committed.msg_ids
        self.idem.base = committed.idem

    @property
    def exists(self) -> bool:
        return self.descriptor is not None

    @property
    def head(self) -> int:
        return len(self.messages)

    def describe(self) -> dict[str, Any]:
        return describe(self)  # one home for the wire's descriptor
