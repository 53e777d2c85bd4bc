"""Session routes (contracts/sessions.md): parse, authenticate, hand to the service.

Refusal order (the contract's one total order): non-object body (400) →
bearer (401) → turn input incl. the Idempotency-Key shape (400) → the
session actor decides steps 4–8 → the turn (lease contention is a 200).
Routes never decide domain questions.

``Accept: text/event-stream`` on start/continue streams the turn: every
refusal is still a plain JSON answer, because the stream only opens once the
actor has accepted (or replayed) the turn.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import orjson
import trio
from quart import Response

from ..actors.session_actor import TurnHandle, TurnRequest
from ..domain import session as S
from ..errors import InvalidRequest
from .auth import require_identity
from .channels import idempotency_key
from .error_frames import sse_error_event
from .wire import json_response, require_object

KEEP_ALIVE = b": keep-alive\n\n"


def _body(ctx) -> dict[str, Any]:
    """An empty body means ``{}``; any other non-object (JSON ``null`` too) is a 400."""
    return require_object(ctx.body) if ctx.has_body else {}


def _identity(ctx):
    return require_identity(ctx.backbone.tokens, ctx.request.headers.get("authorization"))


def wants_stream(request) -> bool:
    return "text/event-stream" in (request.headers.get("accept") or "").lower()


async def start(ctx):
    body = _body(ctx)
    identity = _identity(ctx)
    turn_input = S.parse_turn_input(body, start=True)
    key = idempotency_key(ctx.request)
    streamed = wants_stream(ctx.request)
    req = TurnRequest(identity, turn_input, None, key, S.fingerprint(body), streamed=streamed)
    handle = await ctx.backbone.sessions.start(req)
    return await respond(ctx, handle, streamed)


async def continue_(ctx, session_id: str):
    body = _body(ctx)
    identity = _identity(ctx)
    turn_input = S.parse_turn_input(body, start=False)
    key = idempotency_key(ctx.request)
    token = S.presented_token(body.get("continuationToken"), ctx.request.headers.get("x-continuation-token"))
    streamed = wants_stream(ctx.request)
    req = TurnRequest(identity, turn_input, token, key, S.fingerprint(body), streamed=streamed)
    handle = await ctx.backbone.sessions.continue_(session_id, req)
    return await respond(ctx, handle, streamed)


async def describe(ctx, session_id: str):
    identity = _identity(ctx)
    return json_response(200, await ctx.backbone.sessions.describe(session_id, identity))


async def list_sessions(ctx):
    """``GET /v1/sessions``: the bearer's own open sessions, newest first (ADR-0017)."""
    identity = _identity(ctx)
    sessions = await ctx.backbone.sessions.list_for(identity)
    return json_response(200, {"agent_id": identity.agent_id, "owner": identity.owner, "sessions": sessions})


async def close(ctx, session_id: str):
    body = _body(ctx)
    identity = _identity(ctx)
    for field in body:
        if field != "continuationToken":
            raise InvalidRequest(f'unknown field "{S.fragment(str(field))}"')
    if "continuationToken" in body and not isinstance(body["continuationToken"], str):
        raise InvalidRequest("continuationToken must be a string")
    token = S.presented_token(body.get("continuationToken"), ctx.request.headers.get("x-continuation-token"))
    return json_response(200, await ctx.backbone.sessions.close(session_id, identity, token))


def _headers(handle: TurnHandle) -> dict[str, str]:
    headers: dict[str, str] = {}
    if handle.replayed:
        headers["Idempotent-Replayed"] = "true"
    if handle.contended:
        headers["Retry-After"] = "1"
    return headers


async def respond(ctx, handle: TurnHandle, streamed: bool):
    if not streamed:
        response = await handle.result()
        return json_response(200, response, _headers(handle))
    return sse_response(ctx.backbone, handle)


# -- SSE ---------------------------------------------------------------------------


def sse_event(kind: str, data: Any) -> bytes:
    return b"event: " + kind.encode() + b"\ndata: " + orjson.dumps(data) + b"\n\n"


def record_of(event) -> dict[str, Any]:
    return {"stream": event.stream_id, "seq": event.seq, "type": event.type, "data": event.data}


def turn_events(handle: TurnHandle) -> list[tuple[str, Any]]:
    """The events of a finished handle, in order: records, deltas, outcome (or one error)."""
    if handle.error is not None:
        return [sse_error_event(handle.error)]
    assert handle.response is not None
    out: list[tuple[str, Any]] = []
    if not handle.replayed and not handle.contended:
        out.extend(("record", record_of(e)) for e in handle.records)
        out.extend(("delta", m) for m in handle.response.get("output", {}).get("messages", ()))
    out.append(("outcome", handle.response))
    return out


def sse_response(backbone, handle: TurnHandle) -> Response:
    heartbeat = backbone.settings.stream_heartbeat_s

    async def body() -> AsyncIterator[bytes]:
        if not handle.done.is_set():
            yield KEEP_ALIVE
        while not handle.done.is_set():
            with trio.move_on_after(heartbeat):
                await handle.done.wait()
            if not handle.done.is_set():
                yield KEEP_ALIVE
        for kind, data in turn_events(handle):
            yield sse_event(kind, data)

    response = Response(body(), status=200)
    response.headers["content-type"] = "text/event-stream; charset=utf-8"
    response.headers["cache-control"] = "no-cache, no-transform"
    response.headers["x-accel-buffering"] = "no"
    for name, value in _headers(handle).items():
        response.headers[name] = value
    response.timeout = None
    return response
