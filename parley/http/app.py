"""The Quart-Trio app factory and the request dispatcher.

Caucus routes by hand (channels.md §4.2: artifact route → stream route →
JSON dispatch, the method checked before the action on
``/channels/:c/<action>``), and its clients depend on that exact 404/405
matrix and on raw-path percent-decoding, so one catch-all Quart route feeds
:func:`dispatch` instead of Werkzeug's router (ADR-0006). WebSocket routes
are ordinary Quart websocket routes.
"""

from __future__ import annotations

import logging
import time
import uuid
from dataclasses import dataclass
from typing import Any

import trio
from quart import request, websocket
from quart_trio import QuartTrio
from werkzeug.routing import BaseConverter

from ..errors import InternalError, MethodNotAllowed, NotFound, ParleyError, Unavailable, UpgradeRequired
from ..journal.errors import JournalUnavailable
from . import admin, channels, ops, stream, ui
from .metrics import Metrics
from .wire import REQUEST_STARTED, error_response, json_response, parse_json, read_body, split_path, unread_body

log = logging.getLogger("parley.http")
access_log = logging.getLogger("parley.access")


class _Everything(BaseConverter):
    # Not ".*": Werkzeug's "." stops at a newline, and a path with %0A then
    # matched no rule (a 500 through the catch-all error handler).
    regex = "[\\s\\S]*"
    part_isolating = False


@dataclass
class Ctx:
    request: Any
    backbone: Any
    metrics: Metrics
    segments: list[str]
    method: str
    body: Any = None
    #: A body was sent (JSON ``null`` parses to ``None`` but is present).
    has_body: bool = False


def create_app(backbone) -> QuartTrio:
    app = QuartTrio("parley")
    app.config["MAX_CONTENT_LENGTH"] = None
    app.config["RESPONSE_TIMEOUT"] = None
    app.config["BODY_TIMEOUT"] = 30
    app.url_map.converters["everything"] = _Everything
    app.url_map.merge_slashes = False
    app.url_map.strict_slashes = False
    metrics = Metrics(backbone)
    app.extensions["parley.backbone"] = backbone
    app.extensions["parley.metrics"] = metrics

    async def entry(path: str = ""):
        return await handle(backbone, metrics)

    # Rules with ``methods=None`` match every method, TRACE and PROPFIND
    # included, so each reaches the dispatcher's 404/405 and is counted
    # (Quart's add_url_rule always narrows a rule to a method list).
    for endpoint, path in (("root", "/"), ("all", "/<everything:path>")):
        app.url_map.add(app.url_rule_class(path, endpoint=endpoint, methods=None))
        app.view_functions[endpoint] = entry

    from . import websockets

    websockets.register(app, backbone, metrics)

    @app.errorhandler(Exception)
    async def unexpected(exc: Exception):  # pragma: no cover - safety net
        log.exception("unhandled error")
        return error_response(InternalError())

    return app


async def handle(backbone, metrics: Metrics):
    started = time.perf_counter()
    request.scope[REQUEST_STARTED] = trio.current_time()
    request_id = request.headers.get("x-request-id") or uuid.uuid4().hex
    route = "unmatched"
    try:
        route, response = await dispatch(backbone, metrics)
    except ParleyError as error:
        route = request.scope.get("parley.route", route)
        response = error_response(error)
        if error.code in ("rate_limited", "duplicate_post"):
            metrics.rejections.labels(error.code).inc()
    except JournalUnavailable:
        # A read (artifact, session describe, a channel lookup) that met a
        # database failure: the same 503 the write paths answer, not a 500.
        route = request.scope.get("parley.route", route)
        log.warning("journal unavailable on %s %s (request %s)", request.method, request.path, request_id)
        response = error_response(Unavailable("the journal is unavailable; retry shortly", retry_after=1))
    except Exception:
        route = request.scope.get("parley.route", route)
        log.exception("internal error on %s %s (request %s)", request.method, request.path, request_id)
        response = error_response(InternalError())
    elapsed = time.perf_counter() - started
    response.headers["x-request-id"] = request_id
    if unread_body(request):
        response.headers["connection"] = "close"
    metrics.requests.labels(route, str(response.status_code)).inc()
    if route in ("append", "claim", "reassign", "done"):
        metrics.latency.labels(route).observe(elapsed)
    if access_log.isEnabledFor(logging.INFO):
        access_log.info(
            "request",
            extra={
                "request_id": request_id,
                "method": request.method,
                "route": route,
                "status": response.status_code,
                "ms": round(elapsed * 1000, 3),
            },
        )
    return response


async def _run(route: str, target, *args) -> tuple[str, Any]:
    """Label the request with its route (metrics count failures too), then run it."""
    request.scope["parley.route"] = route
    response = await (target(*args) if args else target)
    return route, response


async def dispatch(backbone, metrics: Metrics) -> tuple[str, Any]:
    method = request.method
    segments = split_path(request.scope.get("raw_path") or request.path.encode())
    n = len(segments)
    # 1. artifact route: exactly channels/*/artifacts/*
    if n == 4 and segments[0] == "channels" and segments[2] == "artifacts":
        if method == "PUT":
            return await _run("artifact_put", channels.put_artifact(request, backbone, segments[1], segments[3]))
        if method == "GET":
            return await _run("artifact_get", channels.get_artifact(request, backbone, segments[1], segments[3]))
        raise MethodNotAllowed()
    # 2. stream route: channels/*/stream
    if n == 3 and segments[0] == "channels" and segments[2] == "stream":
        if method != "GET":
            raise MethodNotAllowed()
        return await _run("stream", stream.open_stream(request, backbone, segments[1]))
    # The web console's static files (ADR-0017): a path that was a 404 before.
    if n >= 1 and segments[0] == "ui":
        return await _run("ui", ui.serve(request, segments[1:]))
    # 3. JSON dispatch: the body is buffered (and must parse) on every route.
    raw = await read_body(request, backbone.settings.max_body_bytes, timeout=backbone.settings.body_timeout_s)
    ctx = Ctx(request, backbone, metrics, segments, method, parse_json(raw), raw != b"")
    return await _route_json(ctx)


async def _route_json(ctx: Ctx) -> tuple[str, Any]:
    s, method, n = ctx.segments, ctx.method, len(ctx.segments)
    if n == 1 and s[0] in ("healthz", "readyz", "metrics"):
        if method != "GET":
            raise MethodNotAllowed()
        handler = {"healthz": ops.healthz, "readyz": ops.readyz, "metrics": ops.metrics}[s[0]]
        return await _run(s[0], handler, ctx)
    if n >= 1 and s[0] == "channels":
        return await _route_channels(ctx)
    if n >= 1 and s[0] == "admin":
        return await _route_admin(ctx)
    if n == 2 and s[0] == "v1" and s[1] == "peers":
        if method != "GET":
            raise MethodNotAllowed()
        channels.check_read_auth(ctx)
        ctx.request.scope["parley.route"] = "peers"
        return "peers", json_response(200, {"peers": ctx.backbone.presence.peers()})
    if n >= 1 and s[0] == "v1":
        from . import sessions

        return await sessions.route(ctx)
    if n == 1 and s[0] == "openapi.json" and method == "GET":
        from .openapi import document

        return "openapi", json_response(200, document())
    raise NotFound()


async def _route_channels(ctx: Ctx) -> tuple[str, Any]:
    s, method, n = ctx.segments, ctx.method, len(ctx.segments)
    if n == 1:
        if method == "GET":
            return await _run("list", channels.list_channels(ctx))
        if method == "POST":
            return await _run("create", channels.create(ctx))
        raise MethodNotAllowed()
    if n == 2:
        if method == "GET":
            return await _run("describe", channels.describe(ctx, s[1]))
        raise MethodNotAllowed()
    if n == 3:
        action = s[2]
        if method == "GET" and action in channels.GET_ACTIONS:
            return await _run(action, channels.GET_ACTIONS[action](ctx, s[1]))
        if method != "POST":
            raise MethodNotAllowed()
        handler = channels.POST_ACTIONS.get(action)
        if handler is None:
            raise NotFound()
        return await _run(action, handler(ctx, s[1]))
    raise NotFound()


async def _route_admin(ctx: Ctx) -> tuple[str, Any]:
    s, method, n = ctx.segments, ctx.method, len(ctx.segments)
    if n == 2 and s[1] == "tokens":
        if method != "POST":
            raise MethodNotAllowed()
        return await _run("admin_mint", admin.mint(ctx))
    if n == 3 and s[1] == "tokens":
        if method != "POST":
            raise MethodNotAllowed()
        handler = admin.ACTIONS.get(s[2])
        if handler is None:
            raise NotFound()
        return await _run(f"admin_{s[2]}", handler, ctx)
    raise NotFound()


__all__ = ["create_app", "UpgradeRequired", "websocket"]
