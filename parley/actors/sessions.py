"""Sessions in the actor layer: :class:`SessionService` and :class:`SessionActor`.

See :mod:`parley.actors.session_service` and :mod:`parley.actors.session_actor`.
"""

from .session_actor import SessionActor, TurnHandle, TurnRequest
from .session_service import SessionService

__all__ = ["SessionActor", "SessionService", "TurnHandle", "TurnRequest"]
