"""The Quart-Trio app factory and the request wrapper around the route table.

Caucus's clients depend on its exact 404/405 matrix and on raw-path
percent-decoding (channels.md §4.2), so Werkzeug's router is bypassed for
HTTP: two catch-all Quart rules (every method) feed :func:`dispatch`, which
looks the request up in :data:`parley.http.routes.ROUTES` (ADR-0006,
ADR-0033). The table's WebSocket entries become ordinary Quart websocket
routes. :func:`handle` turns whatever the handler raised into the error
envelope, labels the request for ``/metrics`` and writes the access log.
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

from ..actors.failures import wire_error
from ..errors import InternalError, NotFound, UpgradeRequired
from .metrics import Metrics
from .routes import ROUTER, ROUTES, websocket_routes
from .routing import JSON, RAW, UNMATCHED
from .wire import REQUEST_STARTED, error_response, parse_json, read_body, split_path, unread_body

log = logging.getLogger("parley.http")
#: Labels whose latency goes to ``parley_write_seconds`` (the table's ``timed`` routes).
TIMED = frozenset(r.label for r in ROUTES if r.timed)
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

    for route in websocket_routes():
        app.add_websocket(route.quart_rule, route.label, route.handler(backbone, metrics, route.label))

    @app.errorhandler(Exception)
    async def unexpected(exc: Exception):  # pragma: no cover - safety net
        log.exception("unhandled error")
        return error_response(InternalError())

    return app


async def handle(backbone, metrics: Metrics):
    started = time.perf_counter()
    request.scope[REQUEST_STARTED] = trio.current_time()
    request_id = request.headers.get("x-request-id") or uuid.uuid4().hex
    route = UNMATCHED
    try:
        route, response = await dispatch(backbone, metrics)
    except Exception as exc:
        route = request.scope.get("parley.route", route)
        response = error_response(refusal(exc, request.method, request.path, request_id, metrics))
    elapsed = time.perf_counter() - started
    response.headers["x-request-id"] = request_id
    if unread_body(request):
        response.headers["connection"] = "close"
    account(metrics, route, response.status_code, elapsed, request_id, request.method)
    return response


def refusal(exc: Exception, method: str, path: str, request_id: str, metrics: Metrics):
    """What a request whose handler raised ``exc`` is answered (one mapper, ADR-0034)."""
    # A refusal, a read that met a database failure (the same 503 the
    # write paths answer), or a bug (500, logged).
    error = wire_error(exc, log=log, during=f"{method} {path} (request {request_id})")
    if error.code in ("rate_limited", "duplicate_post"):
        metrics.rejections.labels(error.code).inc()
    return error


def account(metrics: Metrics, route: str, status: int, elapsed: float, request_id: str, method: str) -> None:
    """Count the answered request for ``/metrics`` and write its access line."""
    count(metrics, route, status, elapsed)
    log_access(route, status, elapsed, request_id, method)


def count(metrics: Metrics, route: str, status: int, elapsed: float) -> None:
    """The answered request in ``/metrics`` (before its answer is sent: a client that reads
    ``/metrics`` after its answer sees it counted)."""
    metrics.requests.labels(route, str(status)).inc()
    if route in TIMED:
        metrics.latency.labels(route).observe(elapsed)


def log_access(route: str, status: int, elapsed: float, request_id: str, method: str) -> None:
    """The request's access line."""
    if access_log.isEnabledFor(logging.INFO):
        access_log.info(
            "request",
            extra={
                "request_id": request_id,
                "method": method,
                "route": route,
                "status": status,
                "ms": round(elapsed * 1000, 3),
            },
        )


async def dispatch(backbone, metrics: Metrics) -> tuple[str, Any]:
    """Find the request's route in the table (ADR-0033) and run it; returns (label, response).

    Raw routes (artifacts, the SSE stream, the console) are matched before
    the body is buffered, every other route after it has been read and parsed
    (channels.md §4.1: invalid JSON is refused even on a 404).
    """
    method = request.method
    segments = split_path(request.scope.get("raw_path") or request.path.encode())
    found = ROUTER.find(RAW, method, segments)
    ctx = Ctx(request, backbone, metrics, segments, method)
    if found is None:
        raw = await read_body(request, backbone.settings.max_body_bytes, timeout=backbone.settings.body_timeout_s)
        ctx.body, ctx.has_body = parse_json(raw), raw != b""
        found = ROUTER.find(JSON, method, segments)
    if found is None:
        raise NotFound()
    # Labelled before the handler runs, so its refusals are counted under it too.
    request.scope["parley.route"] = found.label
    if found.error is not None:
        raise found.error
    return found.label, await found.route.handler(ctx, *found.params)


__all__ = ["create_app", "UpgradeRequired", "websocket"]
