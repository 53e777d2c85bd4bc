"""WebSocket routes: the channel live tail (D8), pipelined appends, and ``/v1/ws``.

``GET /channels/:c/ws[?since=N][&tail=0]`` sends one text frame per message,
``{"cursor": N, "message": {…}}`` with the message sanitised exactly like an
SSE ``data:`` line (ADR-0006). A refusal (unknown channel, bad cursor,
capacity, auth) is an ordinary HTTP error response before any 101.
``PARLEY_WEBSOCKETS=0`` answers every upgrade 426.

The same socket ingests appends without one request per message (ADR-0009):
a client frame ``{"id": <any>, "append": {message}}`` (or ``"claim"``) runs
exactly the HTTP route's rules under the bearer given on the upgrade, and is
answered by ``{"type": "ack", "id", "status", "body"}`` once it has committed
(plus ``"replayed": true`` for an idempotent replay of a stored ``msg_id``),
or ``{"type": "error", "id", "code", "message"[, "issues"]}``. Frames are
processed concurrently (up to 256 in flight), so they reach the channel
actor's mailbox together and commit in shared batches.

A batch frame ``{"id", "append_many": [message, …]}`` (at most 256) appends
each message exactly as its own ``append`` frame would and is answered by ONE
frame ``{"type": "acks", "id", "results": [slot, …]}``, one slot per message
in order: ``{"status", "body"[, "replayed"]}`` or ``{"status", "error":
{"code", "message"[, "issues"]}[, "retry_after"]}`` (ADR-0039).

Bounds (ADR-0022): frames over 4 MiB close with 1009 before they are
buffered; a connection without a token may send frames of 4 KiB at most,
and its first frame is answered ``unauthorized`` and closes it with 1008.
When the upgrade's token is revoked or rotated, the next frame is refused
and the socket closes with 4401 "token revoked". The tail holds a stream
slot (per identity; anonymous tails share a pool) and is dropped if its
client stops reading; it resumes with ``?since=<cursor>``.
"""

from __future__ import annotations

import orjson
import trio
from quart import websocket

from ..domain.outcomes import Replayed
from ..errors import InvalidJson, InvalidRequest, ParleyError, Unauthorized, UpgradeRequired
from .auth import bearer
from .error_frames import ws_error_frame
from .revocation import TokenWatch
from .ws_frames import FRAME_CAP, STREAM as WS_STREAM, TextBatch, batching, text_frames
from .stream import PAGES, bound_tail_connection, open_tail, tail
from .outcomes import status_of
from .wire import error_response, loads_bounded


def channel_ws_view(backbone, metrics, label: str):
    """The view of ``/channels/<channel>/ws`` (its route table entry, ADR-0033)."""

    async def channel_ws(channel: str):
        try:
            if not backbone.settings.websockets:
                raise UpgradeRequired()
            opening = open_tail(backbone, websocket, channel)
        except ParleyError as error:
            metrics.requests.labels(label, str(error.status)).inc()
            return error_response(error)
        identity, slug, start, slot = opening.identity, opening.slug, opening.start, opening.slot
        token = bearer(websocket.headers.get("authorization"))
        watch = TokenWatch(backbone.tokens, token if identity is not None else None)
        if identity is None:
            # Its frames can only be refused: refuse them before they are buffered.
            websocket.scope[FRAME_CAP] = ANONYMOUS_FRAME_PEEK
        want_tail = websocket.args.get("tail", "1") not in ("0", "false")
        slot.transport = bound_tail_connection(backbone.settings)
        send_lock = trio.Lock()
        batch_writes = batching()

        async def send(payload: dict) -> None:
            async with send_lock:
                await websocket.send(orjson.dumps(payload).decode())

        transport = slot.transport
        # Hypercorn's stream of this socket (set in the scope before the app ran),
        # looked up once: a direct write needs it and the connection (ADR-0054).
        ws_stream = websocket.scope.get(WS_STREAM) if batch_writes and transport is not None else None

        async def send_page(first_cursor: int, encoded: list[bytes]) -> None:
            # One text frame per message (the contract), all of a commit batch in
            # one transport write (ADR-0042), each built from the stored bytes,
            # the frames once for every tail sending this page (ADR-0054).
            def texts() -> list[str]:
                return [payload.decode() for payload in _page_payloads(first_cursor, encoded)]

            # A free lock is taken without a checkpoint, so an idle connection's
            # page goes out in the same scheduling step as the wake-up (ADR-0054).
            if send_lock.locked():
                await send_lock.acquire()
            else:
                send_lock.acquire_nowait()
            try:
                if batch_writes:
                    frames = PAGES.get("ws", first_cursor, encoded, _page_frames)
                    sent = ws_stream.write_frames_now(frames, transport) if ws_stream is not None else None
                    if sent is None:
                        await websocket.send(TextBatch(texts, frames, transport))
                    elif sent < len(frames):
                        await ws_stream.send_raw(frames[sent:])
                else:
                    for text in texts():
                        await websocket.send(text)
            finally:
                send_lock.release()

        async def stream_tail() -> None:
            async for cursor, encoded in tail(backbone, slug, start):
                if encoded is not None:
                    await send_page(cursor + 1, encoded)

        close_code = None
        try:
            await websocket.accept()
            async with trio.open_nursery() as nursery:
                if want_tail:
                    nursery.start_soon(stream_tail)
                nursery.start_soon(watch.cancel_on_revoke, nursery.cancel_scope)
                close_code = await ingest(backbone, slug, identity, send, nursery, watch)
                nursery.cancel_scope.cancel()
            if not await watch.close_if_revoked(websocket) and close_code is not None:
                await websocket.close(close_code, "write frames need a token")
        finally:
            slot.release()

    return channel_ws


def _page_payloads(first_cursor: int, encoded: list[bytes]) -> list[bytes]:
    """A tail page's messages as their frames' payloads: ``{"cursor": N, "message": …}`` each."""
    return [b'{"cursor":%d,"message":%s}' % (cursor, data) for cursor, data in enumerate(encoded, first_cursor)]


def _page_frames(first_cursor: int, encoded: list[bytes]) -> bytes:
    """The text frames of a tail page, as one buffer (ADR-0054)."""
    return text_frames(_page_payloads(first_cursor, encoded))


#: Single ``append``/``claim`` frames in flight per socket.
MAX_IN_FLIGHT = 256
#: Messages of ``append_many`` frames in flight per socket: four frames of
#: 256, the SDK's window and the channel actor's batch (ADR-0061). With one
#: frame's worth, a socket's next frame was read only after the last one's
#: commit, so a channel fed by one socket committed 256 at a time and its
#: actor never had a batch to decide while one committed.
MAX_BATCH_IN_FLIGHT = 1024
#: Messages one ``append_many`` frame may carry (ADR-0039).
MAX_BATCH = 256
WRITE_OPS = ("append", "claim", "append_many")


class InFlight:
    """A weighted semaphore: a batch frame holds one unit per message, so a
    socket never has more than ``limit`` messages being decided at once."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.used = 0
        self._freed = trio.Event()

    async def acquire(self, weight: int) -> None:
        while self.used + weight > self.limit:
            self._freed = trio.Event() if self._freed.is_set() else self._freed
            await self._freed.wait()
        self.used += weight

    def release(self, weight: int) -> None:
        self.used -= weight
        self._freed.set()


def batch_slot(result) -> dict:
    """One slot of an ``acks`` frame: what the HTTP route would answer for that message."""
    if isinstance(result, ParleyError):
        slot = {"status": result.status, **result.envelope()}
        if result.retry_after is not None:
            slot["retry_after"] = int(result.retry_after_header())
        return slot
    slot = {"status": status_of(result), "body": result.body}
    if isinstance(result, Replayed):
        slot["replayed"] = True
    return slot


#: Closes a connection without a token after its first frame (ADR-0022).
CLOSE_POLICY = 1008
#: An anonymous frame up to this size is parsed for its ``id`` (echoed in the refusal).
ANONYMOUS_FRAME_PEEK = 4096


async def _refuse_anonymous(raw: str | bytes, send) -> None:
    """Answer a frame on a connection without a token: ``unauthorized``, without
    parsing a large frame; the caller then closes the socket, so such a
    connection can hand the server at most one frame."""
    frame_id = None
    if len(raw) <= ANONYMOUS_FRAME_PEEK:
        try:
            frame = loads_bounded(raw)
            frame_id = frame.get("id") if isinstance(frame, dict) else None
        except orjson.JSONDecodeError:
            pass
    await send(ws_error_frame(Unauthorized(), frame_id))


async def ingest(backbone, channel: str, identity, send, nursery, watch: TokenWatch) -> int | None:
    """Read client frames until the socket closes; each write frame runs as its own task.

    Returns the close code to end with when the server ends the connection.
    """
    limiter = InFlight(MAX_IN_FLIGHT)
    batches = InFlight(MAX_BATCH_IN_FLIGHT)

    async def run_many(frame_id, replies: list, weight: int) -> None:
        try:
            results = await backbone.collect(replies)
            await send({"type": "acks", "id": frame_id, "results": [batch_slot(r) for r in results]})
        finally:
            batches.release(weight)

    async def run(frame_id, op: str, body) -> None:
        try:
            if identity is None or watch.revoked:
                raise Unauthorized()
            if not isinstance(body, dict):
                raise InvalidRequest("request body must be a JSON object")
            if op == "append":
                result = await backbone.append(channel, body, identity)
            else:
                result = await backbone.claim(channel, "claim", body, identity)
            ack = {"type": "ack", "id": frame_id, "status": status_of(result), "body": result.body}
            if isinstance(result, Replayed):  # the HTTP route's Idempotent-Replayed: true
                ack["replayed"] = True
            await send(ack)
        except ParleyError as error:
            await send(ws_error_frame(error, frame_id))
        finally:
            limiter.release(1)

    while True:
        raw = await websocket.receive()
        if identity is None:
            await _refuse_anonymous(raw, send)
            return CLOSE_POLICY
        try:
            frame = loads_bounded(raw)
        except orjson.JSONDecodeError:
            await send(ws_error_frame(InvalidJson(), None))
            continue
        ops = [k for k in WRITE_OPS if isinstance(frame, dict) and k in frame]
        if len(ops) != 1:
            frame_id = frame.get("id") if isinstance(frame, dict) else None
            await send(ws_error_frame(InvalidRequest('a frame must carry exactly one of "append" or "claim"'), frame_id))
            continue
        if ops[0] == "append_many":
            bodies = frame["append_many"]
            if not isinstance(bodies, list) or len(bodies) > MAX_BATCH:
                message = f'"append_many" must be a list of at most {MAX_BATCH} messages'
                await send(ws_error_frame(InvalidRequest(message), frame.get("id")))
                continue
            weight = max(1, len(bodies))
            await batches.acquire(weight)
            try:
                if watch.revoked:
                    raise Unauthorized()
                # Delivered here, not in the task: a socket's batches reach
                # the actor in the order they were sent (ADR-0039).
                replies = await backbone.deliver_many(channel, bodies, identity)
            except ParleyError as error:
                batches.release(weight)
                await send(ws_error_frame(error, frame.get("id")))
                continue
            nursery.start_soon(run_many, frame.get("id"), replies, weight)
            continue
        await limiter.acquire(1)
        nursery.start_soon(run, frame.get("id"), ops[0], frame[ops[0]])
