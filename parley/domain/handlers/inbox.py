"""The default handler: the turn output is exactly results, messages and cursors."""

from __future__ import annotations

from typing import Any

from . import TurnView


class InboxHandler:
    name = "inbox"
    wants_history = False

    def decide(self, view: TurnView) -> dict[str, Any]:
        return {}
