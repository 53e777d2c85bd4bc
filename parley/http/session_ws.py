"""``/v1/ws``: session turns over one WebSocket (contracts/sessions.md, Streaming).

Auth happens on the upgrade (``Authorization: Bearer`` or, for browsers,
``Sec-WebSocket-Protocol: bearer, <token>``, answered with the ``bearer``
subprotocol); a refusal is an HTTP error response before any 101, and
``PARLEY_WEBSOCKETS=0`` answers 426.

Each text frame is a turn input. An unbound connection starts a session with
a frame that has neither ``sessionId`` nor ``continuationToken``, or resumes
one with both; the connection is then bound to that session and later frames
need no token (the held connection authorizes; a presented token must still
be current). Server frames: ``record``, ``delta``, ``outcome`` and ``error``.
An error never closes the socket; a frame over 4 MiB closes it with 1009,
and a revoke or rotate of the upgrade's token closes it with 4401 "token
revoked" (the next frame is not run; ADR-0022).
One turn at a time per connection: a frame while a turn runs gets
``turn_in_flight``.
"""

from __future__ import annotations

from typing import Any

import orjson
import trio
from quart import websocket

from ..actors.session_actor import TurnHandle, TurnRequest
from ..domain import session as S
from ..domain.identity import Identity
from ..errors import InvalidRequest, MissingSession, ParleyError, TurnInFlight, Unauthorized, UpgradeRequired
from .auth import bearer, require_identity
from .error_frames import ws_error_frame
from .revocation import TokenWatch
from .sessions import record_of
from .wire import error_response, loads_bounded

MAX_FRAME_BYTES = 4 * 1024 * 1024
CLOSE_TOO_BIG = 1009


def _authenticate(backbone) -> tuple[Identity, str | None, str]:
    """The identity of the upgrade, the subprotocol to accept (``bearer`` or none) and the token."""
    header = websocket.headers.get("authorization")
    if header is not None:
        return require_identity(backbone.tokens, header), None, bearer(header) or ""
    protocols = [p.strip() for p in (websocket.requested_subprotocols or [])]
    if len(protocols) >= 2 and protocols[0].lower() == "bearer":
        identity = backbone.tokens.resolve(protocols[1])
        if identity is not None:
            return identity, protocols[0], protocols[1]
    raise Unauthorized()


def view(backbone, metrics, label: str):
    """The view of ``/v1/ws`` (its route table entry, ADR-0033)."""

    async def session_ws():
        try:
            if not backbone.settings.websockets:
                raise UpgradeRequired()
            identity, subprotocol, token = _authenticate(backbone)
        except ParleyError as error:
            metrics.requests.labels(label, str(error.status)).inc()
            return error_response(error)
        metrics.requests.labels(label, "101").inc()
        await websocket.accept(subprotocol=subprotocol)
        watch = TokenWatch(backbone.tokens, token)
        await _Connection(backbone, identity, watch).serve()
        await watch.close_if_revoked(websocket)

    return session_ws


class _Connection:
    def __init__(self, backbone, identity: Identity, watch: TokenWatch) -> None:
        self.backbone = backbone
        self.watch = watch
        self.service = backbone.sessions
        self.identity = identity
        self.bound: str | None = None
        self.busy = False
        self.send_lock = trio.Lock()

    async def send(self, frame: dict[str, Any]) -> None:
        async with self.send_lock:
            await websocket.send(orjson.dumps(frame).decode())

    async def send_error(self, error: ParleyError) -> None:
        await self.send(ws_error_frame(error))

    async def serve(self) -> None:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self.watch.cancel_on_revoke, nursery.cancel_scope)
            while True:
                data = await websocket.receive()
                if self.watch.revoked:
                    nursery.cancel_scope.cancel()
                    return
                size = len(data) if isinstance(data, bytes) else len(data.encode("utf-8", "surrogatepass"))
                if size > MAX_FRAME_BYTES:
                    await websocket.close(CLOSE_TOO_BIG)
                    nursery.cancel_scope.cancel()
                    return
                if self.busy:
                    await self.send_error(TurnInFlight())
                    continue
                try:
                    handle = await self.submit(data)
                except ParleyError as error:
                    await self.send_error(error)
                    continue
                self.busy = True
                nursery.start_soon(self.answer, handle)

    async def submit(self, data: str | bytes) -> TurnHandle:
        """Parse a frame and hand its turn to the service; binds the connection on acceptance."""
        try:
            body = loads_bounded(data)
        except orjson.JSONDecodeError:
            raise InvalidRequest("frame must be a JSON object") from None
        if not isinstance(body, dict):
            raise InvalidRequest("frame must be a JSON object")
        fp = S.fingerprint(body, exclude=S.WS_FINGERPRINT_EXCLUDE)
        if self.bound is None and "sessionId" not in body and "continuationToken" not in body:
            turn_input = S.parse_turn_input(body, start=True, allow_ws_fields=True)
            req = TurnRequest(self.identity, turn_input, None, turn_input.idempotency_key, fp, streamed=True)
            handle = await self.service.start(req)
            self.bound = handle.session_id
            return handle
        turn_input = S.parse_turn_input(body, start=False, allow_ws_fields=True)
        token = S.presented_token(turn_input.continuation_token, None)
        if self.bound is None:
            if turn_input.session_id is None:
                raise MissingSession()
            target, held = turn_input.session_id, False
        else:
            if turn_input.session_id is not None and turn_input.session_id != self.bound:
                raise InvalidRequest("this connection is already bound to another session")
            target, held = self.bound, True
        req = TurnRequest(
            self.identity, turn_input, token, turn_input.idempotency_key, fp, streamed=True, held=held
        )
        handle = await self.service.continue_(target, req)
        self.bound = target
        return handle

    async def answer(self, handle: TurnHandle) -> None:
        try:
            await handle.done.wait()
            if handle.error is not None:
                await self.send_error(handle.error)
                return
            assert handle.response is not None
            if not handle.replayed and not handle.contended:
                for event in handle.records:
                    await self.send({"type": "record", "record": record_of(event)})
                for item in handle.response.get("output", {}).get("messages", ()):
                    await self.send({"type": "delta", "delta": item})
            await self.send({"type": "outcome", **handle.response})
        finally:
            self.busy = False
