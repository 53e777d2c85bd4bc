"""The admin token surface and its audit trail (channels.md §3 "Token map", §4.2 admin gate).

The gate runs before any validation; each recognised mint/revoke/rotate
writes one secret-free JSON line to stderr while the surface is enabled.
The server runs in this process, so ``capsys`` sees those lines.
"""

from __future__ import annotations

import hashlib
import re

import orjson

from tests.support.server import running_server
from tests.support.server import test_settings as settings_for
from tests.support.messages import ulid

UNAUTHORIZED = b'{"error":{"code":"unauthorized","message":"missing or invalid token"}}'
TOKEN = re.compile(r"^tok_[A-Za-z0-9_-]{43}$")
ISO = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")


def digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def audit_lines(capsys) -> list[dict]:
    err = capsys.readouterr().err
    lines = [orjson.loads(line) for line in err.splitlines() if '"caucus.admin.audit"' in line]
    for line in lines:
        assert ISO.match(line.pop("ts"))
    return lines


async def can_write(server, token: str, body: str) -> int:
    async with server.client(token) as client:
        response = await client.post("/channels/ops/append", json={"type": "note", "body": body, "msg_id": ulid()})
        return response.status_code


async def test_mint_revoke_rotate(server, capsys):
    async with server.client("tok-a") as a:
        await a.post("/channels", json={"channel": "ops"})
    async with server.client("admin-secret") as admin:
        minted = await admin.post("/admin/tokens", json={"agent_id": "bot-1", "owner": "dana", "extra": 1})
        assert minted.status_code == 201
        body = minted.json()
        assert list(body) == ["token", "agent_id", "owner"]
        assert TOKEN.match(body["token"]) and body["agent_id"] == "bot-1" and body["owner"] == "dana"
        token = body["token"]
        async with server.client(token) as bot:
            stored = (await bot.post("/channels/ops/append", json={"type": "note", "body": "hi", "msg_id": ulid()})).json()
            assert (stored["message"]["agent_id"], stored["message"]["owner"]) == ("bot-1", "dana")

        second = (await admin.post("/admin/tokens", json={"agent_id": "bot-1", "owner": "dana"})).json()["token"]
        # revoke by agent_id removes all of that agent's minted tokens
        assert (await admin.post("/admin/tokens/revoke", json={"agent_id": "bot-1"})).json() == {"revoked": True}
        assert await can_write(server, token, "x") == 401
        assert await can_write(server, second, "y") == 401
        assert (await admin.post("/admin/tokens/revoke", json={"agent_id": "bot-1"})).json() == {"revoked": False}
        # seed tokens are not revocable
        assert (await admin.post("/admin/tokens/revoke", json={"agent_id": "sess-a"})).json() == {"revoked": False}
        assert (await admin.post("/admin/tokens/revoke", json={"digest": digest("tok-a")})).json() == {"revoked": False}
        assert await can_write(server, "tok-a", "seed still works") == 201

        # revoke by digest; a digest takes precedence over agent_id
        keep = (await admin.post("/admin/tokens", json={"agent_id": "bot-2", "owner": "dana"})).json()["token"]
        drop = (await admin.post("/admin/tokens", json={"agent_id": "bot-2", "owner": "dana"})).json()["token"]
        response = await admin.post("/admin/tokens/revoke", json={"agent_id": "bot-2", "digest": digest(drop)})
        assert response.status_code == 200 and response.json() == {"revoked": True}
        assert await can_write(server, drop, "a") == 401
        assert await can_write(server, keep, "b") == 201
        assert (await admin.post("/admin/tokens/revoke", json={"digest": "0" * 64})).json() == {"revoked": False}

        # rotate: a new token, the agent's old ones revoked; it may re-anchor the identity
        rotated = await admin.post("/admin/tokens/rotate", json={"agent_id": "bot-2", "owner": "erin"})
        assert rotated.status_code == 201
        new = rotated.json()
        assert list(new) == ["token", "agent_id", "owner"] and new["owner"] == "erin"
        assert await can_write(server, keep, "c") == 401
        async with server.client(new["token"]) as bot:
            stored = (await bot.post("/channels/ops/append", json={"type": "note", "body": "d", "msg_id": ulid()})).json()
            assert stored["message"]["owner"] == "erin"
        # rotate by digest targets that one token
        one = (await admin.post("/admin/tokens", json={"agent_id": "bot-3", "owner": "f"})).json()["token"]
        two = (await admin.post("/admin/tokens", json={"agent_id": "bot-3", "owner": "f"})).json()["token"]
        rotated = await admin.post("/admin/tokens/rotate", json={"agent_id": "bot-3", "owner": "f", "digest": digest(one)})
        assert rotated.status_code == 201
        assert await can_write(server, one, "e") == 401
        assert await can_write(server, two, "g") == 201
        assert await can_write(server, rotated.json()["token"], "h") == 201

        # Admin operations never post to a channel.
        assert (await admin.get("/channels/ops")).json()["head"] == 6

    lines = audit_lines(capsys)
    assert lines[0] == {
        "kind": "caucus.admin.audit",
        "op": "mint",
        "agent_id": "bot-1",
        "owner": "dana",
        "digest": digest(token)[:12],
        "result": "ok",
    }
    assert list(lines[0]) == ["kind", "op", "agent_id", "owner", "digest", "result"]
    assert lines[2] == {"kind": "caucus.admin.audit", "op": "revoke", "agent_id": "bot-1", "result": "revoked"}
    assert lines[3] == {"kind": "caucus.admin.audit", "op": "revoke", "agent_id": "bot-1", "result": "not_found"}
    assert lines[5] == {"kind": "caucus.admin.audit", "op": "revoke", "digest": digest("tok-a")[:12], "result": "not_found"}
    assert lines[8] == {"kind": "caucus.admin.audit", "op": "revoke", "digest": digest(drop)[:12], "result": "revoked"}
    assert lines[10] == {
        "kind": "caucus.admin.audit", "op": "rotate", "agent_id": "bot-2", "owner": "erin",
        "digest": digest(new["token"])[:12], "result": "ok",
    }
    assert [line["op"] for line in lines] == ["mint"] * 2 + ["revoke"] * 4 + ["mint"] * 2 + ["revoke"] * 2 + [
        "rotate"] + ["mint"] * 2 + ["rotate"]


async def test_admin_gate_and_validation(server, capsys):
    async with server.client() as anon, server.client("tok-a") as writer, server.client("admin-secret") as admin:
        for client, extra in [(anon, {}), (writer, {}), (anon, {"Authorization": "Bearer admin-secre"}),
                              (anon, {"Authorization": "Basic admin-secret"})]:
            for path in ("/admin/tokens", "/admin/tokens/revoke", "/admin/tokens/rotate"):
                response = await client.post(path, json={}, headers=extra)  # the gate comes before validation
                assert response.status_code == 401 and response.content == UNAUTHORIZED
        capsys.readouterr()

        cases = [
            ("/admin/tokens", {}, "mint requires a non-empty agent_id and owner"),
            ("/admin/tokens", {"agent_id": "x"}, "mint requires a non-empty agent_id and owner"),
            ("/admin/tokens", {"agent_id": "x", "owner": ""}, "mint requires a non-empty agent_id and owner"),
            ("/admin/tokens", {"agent_id": 5, "owner": "o"}, "mint requires a non-empty agent_id and owner"),
            ("/admin/tokens", None, "mint requires a non-empty agent_id and owner"),
            ("/admin/tokens/revoke", {}, "revoke requires an agent_id or digest"),
            ("/admin/tokens/revoke", {"agent_id": ""}, "revoke requires an agent_id or digest"),
            ("/admin/tokens/rotate", {}, "revoke requires an agent_id or digest"),
            ("/admin/tokens/rotate", {"owner": "o"}, "revoke requires an agent_id or digest"),
            ("/admin/tokens/rotate", {"digest": "0" * 64}, "mint requires a non-empty agent_id and owner"),
            ("/admin/tokens/rotate", {"agent_id": "x"}, "mint requires a non-empty agent_id and owner"),
        ]
        for path, body, message in cases:
            response = await admin.post(path, json=body) if body is not None else await admin.post(path)
            assert response.status_code == 400, (path, body)
            assert response.json() == {"error": {"code": "invalid_request", "message": message}}
        lines = audit_lines(capsys)
        assert [line["op"] for line in lines] == ["mint"] * 5 + ["revoke"] * 2 + ["rotate"] * 4
        assert all(set(line) == {"kind", "op", "result"} and line["result"] == "invalid_request" for line in lines)

        # unauthorized lines carry only the claimed identity; never a digest or a secret
        await anon.post("/admin/tokens", json={"agent_id": "a", "owner": "b"}, headers={"Authorization": "Bearer guess"})
        await anon.post("/admin/tokens/revoke", json={"digest": "f" * 64})
        # non-op shapes are not audited
        await admin.get("/admin/tokens")
        await admin.post("/admin/tokens/nope", json={})
        err = capsys.readouterr().err
        assert "guess" not in err and "admin-secret" not in err and "f" * 12 not in err
        lines = [orjson.loads(line) for line in err.splitlines() if "caucus.admin.audit" in line]
        for line in lines:
            line.pop("ts")
        assert lines == [
            {"kind": "caucus.admin.audit", "op": "mint", "agent_id": "a", "owner": "b", "result": "unauthorized"},
            {"kind": "caucus.admin.audit", "op": "revoke", "result": "unauthorized"},
        ]


async def test_admin_disabled_without_admin_token_or_off_loopback(migrated_url, capsys):
    async with running_server(settings_for(migrated_url, admin_token=None)) as live:
        async with live.client("admin-secret") as client:
            for path in ("/admin/tokens", "/admin/tokens/revoke", "/admin/tokens/rotate"):
                response = await client.post(path, json={"agent_id": "x", "owner": "y"})
                assert response.status_code == 401 and response.content == UNAUTHORIZED
    async with running_server(settings_for(migrated_url, host="0.0.0.0")) as live:
        async with live.client("admin-secret") as client:
            response = await client.post("/admin/tokens", json={"agent_id": "x", "owner": "y"})
            assert response.status_code == 401 and response.content == UNAUTHORIZED
    assert "caucus.admin.audit" not in capsys.readouterr().err
    async with running_server(settings_for(migrated_url, admin_audit=False)) as live:
        async with live.client("admin-secret") as client:
            assert (await client.post("/admin/tokens", json={"agent_id": "x", "owner": "y"})).status_code == 201
    assert "caucus.admin.audit" not in capsys.readouterr().err
