"""Admin token routes ``POST /admin/tokens[/revoke|/rotate]`` and their audit trail.

The gate runs before any validation: 401 unless an admin token is
configured, the bind host is loopback, and the bearer matches. Each
recognised operation writes one secret-free JSON line to stderr (on success
and failure) while the surface is enabled and auditing is on.
"""

from __future__ import annotations

import datetime as dt
import sys
from typing import Any

import orjson

from ..domain.tokens import token_digest
from ..errors import InvalidRequest, Unauthorized
from .auth import is_admin
from .wire import json_response


def _audit(settings, op: str, result: str, **fields: str | None) -> None:
    if not settings.admin_enabled or not settings.admin_audit:
        return
    line: dict[str, Any] = {"kind": "caucus.admin.audit", "op": op}
    for name in ("agent_id", "owner", "digest"):
        value = fields.get(name)
        if isinstance(value, str):
            line[name] = value
    line["ts"] = dt.datetime.now(dt.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    line["result"] = result
    sys.stderr.write(orjson.dumps(line).decode() + "\n")
    sys.stderr.flush()


def _nonempty(body: Any, key: str) -> str | None:
    value = body.get(key) if isinstance(body, dict) else None
    return value if isinstance(value, str) and value != "" else None


def _gate(ctx, op: str) -> dict[str, Any]:
    body = ctx.body
    if not is_admin(ctx.backbone.settings, ctx.request.headers.get("authorization")):
        claimed = body if isinstance(body, dict) else {}
        _audit(
            ctx.backbone.settings,
            op,
            "unauthorized",
            agent_id=claimed.get("agent_id"),
            owner=claimed.get("owner"),
        )
        raise Unauthorized()
    return body if isinstance(body, dict) else {}


def _invalid(ctx, op: str, message: str) -> InvalidRequest:
    _audit(ctx.backbone.settings, op, "invalid_request")
    return InvalidRequest(message)


async def mint(ctx):
    body = _gate(ctx, "mint")
    agent_id, owner = _nonempty(body, "agent_id"), _nonempty(body, "owner")
    if agent_id is None or owner is None:
        raise _invalid(ctx, "mint", "mint requires a non-empty agent_id and owner")
    token = await ctx.backbone.tokens.mint(agent_id, owner)
    _audit(ctx.backbone.settings, "mint", "ok", agent_id=agent_id, owner=owner, digest=token_digest(token)[:12])
    return json_response(201, {"token": token, "agent_id": agent_id, "owner": owner})


async def revoke(ctx):
    body = _gate(ctx, "revoke")
    agent_id, digest = _nonempty(body, "agent_id"), _nonempty(body, "digest")
    if agent_id is None and digest is None:
        raise _invalid(ctx, "revoke", "revoke requires an agent_id or digest")
    if digest is not None:
        revoked = await ctx.backbone.tokens.revoke(digest=digest)
        fields = {"digest": digest[:12]}
    else:
        revoked = await ctx.backbone.tokens.revoke(agent_id=agent_id)
        fields = {"agent_id": agent_id}
    _audit(ctx.backbone.settings, "revoke", "revoked" if revoked else "not_found", **fields)
    return json_response(200, {"revoked": revoked})


async def rotate(ctx):
    body = _gate(ctx, "rotate")
    agent_id, owner, digest = _nonempty(body, "agent_id"), _nonempty(body, "owner"), _nonempty(body, "digest")
    # The contract names the two checks by the operations rotate is made of.
    if agent_id is None and digest is None:
        raise _invalid(ctx, "rotate", "revoke requires an agent_id or digest")
    if agent_id is None or owner is None:
        raise _invalid(ctx, "rotate", "mint requires a non-empty agent_id and owner")
    token = await ctx.backbone.tokens.rotate(agent_id, owner, digest)
    _audit(ctx.backbone.settings, "rotate", "ok", agent_id=agent_id, owner=owner, digest=token_digest(token)[:12])
    return json_response(201, {"token": token, "agent_id": agent_id, "owner": owner})

