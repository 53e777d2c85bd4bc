"""WebSocket routes: the channel live tail (D8) and, when sessions are on, ``/v1/ws``.

``GET /channels/:c/ws[?since=N]`` sends one text frame per message,
``{"cursor": N, "message": {…}}`` with the message sanitised exactly like an
SSE ``data:`` line (ADR-0006). A refusal (unknown channel, bad cursor,
capacity, auth) is an ordinary HTTP error response before any 101.
``PARLEY_WEBSOCKETS=0`` answers every upgrade 426.
"""

from __future__ import annotations

import orjson
from quart import websocket

from ..domain.message import sanitize_message_fields
from ..errors import InvalidCursor, ParleyError, StreamCapacity, UpgradeRequired
from .auth import require_identity
from .stream import _since, tail
from .wire import error_response


def register(app, backbone, metrics) -> None:
    @app.websocket("/channels/<channel>/ws")
    async def channel_ws(channel: str):
        try:
            if not backbone.settings.websockets:
                raise UpgradeRequired()
            if backbone.settings.read_auth:
                require_identity(backbone.tokens, websocket.headers.get("authorization"))
            since = _since(websocket)
            slug = backbone.check_channel(channel)
            head = backbone.directory.head(slug)
            if since is not None and since > head:
                raise InvalidCursor(f"cursor must be an integer in [0, {head}]")
            if backbone.open_streams >= backbone.settings.max_streams:
                raise StreamCapacity(retry_after=1)
        except ParleyError as error:
            metrics.requests.labels("channel_ws", str(error.status)).inc()
            return error_response(error)
        backbone.open_streams += 1
        try:
            await websocket.accept()
            start = head if since is None else since
            async for cursor, message in tail(backbone, slug, start):
                if message is None:
                    continue
                payload = {"cursor": cursor, "message": sanitize_message_fields(message)}
                await websocket.send(orjson.dumps(payload).decode())
        finally:
            backbone.open_streams -= 1

    if getattr(backbone, "sessions", None) is not None:
        from . import session_ws

        session_ws.register(app, backbone, metrics)
