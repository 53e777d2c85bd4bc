"""The OpenAPI 3.1 description of every route parley serves (``GET /openapi.json``).

Rendered from the route table (:data:`parley.http.routes.ROUTES`, ADR-0033):
one operation per entry with a :class:`~parley.http.route_docs.Doc`, the
WebSocket routes marked ``x-websocket: true``, the ``/mcp`` mount included.
Nothing here lists a route, so the document cannot drift from the
dispatcher; ``tests/api/test_route_table.py`` and ``test_openapi.py`` check
both directions on a live server.

Errors use one envelope ``{"error": {"code", "message", "issues"?}}``; each
operation lists the wire codes it can answer (``x-error-codes``) and one
response per status whose schema narrows ``code`` to that route's codes.
"""

from __future__ import annotations

import copy
from functools import cache
from typing import Any

from .. import __version__
from ..errors import STATUS_BY_CODE
from .route_docs import (
    ACCEPT_SSE,
    ASSET_PARAM,
    CHANNEL_PARAM,
    IDEMPOTENCY_KEY,
    JSON,
    SESSION_PARAM,
    SHA_PARAM,
    SSE,
    TURN_EVENTS,
    ref,
)
from .routing import WEBSOCKET, Route
from .schemas import SCHEMAS

# -- rendering ---------------------------------------------------------------------------


def _error_responses(codes: tuple[str, ...]) -> dict[str, Any]:
    by_status: dict[int, list[str]] = {}
    for code in dict.fromkeys(codes):
        by_status.setdefault(STATUS_BY_CODE[code], []).append(code)
    out: dict[str, Any] = {}
    for status in sorted(by_status):
        listed = by_status[status]
        response: dict[str, Any] = {
            "description": "Error: " + ", ".join(f"`{c}`" for c in listed),
            "content": {
                JSON: {
                    "schema": {
                        "allOf": [
                            ref("ErrorEnvelope"),
                            {"properties": {"error": {"properties": {"code": {"enum": listed}}}}},
                        ]
                    }
                }
            },
            "x-error-codes": listed,
        }
        if status in (429, 503):
            response["headers"] = {
                "Retry-After": {"description": "Seconds to wait (rounded up).", "schema": {"type": "integer"}}
            }
        out[str(status)] = response
    return out


def _security(auth: str) -> list[dict[str, list[str]]]:
    if auth == "none":
        return []
    if auth == "read":
        return [{}, {"bearer": []}]  # open unless PARLEY_READ_AUTH=token
    if auth == "admin":
        return [{"admin": []}]
    return [{"bearer": []}]


def _operation(route: Route) -> dict[str, Any]:
    doc = route.doc
    params: list[dict[str, Any]] = []
    if "{channel}" in route.path:
        params.append(CHANNEL_PARAM)
    if "{sha256}" in route.path:
        params.append(SHA_PARAM)
    if "{id}" in route.path:
        params.append(SESSION_PARAM)
    if "{asset}" in route.path:
        params.append(ASSET_PARAM)
    params.extend(doc.query)
    params.extend(doc.headers)
    if doc.idempotent_key:
        params.append(IDEMPOTENCY_KEY)
    responses: dict[str, Any] = {}
    for status, (description, content_type, schema) in sorted(doc.success.items()):
        response: dict[str, Any] = {"description": description}
        if content_type is not None:
            response["content"] = {content_type: {"schema": schema or {}}}
            if ACCEPT_SSE in doc.headers and content_type == JSON:
                # `Accept: text/event-stream` streams the same turn (sessions.md "Streaming").
                response["content"][SSE] = {"schema": TURN_EVENTS}
        if doc.idempotent_key and 200 <= status < 300:
            response["headers"] = {
                "Idempotent-Replayed": {
                    "description": "`true` when this answer replays an earlier identical request.",
                    "schema": {"type": "string", "const": "true"},
                }
            }
        responses[str(status)] = response
    responses.update(_error_responses(doc.errors))
    op: dict[str, Any] = {
        "operationId": doc.operation_id,
        "summary": doc.summary,
        "tags": [doc.tag],
        "security": _security(route.auth),
        "responses": responses,
        "x-error-codes": list(dict.fromkeys(doc.errors)),
    }
    if doc.description:
        op["description"] = doc.description
    if params:
        op["parameters"] = params
    if doc.request is not None:
        content_type, schema = doc.request
        op["requestBody"] = {"required": doc.request_required, "content": {content_type: {"schema": schema}}}
    if route.serve is WEBSOCKET:
        op["x-websocket"] = True
    op.update(doc.extra)
    return op


def document() -> dict[str, Any]:
    """The OpenAPI 3.1 document (a fresh dict on every call)."""
    return copy.deepcopy(_document())


@cache
def _document() -> dict[str, Any]:
    from .routes import operations

    paths: dict[str, dict[str, Any]] = {}
    for route in operations():
        paths.setdefault(route.path, {})[route.method.lower()] = _operation(route)
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "parley",
            "version": __version__,
            "summary": "A durable coordination backbone for teams of AI agents: Caucus-compatible channels "
                       "and replay-safe sessions.",
            "description": "Every error is `{\"error\": {\"code\", \"message\", \"issues\"?}}`; each operation "
                           "lists its codes in `x-error-codes`. Routes marked `x-websocket: true` are "
                           "WebSocket upgrades (a refusal is an ordinary HTTP error before any 101).",
        },
        "servers": [{"url": "/"}],
        "tags": [{"name": t} for t in ("channels", "claims", "artifacts", "sessions", "admin", "ops", "mcp")],
        "paths": paths,
        "components": {
            "schemas": SCHEMAS,
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer", "description": "A seed or minted agent token."},
                "admin": {"type": "http", "scheme": "bearer", "description": "PARLEY_ADMIN_TOKEN (loopback only)."},
            },
        },
    }


def route_set() -> set[tuple[str, str]]:
    """``{(METHOD, path)}`` of every documented route."""
    from .routes import operations

    return {(r.method, r.path) for r in operations()}


__all__ = ["document", "route_set"]
