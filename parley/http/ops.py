"""Operational routes: liveness, readiness, metrics."""

from __future__ import annotations

from quart import Response

from ..errors import Unavailable
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
