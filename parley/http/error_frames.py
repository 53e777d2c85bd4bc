"""One shape for an error inside an open stream (ADR-0034).

Before a stream opens, a refusal is the ordinary JSON envelope
(:func:`parley.http.wire.error_response`). Once a WebSocket or an SSE turn
is open, an error travels in the stream, and every stream uses the
envelope's inner object ``{"code", "message", "issues"?}``:

* a WebSocket frame ``{"type": "error"[, "id"], "code", "message"[, "issues"]}``
  (the channel WebSocket echoes the client frame's ``id``; ``/v1/ws`` frames
  have none);
* an SSE event ``event: error`` whose data is that inner object.
"""

from __future__ import annotations

from typing import Any

from ..errors import ParleyError

#: No ``id`` member at all (``None`` is an id: a frame whose own ``id`` could not be read).
NO_ID: Any = object()


def error_body(error: ParleyError) -> dict[str, Any]:
    """``{"code", "message", "issues"?}``, exactly the envelope's inner object."""
    return error.envelope()["error"]


def ws_error_frame(error: ParleyError, frame_id: Any = NO_ID) -> dict[str, Any]:
    """The WebSocket error frame (a dict: the connection serialises and sends it)."""
    frame: dict[str, Any] = {"type": "error"}
    if frame_id is not NO_ID:
        frame["id"] = frame_id
    frame.update(error_body(error))
    return frame


def sse_error_event(error: ParleyError) -> tuple[str, dict[str, Any]]:
    """The SSE error event as ``(event name, data)``."""
    return "error", error_body(error)


__all__ = ["NO_ID", "error_body", "sse_error_event", "ws_error_frame"]
