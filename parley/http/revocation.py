"""Revocation reaches open WebSockets (issue 20 item 2, ADR-0022).

Identity is resolved once, at the upgrade; a :class:`TokenWatch` keeps the
connection honest afterwards. ``revoked`` is exact at every frame (the token
store sets the event in the same step that drops the token), so a frame
read after a revoke or rotate is refused; :meth:`TokenWatch.cancel_on_revoke`
ends the connection's tasks at once, and the handler then closes the socket
with :data:`CLOSE_REVOKED`. In another process the same happens once the
journal tailer has brought the revocation over (milliseconds on Postgres).
"""

from __future__ import annotations

import trio

#: Close code for "the token this connection was opened with was revoked"
#: (4000-4999 is the application range; 4401 mirrors HTTP 401).
CLOSE_REVOKED = 4401
REVOKED_REASON = "token revoked"


class TokenWatch:
    def __init__(self, tokens, token: str | None) -> None:
        self._event = tokens.revoked_event(token) if token else None

    @property
    def revoked(self) -> bool:
        return self._event is not None and self._event.is_set()

    async def cancel_on_revoke(self, scope: trio.CancelScope) -> None:
        if self._event is None:
            return
        await self._event.wait()
        scope.cancel()

    async def close_if_revoked(self, websocket) -> bool:
        """Close the socket with 4401 if the token was revoked; True if it was."""
        if not self.revoked:
            return False
        try:
            await websocket.close(CLOSE_REVOKED, REVOKED_REASON)
        except Exception:  # already closed by the peer
            pass
        return True
