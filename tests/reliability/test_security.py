"""SECURITY.md, checked from the outside: tokens at rest, no oracle on tokens,
the admin gate, identity anchoring, and error hygiene."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
import sqlalchemy as sa

from tests.support.messages import ulid
from tests.support.server import ADMIN, running_server, test_settings

pytestmark = pytest.mark.reliability

SECRET = "sk-live-SECRET-d3adb33f-0123456789abcdef"


def database_bytes(url: str) -> bytes:
    """The SQLite file and its WAL/SHM, raw."""
    path = Path(url.removeprefix("sqlite:///"))
    return b"".join(p.read_bytes() for p in (path, Path(f"{path}-wal"), Path(f"{path}-shm")) if p.exists())


def postgres_text(engine: sa.Engine) -> str:
    """Every row of every table of the server's schema, as text."""
    with engine.connect() as conn:
        tables = conn.execute(sa.text(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = current_schema()"
        )).scalars().all()
        assert "events" in tables
        chunks = []
        for table in tables:
            rows = conn.execute(sa.text(f'SELECT t::text FROM "{table}" t')).scalars().all()
            chunks.extend(rows)
    return "\n".join(chunks)


async def test_bearer_and_continuation_tokens_are_not_stored_in_clear(server, migrated_url, caplog):
    caplog.set_level(logging.DEBUG)
    async with server.client(ADMIN) as admin:
        minted = (await admin.post("/admin/tokens", json={"agent_id": "bot", "owner": "dana"})).json()["token"]
        rotated = (await admin.post("/admin/tokens/rotate", json={"agent_id": "bot2", "owner": "dana"})).json()["token"]
    continuation: list[str] = []
    async with server.client(minted) as bot:
        assert (await bot.post("/channels", json={"channel": "sec"})).status_code == 201
        assert (await bot.post("/channels/sec/append", json={"type": "note", "body": "hi", "msg_id": ulid()})).status_code == 201
        started = (await bot.post("/v1/session", json={"actions": [{"subscribe": {"channel": "sec", "from": "start"}}]})).json()
        continuation.append(started["continuationToken"])
        sid = started["sessionId"]
        for _ in range(3):
            r = await bot.post(f"/v1/session/{sid}/message", json={"continuationToken": continuation[-1]})
            assert r.status_code == 200, r.text
            continuation.append(r.json()["continuationToken"])
    secrets = [minted, rotated, ADMIN, *continuation]
    assert all(len(s) >= 12 for s in secrets)
    await server.backbone.journal._write(lambda conn: None)  # everything above is committed
    if migrated_url.startswith("sqlite"):
        raw = database_bytes(migrated_url)
        assert b"dana" in raw and b"ses_" in raw  # the bytes do hold the journal
        assert b"tok-a" not in raw  # not even a seed token (they live in memory only)
        for secret in secrets:
            assert secret.encode() not in raw, f"{secret[:6]}… found in the database file"
    else:
        text = postgres_text(server.backbone.journal._engine)
        assert "sess" in text  # the dump did see the data
        for secret in secrets + ["tok-a"]:
            assert secret not in text, f"{secret[:6]}… found in a Postgres table"
    logged = "\n".join(r.getMessage() for r in caplog.records)
    for secret in secrets:
        assert secret not in logged


async def test_401_bodies_are_byte_identical_for_missing_unknown_empty_and_revoked_tokens(server):
    async with server.client(ADMIN) as admin:
        doomed = (await admin.post("/admin/tokens", json={"agent_id": "gone", "owner": "x"})).json()["token"]
        assert (await admin.post("/admin/tokens/revoke", json={"agent_id": "gone"})).json() == {"revoked": True}
    async with server.client("tok-a") as a:
        assert (await a.post("/channels", json={"channel": "sec"})).status_code == 201
    headers = [
        {},
        {"Authorization": "Bearer nope-unknown"},
        {"Authorization": f"Bearer {doomed}"},
        {"Authorization": "Bearer"},
        {"Authorization": ""},
        {"Authorization": "Basic dG9rLWE6"},
        {"Authorization": "tok-a"},
        {"Authorization": f"Bearer {SECRET}"},
    ]
    requests = [
        ("POST", "/channels/sec/append", {"type": "note", "body": "x", "msg_id": ulid()}),
        ("POST", "/channels", {"channel": "other"}),
        ("POST", "/channels/sec/claim", {"type": "claim", "body": "c", "msg_id": ulid(), "target": "t"}),
        ("POST", "/v1/session", {}),
        ("GET", "/v1/session/ses_01J40000000000000000000000", None),
        ("POST", "/admin/tokens", {"agent_id": "a", "owner": "b"}),
    ]
    async with server.client() as anon:
        for method, path, body in requests:
            answers = set()
            for h in headers:
                r = await anon.request(method, path, json=body, headers=h)
                assert r.status_code == 401, (path, h, r.text)
                shown = {k: v for k, v in r.headers.items() if k not in ("date", "x-request-id")}
                answers.add((r.content, tuple(sorted(shown.items()))))
            assert len(answers) == 1, (path, answers)
            content = answers.pop()[0]
            assert content == b'{"error":{"code":"unauthorized","message":"missing or invalid token"}}'
            assert SECRET.encode() not in content and doomed.encode() not in content


async def test_admin_routes_are_disabled_on_a_non_loopback_bind(sqlite_url, capfd):
    settings = test_settings(sqlite_url, host="0.0.0.0")
    async with running_server(settings) as live:
        assert live.url.startswith("http://127.0.0.1:")  # a loopback client, all the same
        async with live.client(ADMIN) as admin:
            for path, body in (
                ("/admin/tokens", {"agent_id": "a", "owner": "b"}),
                ("/admin/tokens/revoke", {"agent_id": "a"}),
                ("/admin/tokens/rotate", {"agent_id": "a", "owner": "b"}),
            ):
                r = await admin.post(path, json=body)
                assert r.status_code == 401, r.text
                assert r.content == b'{"error":{"code":"unauthorized","message":"missing or invalid token"}}'
        # the admin secret is not a write token either
        async with live.client(ADMIN) as admin:
            assert (await admin.post("/channels", json={"channel": "x"})).status_code == 401
    err = capfd.readouterr().err
    assert "caucus.admin.audit" not in err  # a disabled surface audits nothing
    assert ADMIN not in err


async def test_loopback_bind_with_admin_token_is_enabled_as_the_control(server):
    async with server.client(ADMIN) as admin:
        assert (await admin.post("/admin/tokens", json={"agent_id": "a", "owner": "b"})).status_code == 201


async def test_writes_are_anchored_to_the_token_identity_whatever_the_body_claims(server):
    spoof = {"agent_id": "sess-b", "owner": "bob"}
    async with server.client("tok-a") as a, server.client("tok-b") as b:
        created = (await a.post("/channels", json={"channel": "sec", "created_by": "bob"})).json()
        assert created["created_by"] == "alice"
        r = await a.post("/channels/sec/append", json={"type": "note", "body": "mine", "msg_id": ulid(), **spoof})
        assert (r.json()["message"]["agent_id"], r.json()["message"]["owner"]) == ("sess-a", "alice")
        claim = {"type": "claim", "body": "c", "msg_id": ulid(), "target": "job", **spoof}
        granted = (await a.post("/channels/sec/claim", json=claim)).json()
        assert granted["outcome"] == "granted"
        assert (granted["message"]["agent_id"], granted["message"]["owner"]) == ("sess-a", "alice")
        # bob pretending to be alice cannot mark alice's claim done or reassign it
        as_alice = {"agent_id": "sess-a", "owner": "alice"}
        done = await b.post("/channels/sec/done", json={"type": "claim", "body": "d", "msg_id": ulid(),
                                                           "target": "job", **as_alice})
        assert done.json()["outcome"] == "already_claimed"
        moved = await b.post("/channels/sec/reassign", json={"type": "claim", "body": "r", "msg_id": ulid(),
                                                             "target": "job", "assignee": spoof, **as_alice})
        assert moved.json()["outcome"] == "already_claimed"
        claims = (await a.get("/channels/sec/claims")).json()["claims"]
        assert [c["holder"] for c in claims] == [{"agent_id": "sess-a", "owner": "alice"}]

        # a session action runs as the session's owner, whatever the message says
        started = (await a.post("/v1/session", json={"actions": [{"append": {"channel": "sec", "message": {
            "type": "note", "body": "from a session", "msg_id": ulid(), **spoof}}}]})).json()
        stored = started["output"]["results"][0]["message"]
        assert (stored["agent_id"], stored["owner"]) == ("sess-a", "alice")
        sid, token = started["sessionId"], started["continuationToken"]
        # bob, even holding alice's session id AND her current token, gets the unknown-session answer
        foreign = await b.post(f"/v1/session/{sid}/message", json={"continuationToken": token, "actions": [
            {"append": {"channel": "sec", "message": {"type": "note", "body": "hijack", "msg_id": ulid()}}}]})
        unknown = await b.post("/v1/session/ses_01J40000000000000000000000/message", json={"continuationToken": token})
        assert foreign.status_code == unknown.status_code == 404
        assert foreign.json()["error"]["code"] == "unknown_session"
        assert (await b.get(f"/v1/session/{sid}")).status_code == 404
        assert (await b.request("DELETE", f"/v1/session/{sid}", json={"continuationToken": token})).status_code == 404
        # ... and consumed nothing: alice's token still works
        again = await a.post(f"/v1/session/{sid}/message", json={"continuationToken": token})
        assert again.status_code == 200 and again.json()["status"] == "finished"
        log = (await a.post("/channels/sec/read", json={"cursor": 0})).json()["messages"]
        assert "hijack" not in [m["body"] for m in log]
        assert {(m["agent_id"], m["owner"]) for m in log} == {("sess-a", "alice")}


async def test_error_messages_never_echo_values_or_tokens(server):
    bad_appends = [
        {"type": SECRET, "body": "x", "msg_id": ulid()},
        {"type": "note", "body": "x", "msg_id": SECRET},
        {"type": "note", "body": "x", "msg_id": ulid(), "thread": SECRET},
        {"type": "note", "body": "x", "msg_id": ulid(), "status": SECRET},
        {"type": "note", "body": "x", "msg_id": ulid(), "to": [SECRET + "\x00"]},
        {"type": "note", "body": "x", "msg_id": ulid(), "artifact": SECRET + "\x07"},
        {"type": "note", "body": SECRET + "\x00", "msg_id": ulid()},
        {"type": "note", "body": "x", "msg_id": ulid(), "target": SECRET},
        {"type": "note", "body": "x", "msg_id": ulid(), "lease_ttl": SECRET},
        {"type": "note", "body": "x" * 16_001 + SECRET, "msg_id": ulid()},
        {"type": "note", "body": "x", "msg_id": ulid(), "unknown": SECRET},
    ]
    async with server.client("tok-a") as a:
        assert (await a.post("/channels", json={"channel": "sec"})).status_code == 201
        answers = []
        for body in bad_appends:
            answers.append(await a.post("/channels/sec/append", json=body))
        answers.append(await a.post("/channels/sec/claim", json={"type": "claim", "body": "c", "msg_id": ulid(),
                                                                 "target": "t", "lease_ttl": SECRET}))
        answers.append(await a.post("/channels/sec/reassign", json={"type": "claim", "body": "c", "msg_id": ulid(),
                                                                    "target": "t", "assignee": SECRET}))
        answers.append(await a.post("/channels/sec/read", json={"cursor": SECRET}))
        answers.append(await a.post("/channels/sec/read", json={"cursor": 0, "limit": SECRET}))
        answers.append(await a.post("/channels", json={"channel": "ok", "purpose": SECRET + "\x00"}))
        answers.append(await a.post("/channels", json={"channel": "ok", "renderBudgetChars": SECRET}))
        answers.append(await a.post("/channels/sec/append", json={"type": "note", "body": "x", "msg_id": ulid()},
                                    headers={"Idempotency-Key": SECRET + " with space"}))
        answers.append(await a.post("/v1/session", json={"wait": SECRET}))
        answers.append(await a.post("/v1/session", json={"max": SECRET}))
        answers.append(await a.post("/v1/session", json={"actions": [{"append": SECRET}]}))
        answers.append(await a.post("/v1/session", json={"actions": SECRET}))
        answers.append(await a.post("/v1/session", json={"continuationToken": SECRET}))
        sid = (await a.post("/v1/session", json={})).json()["sessionId"]
        answers.append(await a.post(f"/v1/session/{sid}/message", json={"continuationToken": SECRET}))
        answers.append(await a.post(f"/v1/session/{sid}/message", json={}, headers={"x-continuation-token": SECRET}))
        answers.append(await a.request("DELETE", f"/v1/session/{sid}", json={"continuationToken": SECRET}))
        answers.append(await a.request("DELETE", f"/v1/session/{sid}", json={"extra": SECRET}))
        answers.append(await a.put(f"/channels/sec/artifacts/{'0' * 64}", content=SECRET.encode()))
    async with server.client(SECRET) as forged:
        answers.append(await forged.post("/channels/sec/append", json={"type": "note", "body": "x", "msg_id": ulid()}))
    async with server.client(ADMIN) as admin:
        answers.append(await admin.post("/admin/tokens", json={"agent_id": SECRET, "owner": ""}))
        answers.append(await admin.post("/admin/tokens/revoke", json={"digest": SECRET}))
    assert answers[-1].json() == {"revoked": False}  # no oracle: a 200 like any unknown digest
    for r in answers[:-1]:
        assert 400 <= r.status_code < 500, (r.status_code, r.text[:200])
    for r in answers:
        assert "secret" not in r.text.lower(), r.text[:300]
        assert "d3adb33f" not in r.text and "0123456789abcdef" not in r.text, r.text[:300]
