"""Channel routes (channels.md §4.2): parse, check the transport rules, call the backbone.

Order on a write route: non-object body (400) → bearer (401) →
``Idempotency-Key`` shape → the reassign assignee shape → the backbone.
Routes never decide domain questions.
"""

from __future__ import annotations

import re
from typing import Any

from ..domain.message import check_assignee_shape
from ..errors import InvalidRequest, NotFound
from .auth import require_identity
from .outcomes import outcome_response
from .wire import json_response, read_body, require_object

_IDEM_KEY = re.compile(r"^[\x21-\x7e]{1,255}$")


def idempotency_key(request) -> str | None:
    raw = request.headers.get("idempotency-key")
    if raw is None:
        return None
    if not _IDEM_KEY.match(raw):
        raise InvalidRequest("Idempotency-Key must be 1-255 visible ASCII characters")
    return raw


def _write_prelude(ctx) -> tuple[dict[str, Any], Any, str | None]:
    body = require_object(ctx.body)
    identity = require_identity(ctx.backbone.tokens, ctx.request.headers.get("authorization"))
    return body, identity, idempotency_key(ctx.request)


def check_read_auth(ctx) -> None:
    if ctx.backbone.settings.read_auth:
        require_identity(ctx.backbone.tokens, ctx.request.headers.get("authorization"))


async def create(ctx):
    body, identity, key = _write_prelude(ctx)
    return outcome_response(await ctx.backbone.create_channel(body, identity, key))


async def list_channels(ctx):
    check_read_auth(ctx)
    return json_response(200, ctx.backbone.list_channels())


async def describe(ctx, channel: str):
    check_read_auth(ctx)
    return json_response(200, ctx.backbone.describe(channel))


async def subscribe(ctx, channel: str):
    check_read_auth(ctx)
    return json_response(200, ctx.backbone.subscribe(channel))


async def append(ctx, channel: str):
    body, identity, key = _write_prelude(ctx)
    return outcome_response(await ctx.backbone.append(channel, body, identity, key))


async def read(ctx, channel: str):
    return json_response(200, await read_page(ctx, channel))


async def read_page(ctx, channel: str) -> bytes:
    """``/read``'s 200 body; also what :mod:`parley.http.fast_read` serves (ADR-0048)."""
    # An absent body is {} (→ invalid_cursor); a present non-object one,
    # JSON null included, is a structural 400 (§4.2).
    body = ctx.body if ctx.has_body else {}
    if not isinstance(body, dict):
        raise InvalidRequest("request body must be a JSON object")
    check_read_auth(ctx)
    return await ctx.backbone.read_page(channel, body, page_body)


def page_body(parts: list[bytes], cursor: int) -> bytes:
    """``{"messages":[…],"cursor":N}`` from the messages' stored bytes: byte for byte
    what ``orjson.dumps`` of the page gives, assembled with one join (ADR-0041)."""
    return b"".join((b'{"messages":[', b",".join(parts), b'],"cursor":%d}' % cursor))


async def claim(ctx, channel: str):
    body, identity, key = _write_prelude(ctx)
    return outcome_response(await ctx.backbone.claim(channel, "claim", body, identity, idem_key=key))


async def reassign(ctx, channel: str):
    body, identity, key = _write_prelude(ctx)
    target = check_assignee_shape(body.get("assignee"))
    message = {k: v for k, v in body.items() if k != "assignee"}
    result = await ctx.backbone.claim(channel, "reassign", message, identity, target, key)
    return outcome_response(result)


async def done(ctx, channel: str):
    body, identity, key = _write_prelude(ctx)
    return outcome_response(await ctx.backbone.claim(channel, "done", body, identity, idem_key=key))


async def claims(ctx, channel: str):
    check_read_auth(ctx)
    return json_response(200, await ctx.backbone.claims(channel))


async def archive(ctx, channel: str):
    identity = require_identity(ctx.backbone.tokens, ctx.request.headers.get("authorization"))
    return outcome_response(await ctx.backbone.archive(channel, identity))


# -- artifacts (routed before the JSON dispatch; bodies are raw bytes) ---------


async def put_artifact(ctx, channel: str, sha256: str):
    from ..errors import ArtifactTooLarge

    request, backbone = ctx.request, ctx.backbone
    identity = require_identity(backbone.tokens, request.headers.get("authorization"))
    del identity
    # Caucus order: token → body with its running cap (413) → the backbone
    # (slug → channel → sha format → …), so the channel is not checked here.
    cap = backbone.limits.max_artifact_bytes
    data = await read_body(
        request, cap, ArtifactTooLarge(f"artifact exceeds {cap} bytes"), timeout=backbone.settings.body_timeout_s
    )
    return outcome_response(await backbone.put_artifact(channel, sha256, data))


async def get_artifact(ctx, channel: str, sha256: str):
    from quart import Response

    request, backbone = ctx.request, ctx.backbone
    if backbone.settings.read_auth:
        require_identity(backbone.tokens, request.headers.get("authorization"))
    data = await backbone.get_artifact(channel, sha256)
    if data is None:
        raise NotFound("no such artifact")
    response = Response(data, status=200, content_type="application/octet-stream")
    response.headers["content-length"] = str(len(data))
    return response
