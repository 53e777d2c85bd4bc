"""Connection admission: a cap on open connections and a deadline on every write.

Hypercorn has no connection limit: each accepted socket is a file
descriptor, and once the process reaches its file limit ``accept`` fails
with EMFILE, after which every new client fails and trio logs a traceback
every 0.1 s (issue 20, item 3). :class:`CappedListener` admits at most
``cap`` connections at once, below the file limit; a connection over the
cap gets one canned ``503`` with ``Retry-After: 1`` and is closed, while
the admitted ones are served as before (ADR-0021).

Each admitted connection is an :class:`AdmittedStream`: a send that has
not completed within its write deadline gets the connection closed by the
listener's watchdog (a client that stops reading is dropped, not held
forever: Hypercorn's own send is shielded from cancellation), and closing
it gives its slot back. The connection a request arrived on is
reachable as :func:`current`, so a live tail can shrink its kernel send
buffer and tighten its deadline (ADR-0022), and write a frame it already
holds straight to the socket when the connection is idle
(:meth:`AdmittedStream.write_now`, ADR-0054), as every fixed-length response
is (:meth:`AdmittedStream.writev_now`, ADR-0058).
"""

from __future__ import annotations

import contextvars
import logging
import math
import os
import resource
import socket

import orjson
import trio

log = logging.getLogger("parley.admission")

#: File descriptors kept free for the database, log files and the refusals in flight.
MIN_RESERVE = 64
#: How often the write deadlines are checked (a deadline is met within this much).
WATCHDOG_INTERVAL = 0.5
#: Over-cap connections answered at once; while that many are being answered,
#: accepting pauses and new connects wait in the kernel's backlog.
REFUSING_AT_ONCE = 16
REFUSAL = (
    b"HTTP/1.1 503 Service Unavailable\r\n"
    b"content-type: application/json; charset=utf-8\r\n"
    b"retry-after: 1\r\n"
    b"connection: close\r\n"
    b"content-length: %d\r\n\r\n%s"
)
REFUSAL_BODY = orjson.dumps(
    {"error": {"code": "unavailable", "message": "the server is at its connection limit; retry shortly"}}
)

_current: contextvars.ContextVar[AdmittedStream | None] = contextvars.ContextVar("parley_connection", default=None)


def current() -> AdmittedStream | None:
    """The admitted connection the running request arrived on (``None`` outside a capped server)."""
    return _current.get()


def file_limit() -> int:
    soft, _hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    return 1 << 20 if soft == resource.RLIM_INFINITY else soft


def connection_cap(configured: int | None, limit: int | None = None) -> int:
    """The cap in force: ``configured`` (``PARLEY_MAX_CONNECTIONS``), never above what the file limit allows."""
    limit = file_limit() if limit is None else limit
    ceiling = max(1, limit - max(MIN_RESERVE, limit // 10) - REFUSING_AT_ONCE)
    return ceiling if configured is None else min(configured, ceiling)


class AdmittedStream(trio.abc.HalfCloseableStream):
    """A socket stream holding one admission slot, with a deadline on each write.

    The deadline costs nothing per send: ``send_all`` only notes when it
    started, and the listener's watchdog closes a connection whose send has
    been pending too long (the blocked send then fails like a lost peer). A
    cancel scope per send cost measurable CPU on busy connections.
    """

    def __init__(self, inner: trio.SocketStream, listener: CappedListener, write_timeout: float) -> None:
        self._inner = inner
        self._listener = listener
        self.write_timeout = write_timeout
        self._released = False
        #: ``trio.current_time()`` when the pending send began; ``None`` when idle.
        self.sending_since: float | None = None
        self._eof_sent = False
        #: Transport writes (``send_all`` calls and direct writes) so far: a live
        #: tail sends one per commit batch (ADR-0042).
        self.writes = 0
        #: Of those, the ones :meth:`write_now` made without Hypercorn (ADR-0054).
        self.direct_writes = 0
        #: Hypercorn's per-connection send lock (``TCPServer.send_lock``), set by
        #: the connection handler (:mod:`parley.http.serving`); ``None``: unknown,
        #: so :meth:`write_now` never writes.
        self.send_lock: trio.Lock | None = None

    @property
    def socket(self):
        return self._inner.socket

    def limit_send_buffer(self, size: int) -> None:
        """Bound what the kernel queues for this connection (a live tail's backlog)."""
        try:
            self._inner.socket.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, size)
        except OSError:
            pass

    async def send_all(self, data) -> None:
        # Hypercorn sends from the request's task but half-closes from the
        # reader's without its send lock; two sends at once made trio raise
        # BusyResourceError ("Error in ASGI Framework" after an early 413, or
        # an uncaught error that stopped the server). After the half-close a
        # send fails the way Hypercorn expects of a closing connection.
        if self._eof_sent:
            raise trio.ClosedResourceError("the connection is half-closed")
        self.sending_since = trio.current_time()
        self.writes += 1
        try:
            await self._inner.send_all(data)
        finally:
            self.sending_since = None

    def write_now(self, data: bytes) -> int | None:
        """Write ``data`` to the socket at once, without yielding, if nothing else is writing.

        Returns how many bytes the kernel took (possibly fewer than all, or 0
        when its buffer is full: the caller sends the rest with
        :meth:`write_rest`), or ``None`` when the connection is busy (its send
        lock is held or a send is pending), half-closed, closed or broken:
        nothing was written and the caller uses the ordinary path, which
        waits its turn and reports a lost peer the way Hypercorn expects.
        Nothing can start a write between the check and the write: trio runs
        one task at a time and this does not yield (ADR-0054).
        """
        return self.writev_now((data,))

    def writev_now(self, parts: tuple[bytes, ...]) -> int | None:
        """:meth:`write_now` for several buffers in one ``writev``: a response's
        head and its body go out together without being joined into a new
        buffer first (ADR-0058). Same returns as :meth:`write_now`."""
        fd = self._idle_fd()
        if fd is None:
            return None
        try:
            sent = os.writev(fd, parts)
        except BlockingIOError:
            sent = 0
        except OSError:
            return None  # a lost peer: the ordinary path meets it and closes the connection
        self.writes += 1
        self.direct_writes += 1
        return sent

    def _idle_fd(self) -> int | None:
        """The socket's descriptor when nothing is writing and the connection is open, else ``None``."""
        lock = self.send_lock
        if lock is None or lock.locked() or self.sending_since is not None or self._eof_sent or self._released:
            return None
        fd = self._inner.socket.fileno()
        return fd if fd >= 0 else None

    async def write_rest(self, data: bytes) -> None:
        """Send the rest of a :meth:`write_now` like Hypercorn sends: under the
        connection's send lock, shielded (a frame is never cut in half), with the
        write deadline. Raises ``trio.BrokenResourceError`` or
        ``trio.ClosedResourceError`` when the peer is gone."""
        assert self.send_lock is not None
        async with self.send_lock:
            with trio.CancelScope(shield=True):
                await self.send_all(data)

    def overdue(self, now: float) -> bool:
        return self.sending_since is not None and now - self.sending_since > self.write_timeout

    async def drop(self) -> None:
        """Close a connection whose client stopped reading (called by the watchdog)."""
        log.info("dropped a connection whose client read nothing for %.0f s", self.write_timeout)
        await trio.aclose_forcefully(self._inner)
        self._release()

    async def wait_send_all_might_not_block(self) -> None:
        await self._inner.wait_send_all_might_not_block()

    async def receive_some(self, max_bytes: int | None = None) -> bytes:
        return await self._inner.receive_some(max_bytes)

    async def send_eof(self) -> None:
        if self._eof_sent:
            return
        self._eof_sent = True
        if self.sending_since is not None:
            return  # a send is in flight: skip the half-close, the close follows
        # Shielded: Hypercorn half-closes from inside the request's task, which
        # may already be cancelled when the response ended early (a 408/413
        # with the body unread); a cancelled send_eof skipped the close and
        # left the connection open until the client sent more.
        with trio.CancelScope(shield=True):
            await self._inner.send_eof()

    async def aclose(self) -> None:
        try:
            await self._inner.aclose()
        finally:
            self._release()

    def _release(self) -> None:
        if not self._released:
            self._released = True
            self._listener._forget(self)


class CappedListener(trio.abc.Listener[AdmittedStream]):
    """Wraps a listener: admits up to ``cap`` connections, answers the rest 503."""

    def __init__(self, inner: trio.SocketListener, cap: int, *, write_timeout: float, nursery: trio.Nursery) -> None:
        self._inner = inner
        self.cap = cap
        self.write_timeout = write_timeout
        self._nursery = nursery
        self.refused = 0
        self._refusing = trio.Semaphore(REFUSING_AT_ONCE)
        self._last_warning = -math.inf
        self._admitted: set[AdmittedStream] = set()

    @property
    def open(self) -> int:
        return len(self._admitted)

    def _forget(self, stream: AdmittedStream) -> None:
        self._admitted.discard(stream)

    async def watchdog(self) -> None:
        """Every half second, drop the connections whose pending send is past its deadline.

        Runs while the server accepts (:mod:`parley.http.serving`).
        """
        while True:
            await trio.sleep(WATCHDOG_INTERVAL)
            now = trio.current_time()
            for stream in [s for s in self._admitted if s.overdue(now)]:
                await stream.drop()

    async def accept(self) -> AdmittedStream:
        while True:
            stream = await self._inner.accept()
            if self.open < self.cap:
                admitted = AdmittedStream(stream, self, self.write_timeout)
                self._admitted.add(admitted)
                # The handler task is started from this task's context: it and
                # the request tasks under it see their own connection.
                _current.set(admitted)
                return admitted
            self.refused += 1
            self._warn()
            await self._refusing.acquire()
            self._nursery.start_soon(self._refuse, stream)

    def _warn(self) -> None:
        now = trio.current_time()
        if now - self._last_warning >= 10:
            self._last_warning = now
            log.warning(
                "connection cap reached (%d open); answering 503 (raise PARLEY_MAX_CONNECTIONS "
                "and the file limit, `ulimit -n`, to admit more)",
                self.open,
            )

    async def _refuse(self, stream: trio.SocketStream) -> None:
        """Read the request head, answer 503, half-close, drain briefly, close.

        Draining before the close matters: closing a socket with unread
        request bytes makes the kernel send a reset, and the client may then
        lose the 503 it had not read yet.
        """
        try:
            with trio.move_on_after(1):
                head = b""
                while b"\r\n\r\n" not in head and len(head) < 16384:
                    chunk = await stream.receive_some(4096)
                    if not chunk:
                        break
                    head += chunk
                await stream.send_all(REFUSAL % (len(REFUSAL_BODY), REFUSAL_BODY))
                await stream.send_eof()
                while await stream.receive_some(4096):
                    pass
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
            pass
        finally:
            self._refusing.release()
            await trio.aclose_forcefully(stream)

    async def aclose(self) -> None:
        await self._inner.aclose()
