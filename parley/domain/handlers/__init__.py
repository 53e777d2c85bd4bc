"""Session handlers: what a session's turn adds to its output.

A handler is chosen when a session starts (``"handler"``, default
``"inbox"``) and is fixed for the session's life. The turn machinery (actions,
delivery, commit, token rotation) is the same for every handler; a handler
only *adds* keys to ``output`` from a read-only view of the turn, so it can
never break the replay-safety of the protocol. Handlers are pure: no I/O, no
clock; what they need is gathered for them (``wants_history`` asks for every
message of the subscribed channels, not just the delivered ones).

Handlers are found through the ``parley.handlers`` entry-point group, so a
plug-in package can add one without touching parley::

    [project.entry-points."parley.handlers"]
    mine = "my_package.handlers:MyHandler"

An entry point names a class (or any zero-argument callable) returning an
object with ``name``, ``wants_history`` and ``decide``.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from typing import Any, Protocol, runtime_checkable

__all__ = ["ENTRY_POINT_GROUP", "Handler", "TurnView", "load_handlers"]

ENTRY_POINT_GROUP = "parley.handlers"
log = logging.getLogger("parley.handlers")


@dataclass(frozen=True, slots=True)
class TurnView:
    """What a handler sees of one turn, after its actions and delivery.

    ``delivered`` are the ``output.messages`` elements of the turn;
    ``history`` maps each subscribed channel to all of its messages (only
    when the handler ``wants_history``, else empty).
    """

    session_id: str
    turn: int
    subscriptions: Mapping[str, int]
    results: Sequence[Any]
    delivered: Sequence[Mapping[str, Any]]
    history: Mapping[str, Sequence[Mapping[str, Any]]] = field(default_factory=dict)


@runtime_checkable
class Handler(Protocol):
    name: str
    wants_history: bool

    def decide(self, view: TurnView) -> dict[str, Any]:
        """Extra ``output`` keys for this turn (``{}`` for none); must be JSON-able.

        Keys ``results``, ``messages`` and ``cursors`` are reserved.
        """
        ...


def load_handlers() -> dict[str, Handler]:
    """Every installed handler by name; a broken plug-in is logged and skipped."""
    found: dict[str, Handler] = {}
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        try:
            handler = ep.load()()
        except Exception:  # a broken plug-in must not take the server down
            log.exception("cannot load session handler %r", ep.name)
            continue
        found[ep.name] = handler
    if "inbox" not in found:  # the default must exist even without entry points
        from .inbox import InboxHandler

        found["inbox"] = InboxHandler()
    return found
