"""Hypercorn's trio worker loop, with parley's listener in front (ADR-0021).

``hypercorn.trio.serve`` builds its listeners itself and offers no hook to
wrap them, so this is the same loop (lifespan, accept, graceful drain) over
Hypercorn's own connection handler (``TCPServer``), with each listening
socket wrapped in a :class:`~parley.http.admission.CappedListener`, and
with Hypercorn's WebSocket stream replaced by
:class:`~parley.http.ws_frames.BoundedWSStream`.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from functools import partial

import trio
from hypercorn.config import Config
from hypercorn.trio.lifespan import Lifespan
from hypercorn.trio.tcp_server import TCPServer
from hypercorn.trio.worker_context import WorkerContext
from hypercorn.typing import ConnectionState
from hypercorn.utils import ShutdownError, raise_shutdown, repr_socket_addr, wrap_app

from . import ws_frames
from .admission import CappedListener


async def serve(
    app,
    config: Config,
    *,
    max_connections: int,
    write_timeout: float,
    shutdown_trigger: Callable[[], Awaitable[None]],
    task_status: trio.TaskStatus[list[str]] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve ``app`` on ``config.bind`` until ``shutdown_trigger`` returns; reports the bound URLs."""
    ws_frames.install()
    asgi = wrap_app(app, config.wsgi_max_body_size, None)
    state: dict = {}
    lifespan = Lifespan(asgi, config, state)
    context = WorkerContext(None)
    async with trio.open_nursery() as lifespan_nursery:
        await lifespan_nursery.start(lifespan.handle_lifespan)
        await lifespan.wait_for_startup()
        async with trio.open_nursery() as connections:
            sockets = config.create_sockets()
            listeners, binds = [], []
            for sock in sockets.insecure_sockets:
                sock.listen(config.backlog)
                inner = trio.SocketListener(trio.socket.from_stdlib_socket(sock))
                listeners.append(
                    CappedListener(inner, max_connections, write_timeout=write_timeout, nursery=connections)
                )
                binds.append(f"http://{repr_socket_addr(sock.family, sock.getsockname())}")
            task_status.started(binds)
            handler = partial(TCPServer, asgi, config, context, ConnectionState(state.copy()))
            try:
                async with trio.open_nursery(strict_exception_groups=True) as accepting:
                    accepting.start_soon(raise_shutdown, shutdown_trigger)
                    accepting.start_soon(raise_shutdown, context.terminate.wait)
                    accepting.start_soon(partial(trio.serve_listeners, handler, listeners, handler_nursery=connections))
                    for listener in listeners:
                        accepting.start_soon(listener.watchdog)
                    await trio.sleep_forever()
            except BaseExceptionGroup as error:
                _, others = error.split((ShutdownError, KeyboardInterrupt))
                if others is not None:
                    raise others
            finally:
                await context.terminated.set()
                connections.cancel_scope.deadline = trio.current_time() + config.graceful_timeout
        await lifespan.wait_for_shutdown()
        lifespan_nursery.cancel_scope.cancel()
