"""Run the backbone behind Hypercorn's trio worker (``parley serve``).

Prints exactly one stdout line, ``parley listening on http://HOST:PORT``,
once the socket accepts connections (the real port when 0 was asked); all
logs go to stderr. SIGTERM/SIGINT: stop accepting, end live tails and
waits, drain the actors, flush the journal, exit 0.
"""

from __future__ import annotations

import gc
import logging
import signal
import sys
from functools import partial

import trio
from hypercorn.config import Config as HypercornConfig

from .actors.backbone import Backbone
from .config import Settings
from .http import serving
from .http.admission import connection_cap
from .http.app import create_app
from .http.fast_read import FastReads
from .mcp.http import McpMount

log = logging.getLogger("parley.server")


class StartupError(Exception):
    """The server cannot start; the message is one safe line for stderr."""


def prepare_database(settings: Settings) -> None:
    """Upgrade an embedded SQLite database; refuse an un-migrated Postgres one.

    A SQLite file must also take a write (the server's first one, the session
    secret, would otherwise fail after the banner). A failure becomes one
    :class:`StartupError` line naming the cause (:mod:`parley.journal.diagnose`).
    """
    from .journal import admin, diagnose

    try:
        admin.prepare(settings.database_url, upgrade=settings.is_sqlite)
    except admin.BadDatabaseUrl as exc:  # a URL the one parser refuses (normally caught by the CLI first)
        raise StartupError(f"invalid PARLEY_DATABASE_URL: {exc}") from None
    except admin.SchemaBehind:
        raise StartupError(
            "the database schema is not at the current revision; run `parley db upgrade` first"
        ) from None
    except Exception as exc:
        line = diagnose.explain(exc, settings.database_url)
        raise StartupError(
            line or f"cannot use the database ({type(exc).__name__}); check that it is running and the database URL"
        ) from None


def prepare_session_keys(settings: Settings) -> None:
    """Make sure the session key exists (ADR-0024); move a secret the database still holds.

    Before ADR-0024 the key lived in the ``meta`` table. It becomes a previous
    key of the key file (old tokens still re-issue byte for byte) and leaves
    the database; with ``PARLEY_SESSION_SECRET`` it is dropped.
    """
    from . import session_keys
    from .journal import admin

    try:
        keys = session_keys.load(settings)
    except session_keys.SessionKeyError as exc:
        raise StartupError(str(exc)) from None
    try:
        legacy = admin.read_meta(settings.database_url, session_keys.LEGACY_META_KEY)
        if legacy is None:
            return
        if keys.source != "env":  # into the key file first: a crash here loses nothing
            session_keys.adopt_legacy_secret(session_keys.key_file_path(settings), legacy)
        admin.remove_meta(settings.database_url, session_keys.LEGACY_META_KEY)
        where = "PARLEY_SESSION_SECRET is used" if keys.source == "env" else f"kept as the previous key in {keys.source}"
        log.warning("moved the session secret out of the database (%s)", where)
    except session_keys.SessionKeyError as exc:
        raise StartupError(str(exc)) from None
    except OSError as exc:
        raise StartupError(f"cannot update the session key file: {exc.strerror or type(exc).__name__}") from None
    except Exception as exc:
        raise StartupError(f"cannot use the database: {type(exc).__name__}") from None


def display_url(bind: str) -> str:
    """Hypercorn's bind as the banner shows it (0.0.0.0 → 127.0.0.1, :: → [::1])."""
    return bind.replace("//0.0.0.0:", "//127.0.0.1:").replace("//[::]:", "//[::1]:")


def hypercorn_config(settings: Settings) -> HypercornConfig:
    config = HypercornConfig()
    host = settings.host
    if ":" in host and not host.startswith("["):
        host = f"[{host}]"
    config.bind = [f"fd://{settings.listen_fd}"] if settings.listen_fd is not None else [f"{host}:{settings.port}"]
    config.keep_alive_timeout = settings.keep_alive_s
    config.graceful_timeout = 2
    config.accesslog = None
    config.errorlog = logging.getLogger("hypercorn.error")
    config.h11_max_incomplete_size = 16 * 1024
    # Bursts of connects queue here while the event loop is busy; the old
    # default of 100 overflowed under 200 concurrent connects (ADR-0021).
    config.backlog = 4096
    # One frame cap on every WebSocket, enforced before the app sees a frame (ADR-0022).
    config.websocket_max_message_size = 4 * 1024 * 1024
    return config


def warn_exposure(settings: Settings) -> None:
    if settings.is_loopback:
        return
    extra = "" if settings.tokens else " and no PARLEY_TOKENS are configured (all writes will 401)"
    reads = "reads need a token" if settings.read_auth else "reads are unauthenticated"
    print(
        f"binding non-loopback host {settings.host} \u2014 {reads}{extra}; do not expose off-host",
        file=sys.stderr,
    )


async def run_server(
    settings: Settings,
    *,
    backbone: Backbone | None = None,
    banner=None,
    stop: trio.Event | None = None,
    task_status: trio.TaskStatus[str] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve until SIGTERM/SIGINT or ``stop`` is set; reports the URL when listening."""
    backbone = backbone or Backbone(settings)
    if stop is None:
        stop = trio.Event()
    quart_app = create_app(backbone)
    # /mcp: the MCP server over Streamable HTTP (ADR-0015); the hot read route before Quart (ADR-0048)
    app = FastReads(McpMount(quart_app, backbone), backbone, quart_app.extensions["parley.metrics"])

    async def watch_signals(task_status=trio.TASK_STATUS_IGNORED) -> None:
        with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
            task_status.started()
            async for _ in signals:
                log.info("shutting down")
                stop.set()
                return

    async def begin_shutdown() -> None:
        await stop.wait()
        # End live tails and session waits so Hypercorn's drain is quick.
        backbone.shutting_down = True
        backbone.signals.notify_all()

    async with trio.open_nursery() as outer:
        await outer.start(backbone.run)
        helpers = trio.CancelScope()

        async def run_helpers() -> None:
            with helpers:
                async with trio.open_nursery() as nursery:
                    await nursery.start(watch_signals)
                    nursery.start_soon(begin_shutdown)

        outer.start_soon(run_helpers)

        async def web(task_status=trio.TASK_STATUS_IGNORED) -> None:
            try:
                await serving.serve(
                    app,
                    hypercorn_config(settings),
                    max_connections=connection_cap(settings.max_connections),
                    write_timeout=settings.write_timeout_s,
                    shutdown_trigger=stop.wait,
                    on_connection_error=quart_app.extensions["parley.metrics"].connection_errors.inc,
                    task_status=task_status,
                )
            finally:
                # Hypercorn has drained its connections: now drain the actors.
                backbone.stop()
                helpers.cancel()

        binds = await outer.start(web)
        url = display_url(binds[0])
        if banner is not None:
            banner(url)
        if not settings.is_loopback and not settings.read_auth:
            print(
                f"parley: WARNING: bound to {url} \u2014 reads are open to anyone who can reach "
                "this port (see SECURITY.md)",
                file=sys.stderr,
            )
        task_status.started(url)
        await stop.wait()
        outer.cancel_scope.deadline = trio.current_time() + 4.5


def freeze_startup_heap() -> None:
    """Move everything alive after start-up out of the cyclic GC's reach.

    The modules, the app and the loaded directory are ~100k objects that
    live as long as the process; every full (gen-2) collection walked them
    all, a 50-90 ms stall of the event loop that showed up as the p99 of
    live-tail delivery (ADR-0011). Frozen objects are still freed by
    reference counting; only cycles among them are never collected. Called
    by ``serve`` (a process that lives as long as its server), not by
    ``run_server``, which tests start and stop many times in one process.
    """
    gc.collect()
    gc.freeze()


def serve(settings: Settings, worker_argv: list[str] | None = None) -> int:
    if settings.workers > 1:
        if settings.is_sqlite:
            raise StartupError(
                "PARLEY_WORKERS/--workers > 1 needs Postgres: SQLite serialises writers, so "
                "run one worker (or set PARLEY_DATABASE_URL=postgresql://...)"
            )
        prepare_database(settings)
        prepare_session_keys(settings)
        warn_exposure(settings)
        from .workers import run_workers

        return run_workers(settings, worker_argv or [])
    if settings.listen_fd is None:
        prepare_database(settings)
        prepare_session_keys(settings)
        warn_exposure(settings)

    def banner(url: str) -> None:
        if settings.listen_fd is None:  # a worker's parent prints the one banner
            print(f"parley listening on {url}", flush=True)
        # Up and loaded: what is alive now lives as long as the process. After
        # the banner, so the collection (~50 ms) is not start-up latency.
        freeze_startup_heap()

    async def main() -> None:
        backbone = Backbone(settings)
        async with trio.open_nursery() as nursery:
            await nursery.start(partial(run_server, settings, backbone=backbone, banner=banner))

    trio.run(main)
    return 0
