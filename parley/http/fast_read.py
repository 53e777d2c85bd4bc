"""``POST /channels/:c/read`` answered at the ASGI layer, in front of Quart (ADR-0048).

A read page is one buffer of stored bytes (ADR-0041), so what a scan paid
per page was mostly the stack around it: Quart's request and app contexts,
its ``Request``/``Response`` objects and Werkzeug's matching of the two
catch-all rules. :class:`FastReads` serves the one hot read route itself,
with the same steps :func:`parley.http.app.handle` and
:func:`~parley.http.app.dispatch` take, in the same order, through the same
helpers: the route table's lookup (a request goes this way only when the
table gives it the ``channels.read`` operation), the bounded body read
(413, 408), the JSON parse (400 ``invalid_json``), the handler's checks
(:func:`parley.http.channels.read_page`), the one error mapper, the
``x-request-id`` and ``connection: close`` headers, the metric labels and the
access line. Every other request, and any read this layer cannot vouch for
(no ``raw_path``, a path that does not decode, an ``Expect`` header), goes to
Quart unchanged. The response's status, headers (in Quart's order) and body
are byte for byte what Quart sends (``tests/api/test_fast_read.py`` compares
the two servers' wire bytes case by case).
"""

from __future__ import annotations

import time
import uuid
from typing import Any

import orjson
import trio

from ..errors import ParleyError
from . import channels
from .app import Ctx, count, log_access, refusal
from .routes import ROUTER, ROUTES
from .routing import JSON, RAW, UNMATCHED
from .wire import JSON_TYPE, REQUEST_STARTED, error_headers, parse_json, read_body, split_path, unread_body

#: The metric label of the one operation this layer answers (the table's ``read``).
READ_LABEL = next(r.label for r in ROUTES if r.handler is channels.read)
_CONTENT_TYPE = JSON_TYPE.encode("latin-1")


class _Headers:
    """The request headers as Quart shows them: case-insensitive, the first of repeated names."""

    __slots__ = ("_items",)

    def __init__(self, raw: list[tuple[bytes, bytes]]) -> None:
        self._items = raw

    def get(self, name: str, default: str | None = None) -> str | None:
        key = name.lower().encode("latin-1")
        for k, v in self._items:
            if k.lower() == key:
                return v.decode("latin-1")
        return default

    def __contains__(self, name: str) -> bool:
        return self.get(name) is not None


class _Request:
    """What the shared helpers read of a request (``read_body``, ``unread_body``, the auth check)."""

    __slots__ = ("scope", "headers", "method", "path", "_receive")

    def __init__(self, scope: dict[str, Any], receive: Any) -> None:
        self.scope = scope
        self.headers = _Headers(scope.get("headers") or [])
        self.method = scope["method"]
        self.path = scope.get("path", "")
        self._receive = receive

    @property
    def body(self):
        return self._chunks()

    async def _chunks(self):
        while True:
            message = await self._receive()
            if message["type"] != "http.request":
                return  # the client went away; nobody reads the answer
            data = message.get("body", b"")
            if data:
                yield data
            if not message.get("more_body", False):
                return


class FastReads:
    """ASGI: ``POST /channels/:c/read`` here, everything else to ``app`` (the ``/mcp`` mount, then Quart)."""

    def __init__(self, app: Any, backbone: Any, metrics: Any) -> None:
        self.app = app
        self.backbone = backbone
        self.metrics = metrics
        #: Requests this layer answered (the rest went to ``app``).
        self.served = 0

    def channel_of(self, scope: dict[str, Any]) -> str | None:
        """The channel of a request this layer serves, else ``None`` (Quart serves it)."""
        if scope["type"] != "http" or scope.get("method") != "POST":
            return None
        raw_path = scope.get("raw_path")
        if not raw_path or (b"read" not in raw_path and b"%" not in raw_path):
            return None  # no segment of it can decode to "read"
        for name, _ in scope.get("headers") or ():
            if name.lower() == b"expect":
                return None
        try:
            segments = split_path(raw_path)
        except ParleyError:
            return None
        if ROUTER.find(RAW, "POST", segments) is not None:
            return None
        found = ROUTER.find(JSON, "POST", segments)
        if found is None or found.route is None or found.route.handler is not channels.read:
            return None
        return found.params[0]

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        channel = self.channel_of(scope)
        if channel is None:
            await self.app(scope, receive, send)
            return
        await self.serve(scope, receive, send, channel)

    async def serve(self, scope: dict[str, Any], receive: Any, send: Any, channel: str) -> None:
        backbone, metrics = self.backbone, self.metrics
        self.served += 1
        started = time.perf_counter()
        scope[REQUEST_STARTED] = trio.current_time()
        request = _Request(scope, receive)
        request_id = request.headers.get("x-request-id") or uuid.uuid4().hex
        route = UNMATCHED
        headers: list[tuple[bytes, bytes]] = []
        try:
            # dispatch's order: the body (bounded, timed), its JSON, then the labelled handler
            # (a refused body is counted as unmatched there, so it is here).
            raw = await read_body(request, backbone.settings.max_body_bytes, timeout=backbone.settings.body_timeout_s)
            ctx = Ctx(request, backbone, metrics, [], "POST", parse_json(raw), raw != b"")
            route = READ_LABEL
            status, payload = 200, await channels.read_page(ctx, channel)
        except Exception as exc:
            error = refusal(exc, request.method, request.path, request_id, metrics)
            status, payload = error.status, orjson.dumps(error.envelope())
            headers = [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in error_headers(error).items()]
        elapsed = time.perf_counter() - started
        head = [(b"content-type", _CONTENT_TYPE), (b"content-length", b"%d" % len(payload)), *headers]
        head.append((b"x-request-id", request_id.encode("latin-1")))
        if unread_body(request):
            head.append((b"connection", b"close"))
        count(metrics, route, status, elapsed)
        try:
            await send({"type": "http.response.start", "status": status, "headers": head})
            await send({"type": "http.response.body", "body": payload, "more_body": False})
        finally:
            # After the answer, off the client's wait (ADR-0058); the same line, the latency
            # measured before the send as before.
            log_access(route, status, elapsed, request_id, request.method)
