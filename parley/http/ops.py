"""Operational routes: liveness, readiness, metrics, presence and the OpenAPI document."""

from __future__ import annotations

from quart import Response

from ..errors import Unavailable
from .channels import check_read_auth
from .wire import json_response


async def healthz(ctx):
    return json_response(200, {"ok": True})


async def readyz(ctx):
    reason = await ctx.backbone.readiness()
    if reason is not None:
        raise Unavailable(reason, retry_after=1)
    return json_response(200, {"ok": True})


async def metrics(ctx):
    return Response(ctx.metrics.render(), status=200, content_type=ctx.metrics.content_type)


async def peers(ctx):
    """``GET /v1/peers``: agents seen recently (ADR-0010)."""
    check_read_auth(ctx)
    return json_response(200, {"peers": ctx.backbone.presence.peers()})


async def openapi(ctx):
    from .openapi import document

    return json_response(200, document())
