"""Hypercorn's trio worker with parley's connection policy (ADR-0013).

``hypercorn.trio.serve`` runs every connection in one nursery, so an
exception that escapes a single connection's protocol code ends the whole
server; and it speaks HTTP/2 cleartext (prior knowledge and ``Upgrade:
h2c``) on the plain port, where Hypercorn 0.18 raises ``KeyError`` for body
data that arrives after an early response (upstream PRs #312/#334/#365).
This module is the same loop (lifespan, listeners, graceful drain) with two
changes:

* **HTTP/1.1 only.** An HTTP/2 preface is answered with a GOAWAY
  ``HTTP_1_1_REQUIRED`` frame and the connection is closed; ``Upgrade: h2c``
  is ignored, as RFC 9110 §7.8 allows, and the request is served over
  HTTP/1.1. parley does not terminate TLS, so it never negotiates h2 by ALPN.
* **One connection cannot end the others.** Each connection runs under a
  guard that logs an unexpected error as one line, counts it, and closes
  only that connection.

Each listening socket is also wrapped in a
:class:`~parley.http.admission.CappedListener` (a connection cap below the
file limit, a deadline on every write, ADR-0021), and Hypercorn's WebSocket
stream is replaced by :class:`~parley.http.ws_frames.BoundedWSStream`
(ADR-0022). Everything else is Hypercorn's: its sans-IO HTTP/1.1 and
WebSocket protocol code and its per-connection ``TCPServer``.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Awaitable, Callable
from functools import partial

import trio
from hypercorn.config import Config
from hypercorn.events import Closed, RawData, Updated
from hypercorn.protocol import ProtocolWrapper
from hypercorn.protocol.h11 import H11Protocol
from hypercorn.trio.lifespan import Lifespan
from hypercorn.trio.tcp_server import TCPServer
from hypercorn.trio.worker_context import WorkerContext
from hypercorn.typing import ConnectionState
from hypercorn.utils import repr_socket_addr, wrap_app

from . import ws_frames
from .coalesce import CoalescedWrites
from .admission import AdmittedStream, CappedListener

log = logging.getLogger("parley.http.serving")

#: An empty SETTINGS frame (the server preface HTTP/2 requires first), then
#: GOAWAY(last stream 0, error HTTP_1_1_REQUIRED = 0xd), RFC 9113 §6.5/§6.8.
HTTP2_REFUSAL = (
    b"\x00\x00\x00\x04\x00\x00\x00\x00\x00"
    + b"\x00\x00\x08\x07\x00\x00\x00\x00\x00"
    + b"\x00\x00\x00\x00\x00\x00\x00\x0d"
)


class HTTP2Refused(ConnectionAbortedError):
    """The peer spoke HTTP/2; it has been told to use HTTP/1.1.

    An ``OSError``, so Hypercorn's ``TCPServer`` closes the connection the way
    it closes one the peer dropped.
    """


class HTTP11Protocol(CoalescedWrites, H11Protocol):
    """Hypercorn's HTTP/1.1 protocol that never switches to HTTP/2, writing each
    fixed-length response in one write (:mod:`parley.http.coalesce`)."""

    async def _check_protocol(self, event) -> None:  # noqa: ANN001 - an h11.Request
        if event.method == b"PRI" and event.target == b"*" and event.http_version == b"2.0":
            await self.send(RawData(data=HTTP2_REFUSAL))
            raise HTTP2Refused("HTTP/2 is not served; use HTTP/1.1")
        # An ``Upgrade: h2c`` header is ignored: the request is answered in HTTP/1.1.


class IdleDeadline:
    """Hypercorn's keep-alive timer without a task per request (ADR-0058).

    Hypercorn's ``TrioSingleTask`` cancels the idle task when a request
    arrives and starts a new one (``Nursery.start``) after each response:
    two lock passes, a task start and several scheduling steps per request.
    This is the same timer as one task per connection under a cancel scope
    whose deadline is moved: ``arm`` (the connection went idle) sets it to
    now + ``keep_alive_timeout``, ``disarm`` (a request arrived) to never,
    neither of them yields. When the deadline passes, or the server
    terminates while the connection is idle, the connection is closed as
    Hypercorn's ``_idle_timeout`` closes it; a server that terminates while a
    request is in flight closes the connection once it is idle again.
    """

    def __init__(self, connection: TCPServer) -> None:
        self._connection = connection
        self._scope: trio.CancelScope | None = None
        self._armed = False
        self._became_idle: trio.Event | None = None
        self._ended = False

    async def restart(self, task_group, action) -> None:  # noqa: ANN001 - TrioSingleTask's signature
        """TrioSingleTask's ``restart``: the first call starts the watching task, later ones only arm."""
        if self._scope is None:
            await task_group._nursery.start(self._watch)
        self.arm()

    async def stop(self) -> None:
        self.disarm()

    @property
    def armed(self) -> bool:
        return self._armed

    def arm(self) -> None:
        self._armed = True
        if self._scope is not None:
            self._scope.deadline = trio.current_time() + self._connection.config.keep_alive_timeout
        if self._became_idle is not None:
            self._became_idle.set()

    def disarm(self) -> None:
        self._armed = False
        if self._scope is not None:
            self._scope.deadline = math.inf

    def end(self) -> None:
        """The connection is closed already: the watching task ends without closing it again.

        Hypercorn's stopped idle task is simply gone; this one would otherwise
        wait for the server's end and keep the connection's task group open.
        """
        self._ended = True
        if self._scope is not None:
            self._scope.cancel()
        if self._became_idle is not None:
            self._became_idle.set()

    async def _watch(self, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        connection = self._connection
        with trio.CancelScope() as scope:
            self._scope = scope
            task_status.started()
            await connection.context.terminated.wait()
            while not self._armed and not self._ended:  # terminated during a request: close once it is answered
                self._became_idle = trio.Event()
                await self._became_idle.wait()
        if self._ended:
            return
        with trio.CancelScope(shield=True):
            await connection._initiate_server_close()


class HTTP11Connection(TCPServer):
    """Hypercorn's connection handler, with :class:`HTTP11Protocol` in place of its h11/h2 switch.

    It hands its send lock to its :class:`~parley.http.admission.AdmittedStream`,
    so a live tail's direct write can tell whether the connection is idle (ADR-0054).
    """

    #: Responses may be written straight to an idle socket (ADR-0058); ``serve(direct_writes=False)``
    #: keeps every write on Hypercorn's send (the tests' reference server).
    direct_writes = True

    def __init__(self, app, config, context, state, stream) -> None:  # noqa: ANN001 - Hypercorn's signature
        super().__init__(app, config, context, state, stream)
        self.idle_task = IdleDeadline(self)
        if isinstance(stream, AdmittedStream):
            stream.send_lock = self.send_lock

    @property
    def protocol(self) -> ProtocolWrapper:
        return self._protocol

    @protocol.setter
    def protocol(self, wrapper: ProtocolWrapper) -> None:
        if not wrapper.ssl:
            wrapper.protocol = HTTP11Protocol(
                wrapper.app,
                wrapper.config,
                wrapper.context,
                wrapper.task_group,
                wrapper.state,
                wrapper.ssl,
                wrapper.client,
                wrapper.server,
                wrapper.send,
            )
            if self.direct_writes and isinstance(self.stream, AdmittedStream):
                wrapper.protocol.transport = self.stream
        self._protocol = wrapper

    async def protocol_send(self, event) -> None:  # noqa: ANN001 - a hypercorn event
        if isinstance(event, Updated):
            # The idle (keep-alive) timer is armed from whichever task sent the
            # event. Under Quart-Trio that is the request's own task, cancelled
            # just after its last send; a timer armed by an await there was never
            # armed (an idle connection outlived keep_alive_timeout and held every
            # shutdown for the whole graceful_timeout). Arming and disarming the
            # IdleDeadline do not yield, so a cancelled task arms it all the same.
            if event.idle:
                self.idle_task.arm()
            else:
                self.idle_task.disarm()
            return
        if isinstance(event, Closed):
            self.idle_task.end()
        await super().protocol_send(event)

    async def _read_data(self) -> None:
        try:
            await super()._read_data()
        finally:
            # The peer is gone (EOF, reset, read timeout). Idle, the connection
            # waits for its deadline as under Hypercorn; busy (a response was cut
            # off), Hypercorn's idle task was stopped and nothing waits: neither must this.
            if not self.idle_task.armed:
                self.idle_task.end()


class HypercornWrites(HTTP11Connection):
    """Every write through Hypercorn's send: the reference the direct writes are compared with."""

    direct_writes = False


def _only_refusals(exc: BaseException) -> bool:
    """True for an :class:`HTTP2Refused`, alone or as every leaf of Hypercorn's task-group error."""
    if isinstance(exc, BaseExceptionGroup):
        return exc.split(HTTP2Refused)[1] is None
    return isinstance(exc, HTTP2Refused)


def guarded(handler: Callable[[trio.SocketStream], Awaitable[None]], on_error: Callable[[], None]):
    """Run one connection so that its unexpected error ends only that connection."""

    async def run(stream: trio.SocketStream) -> None:
        try:
            await handler(stream)
        except Exception as exc:  # noqa: BLE001 - the guard is the point
            if _only_refusals(exc):
                return
            on_error()
            log.error("connection ended by an unexpected error: %s", type(exc).__name__)
            with trio.CancelScope(shield=True):
                await trio.aclose_forcefully(stream)

    return run


async def serve(
    app,
    config: Config,
    *,
    max_connections: int,
    write_timeout: float,
    shutdown_trigger: Callable[[], Awaitable[None]],
    on_connection_error: Callable[[], None] = lambda: None,
    direct_writes: bool = True,
    task_status: trio.TaskStatus[list[str]] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve ``app`` until ``shutdown_trigger`` returns, then drain for ``graceful_timeout``.

    ``direct_writes=False`` sends every response through Hypercorn's own send (tests compare the two).
    """
    ws_frames.install()
    asgi = wrap_app(app, config.wsgi_max_body_size, "asgi")
    state: dict = {}
    lifespan = Lifespan(asgi, config, state)
    context = WorkerContext(None)
    async with trio.open_nursery() as lifespan_nursery:
        await lifespan_nursery.start(lifespan.handle_lifespan)
        await lifespan.wait_for_startup()
        async with trio.open_nursery() as connections:
            sockets = config.create_sockets()
            listeners = []
            binds = []
            for sock in sockets.insecure_sockets:
                sock.listen(config.backlog)
                inner = trio.SocketListener(trio.socket.from_stdlib_socket(sock))
                listeners.append(CappedListener(inner, max_connections, write_timeout=write_timeout, nursery=connections))
                binds.append(f"http://{repr_socket_addr(sock.family, sock.getsockname())}")
            handler = guarded(
                partial(HTTP11Connection if direct_writes else HypercornWrites, asgi, config, context, ConnectionState(state.copy())),
                on_connection_error,
            )
            task_status.started(binds)
            async with trio.open_nursery() as accepting:
                accepting.start_soon(partial(trio.serve_listeners, handler, listeners, handler_nursery=connections))
                for listener in listeners:
                    accepting.start_soon(listener.watchdog)
                await shutdown_trigger()
                accepting.cancel_scope.cancel()
            await context.terminated.set()
            connections.cancel_scope.deadline = trio.current_time() + config.graceful_timeout
        await lifespan.wait_for_shutdown()
        lifespan_nursery.cancel_scope.cancel()
