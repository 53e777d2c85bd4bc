"""One transport write per fixed-length response: status line, headers and body together.

Hypercorn's HTTP/1.1 protocol (0.17-0.18) sends the head of a response as
soon as the app starts it and the body when it arrives: two writes (two
syscalls, two passes through the connection's send lock) for every JSON
answer, plus an empty one for the end of a ``Content-Length`` body. A read
page is one buffer already (ADR-0041), so :class:`CoalescedWrites` holds the
head of a response that announces a ``Content-Length`` and sends it with the
first body bytes, skips empty writes, and sends a held head at once before
anything else (an informational response, a close). A response without a
length (an SSE stream, chunked) is untouched: its head goes out at once, so
a client waiting for it is never delayed.

When the protocol knows its connection (``transport``, set by
:mod:`parley.http.serving`) and the connection is idle, that one write is a
``writev`` of the head and the body straight to the socket
(:meth:`~parley.http.admission.AdmittedStream.writev_now`, ADR-0058): no
send lock to take, no checkpoints in trio's ``send_all``, and the body (a
read page is ~100 KB) is not copied behind the head. A busy connection, or
a socket that takes only part of it, gets Hypercorn's own send for the
rest, shielded so that a response is never cut in half.
"""

from __future__ import annotations

import h11
import trio
from hypercorn.events import RawData
from hypercorn.protocol.events import Body, EndBody


def _fixed_length(headers) -> bool:
    return any(name.lower() == b"content-length" for name, _ in headers)


class CoalescedWrites:
    """Mixin for Hypercorn's ``H11Protocol``: a fixed-length response's head waits for its body."""

    _held_head: bytes = b""
    #: The connection's :class:`~parley.http.admission.AdmittedStream` when a
    #: response may be written to the socket directly; ``None``: Hypercorn's send only.
    transport = None

    async def stream_send(self, event) -> None:  # noqa: ANN001 - a hypercorn stream event
        if self._held_head and not isinstance(event, (Body, EndBody)):
            await self._flush_head()
        await super().stream_send(event)  # type: ignore[misc]

    async def _send_h11_event(self, event) -> None:  # noqa: ANN001 - an h11 event
        connection = self.connection  # type: ignore[attr-defined]
        try:
            data = connection.send(event)
        except h11.LocalProtocolError:
            if connection.their_state != h11.ERROR:
                raise
            return
        if isinstance(event, h11.Response) and _fixed_length(event.headers):
            self._held_head += data
            return
        if self._held_head:
            head, self._held_head = self._held_head, b""
            if data:
                await self._write_response(head, data)
                return
            data = head
        if data:
            await self.send(RawData(data=data))  # type: ignore[attr-defined]

    async def _write_response(self, head: bytes, body: bytes) -> None:
        """Head and first body bytes in one write: directly when the connection is idle."""
        transport = self.transport
        sent = transport.writev_now((head, body)) if transport is not None else None
        if sent is None:  # busy, closing or broken: Hypercorn's send waits its turn or meets the error
            await self.send(RawData(data=head + body))  # type: ignore[attr-defined]
            return
        if sent < len(head) + len(body):
            rest = head[sent:] + body if sent < len(head) else body[sent - len(head) :]
            # Shielded from the lock on: part of the response is on the wire, the rest must follow.
            with trio.CancelScope(shield=True):
                await self.send(RawData(data=rest))  # type: ignore[attr-defined]
            return
        # One scheduling step, as Hypercorn's send takes after its write: the connection's
        # reader gets its turn before the response ends. Without it, an answer given before
        # the client had sent its body (the /mcp mount's 401) reached the end of the
        # exchange with that body unread and the connection was closed under a client
        # that had just been told keep-alive.
        await trio.lowlevel.cancel_shielded_checkpoint()

    async def _flush_head(self) -> None:
        data, self._held_head = self._held_head, b""
        await self.send(RawData(data=data))  # type: ignore[attr-defined]
