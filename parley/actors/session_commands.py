"""What travels to a session actor: turn requests, their handles, and the commands.

Why a module of their own: the HTTP layer builds :class:`TurnRequest` and
awaits :class:`TurnHandle`, the runner reports through the handle, and the
actor decides on the commands; none of them needs the actor's code.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import trio

from ..domain.identity import Identity
from ..domain.session_input import TurnInput
from ..errors import ParleyError
from ..journal.types import StoredEvent


def stream_id(session_id: str) -> str:
    return f"session:{session_id}"


# -- requests, handles, commands -----------------------------------------------


@dataclass(frozen=True, slots=True)
class TurnRequest:
    """A parsed, authenticated turn (start or continue) on its way to the actor.

    ``held`` marks a WebSocket connection bound to the session: a frame
    without a token is authorized by the connection (it presents the current
    token implicitly).
    """

    identity: Identity
    input: TurnInput
    token: str | None
    idem_key: str | None
    fingerprint: str
    streamed: bool = False
    held: bool = False


class TurnHandle:
    """The answer of an accepted (or replayed) turn, available once ``done`` is set.

    ``records`` are the journal events the turn committed (SSE/WS ``record``).
    ``error`` is set when the turn failed after it was accepted (no rotation).
    """

    def __init__(self, session_id: str) -> None:
        self.session_id = session_id
        self.done = trio.Event()
        self.response: dict[str, Any] | None = None
        self.records: list[StoredEvent] = []
        self.error: ParleyError | None = None
        self.replayed = False
        self.contended = False

    def finish(
        self,
        response: dict[str, Any],
        records: Sequence[StoredEvent] = (),
        *,
        replayed: bool = False,
        contended: bool = False,
    ) -> TurnHandle:
        self.response = response
        self.records = list(records)
        self.replayed = replayed
        self.contended = contended
        self.done.set()
        return self

    def fail(self, error: ParleyError) -> None:
        self.error = error
        self.done.set()

    async def result(self) -> dict[str, Any]:
        """The turn response, or raise the error the turn failed with."""
        await self.done.wait()
        if self.error is not None:
            raise self.error
        assert self.response is not None
        return self.response


@dataclass(frozen=True, slots=True)
class Continue:
    req: TurnRequest
    handle: TurnHandle


@dataclass(frozen=True, slots=True)
class Start:
    req: TurnRequest
    handle: TurnHandle
    start_key: str | None = None


@dataclass(frozen=True, slots=True)
class Peek:
    """The current state (or ``None``), for a start's Idempotency-Key lookup."""


@dataclass(frozen=True, slots=True)
class Describe:
    identity: Identity
    #: the stream's last seq as just read: a state behind it is reloaded first.
    head: int = 0


@dataclass(frozen=True, slots=True)
class Close:
    identity: Identity
    token: str | None


__all__ = ["Close", "Continue", "Describe", "Peek", "Start", "TurnHandle", "TurnRequest", "stream_id"]
