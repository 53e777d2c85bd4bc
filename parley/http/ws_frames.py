"""WebSocket frame handling in front of the app: the frame cap and protocol errors.

Hypercorn's ``WSStream`` (0.17-0.18) gets three things wrong that parley
cannot fix from inside the ASGI app, because the app only ever sees whole
messages (issue 20 items 4 and 11, ADR-0022):

* A message over ``websocket_max_message_size`` is answered with close 1009,
  but the buffer is never cleared and the rest of the message is still
  appended to it (a 16 MB frame is buffered whole), and the peer's close
  reply queued behind it is never read, so the connection stays open.
* A connection with no token on the channel WebSocket can only ever be
  refused, yet its frames were buffered up to the server-wide cap.
* A protocol error (bad opcode, unmasked frame, invalid UTF-8) closed the TCP
  connection without a close frame.

:class:`BoundedWSStream` fixes these: the cap in force is the connection's
own (``scope["parley.frame_cap"]``, set by the route; else the server-wide
cap), a message over it is dropped as it arrives, the connection is closed
with 1009 and nothing more is buffered; a protocol error is answered with
a close frame carrying wsproto's code (1002 or 1007). :func:`install` puts
it where Hypercorn's HTTP/1.1 and HTTP/2 protocols build their streams.

It also sends a :class:`TextBatch` (several text messages the app hands
over at once) as one transport write holding one WebSocket frame per text,
so a live tail delivers a commit batch in one write (ADR-0042). A batch may
carry its frames already encoded (:func:`text_frames`, built once for every
tail sending the same page) and its connection: on a connection without
extensions the frames are those bytes, written straight to the socket when
the connection is idle, else through Hypercorn as before (ADR-0054).
"""

from __future__ import annotations

import struct
from collections.abc import Callable

from hypercorn.protocol import h2 as hypercorn_h2
from hypercorn.protocol import h11 as hypercorn_h11
from hypercorn.protocol import ws_stream
from hypercorn.protocol.events import Data, StreamClosed
from wsproto.connection import ConnectionState
from wsproto.events import CloseConnection, Message, Ping, TextMessage
from wsproto.utilities import LocalProtocolError
from wsproto.frame_protocol import CloseReason

#: Set in a WebSocket scope by a route to lower that connection's frame cap.
FRAME_CAP = "parley.frame_cap"
#: Set in a WebSocket scope by :class:`BoundedWSStream`: the stream itself, so a
#: live tail can hand it already encoded frames (:meth:`BoundedWSStream.write_frames_now`).
STREAM = "parley.ws_stream"


def text_frame(payload: bytes) -> bytes:
    """One final, unmasked, uncompressed text frame carrying ``payload`` (UTF-8):
    byte for byte what wsproto writes for it on a server connection without
    extensions (RFC 6455 §5.2; tests/unit/test_fanout_direct.py checks it)."""
    size = len(payload)
    if size < 126:
        head = bytes((0x81, size))
    elif size < 65536:
        head = struct.pack("!BBH", 0x81, 126, size)
    else:
        head = struct.pack("!BBQ", 0x81, 127, size)
    return head + payload


def text_frames(payloads: list[bytes]) -> bytes:
    """:func:`text_frame` of each payload, as one buffer."""
    return b"".join([text_frame(p) for p in payloads])


class TextBatch(str):
    """Text messages sent as ONE ASGI ``websocket.send``: one frame each, one transport write.

    Only :class:`BoundedWSStream` understands it (see :func:`batching`); to
    any other server it would be one message, so callers check first.
    ``texts`` may be given as a function, called only when the frames must be
    encoded by the connection itself; ``frames`` are the same messages as
    :func:`text_frames`; ``transport`` is the connection's
    :class:`~parley.http.admission.AdmittedStream` (ADR-0054).
    """

    frames: bytes | None
    transport: object | None

    def __new__(
        cls, texts: list[str] | Callable[[], list[str]], frames: bytes | None = None, transport: object | None = None
    ) -> TextBatch:
        batch = super().__new__(cls, "")
        batch._texts = texts
        batch.frames = frames
        batch.transport = transport
        return batch

    @property
    def texts(self) -> list[str]:
        if callable(self._texts):
            self._texts = self._texts()
        return self._texts


class BoundedWSStream(ws_stream.WSStream):
    """Hypercorn's WebSocket stream with a per-connection cap that stops buffering."""

    _refusing = False

    async def handle(self, event) -> None:  # noqa: ANN001 - a hypercorn stream event
        await super().handle(event)
        scope = getattr(self, "scope", None)
        if scope is not None and STREAM not in scope:
            scope[STREAM] = self  # read by the app's route long after its task started

    def write_frames_now(self, frames: bytes, transport) -> int | None:  # noqa: ANN001 - an AdmittedStream
        """Write a live tail's frames (:func:`text_frames`) straight to ``transport``
        without Quart or Hypercorn, when nothing could make them differ from what
        this stream would send: the ASGI socket is connected, wsproto's connection
        open, and the client offered no extension. Returns ``transport.write_now``'s
        answer (``None``: nothing written, send them the ordinary way; fewer bytes
        than all: send the rest with :meth:`send_raw`), ADR-0054."""
        if (
            self.closed
            or self.state != ws_stream.ASGIWebsocketState.CONNECTED
            or self.handshake.extensions
            or self.connection.state != ConnectionState.OPEN
        ):
            return None
        return transport.write_now(frames)

    async def send_raw(self, data: bytes) -> None:
        """Bytes already framed (the rest of a :meth:`write_frames_now`) through Hypercorn."""
        await self.send(Data(stream_id=self.stream_id, data=data))

    async def app_send(self, message) -> None:  # noqa: ANN001 - an ASGI send event
        text = message.get("text") if message is not None and message.get("type") == "websocket.send" else None
        if isinstance(text, TextBatch):
            if self.closed or self.state != ws_stream.ASGIWebsocketState.CONNECTED:
                return
            if text.frames is not None and not self.handshake.extensions and self.connection.state == ConnectionState.OPEN:
                data = text.frames  # no extension could change a frame: the shared bytes
            else:
                try:
                    data = b"".join([self.connection.send(TextMessage(data=t)) for t in text.texts])
                except LocalProtocolError:
                    return  # closing: like Hypercorn's own send, nothing more goes out
            transport = text.transport
            write_now = getattr(transport, "write_now", None)
            sent = write_now(data) if write_now is not None else None
            if sent is None:  # busy, gone or unknown: Hypercorn's own path
                await self.send(Data(stream_id=self.stream_id, data=data))
            elif sent < len(data):  # nothing ran since the direct write: the rest follows in order
                await self.send(Data(stream_id=self.stream_id, data=data[sent:]))
            return
        await super().app_send(message)

    def _frame_cap(self) -> int:
        cap = self.scope.get(FRAME_CAP) if getattr(self, "scope", None) else None
        return self.config.websocket_max_message_size if cap is None else cap

    async def _handle_events(self) -> None:
        for event in self.connection.events():
            if isinstance(event, Message):
                if self._refusing:
                    continue  # the rest of a message already refused: dropped, not buffered
                if self.buffer.length + len(event.data) > self._frame_cap():
                    self.buffer.clear()
                    self._refusing = True
                    await self._send_wsproto_event(CloseConnection(code=CloseReason.MESSAGE_TOO_BIG))
                    continue  # keep reading: the peer's close reply comes after the message
                self.buffer.extend(event)
                if event.message_finished:
                    await self.app_put(self.buffer.to_message())
                    self.buffer.clear()
            elif isinstance(event, Ping):
                await self._send_wsproto_event(event.response())
            elif isinstance(event, CloseConnection):
                if self.connection.state == ConnectionState.REMOTE_CLOSING:
                    await self._send_wsproto_event(event.response())
                elif self.connection.state == ConnectionState.OPEN:
                    # wsproto reports a protocol error as a close it did not
                    # receive: tell the peer why before the TCP close.
                    await self._send_wsproto_event(CloseConnection(code=event.code, reason=event.reason))
                await self.send(StreamClosed(stream_id=self.stream_id))
                return


def batching() -> bool:
    """True when this process's Hypercorn builds :class:`BoundedWSStream`s (``install`` ran)."""
    return hypercorn_h11.WSStream is BoundedWSStream


def install() -> None:
    """Make Hypercorn's HTTP/1.1 and HTTP/2 protocols build :class:`BoundedWSStream`s."""
    hypercorn_h11.WSStream = BoundedWSStream
    hypercorn_h2.WSStream = BoundedWSStream
