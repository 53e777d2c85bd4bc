"""Write-route check order and the bearer gate (channels.md §4.1-§4.2).

Order on a write route: non-object body (400) → token (401) → reassign
assignee shape (400) → the backbone. Every 401 is byte-identical (no
oracle); reads ignore the Authorization header; no tokens = fail closed.
"""

from __future__ import annotations


from tests.support.server import running_server
from tests.support.server import test_settings as settings_for
from tests.support.messages import ulid

JSON = "application/json; charset=utf-8"
UNAUTHORIZED = b'{"error":{"code":"unauthorized","message":"missing or invalid token"}}'
NOT_OBJECT = b'{"error":{"code":"invalid_request","message":"request body must be a JSON object"}}'
ASSIGNEE = "reassign requires an assignee object with a non-empty agent_id and owner"


def note(body: str = "hi") -> dict:
    return {"type": "note", "body": body, "msg_id": ulid()}


def claim_msg(target: str = "t") -> dict:
    return {"type": "claim", "body": "mine", "msg_id": ulid(), "target": target}


WRITE_ROUTES = [
    "/channels",
    "/channels/ops/append",
    "/channels/ops/claim",
    "/channels/ops/reassign",
    "/channels/ops/done",
]


async def test_non_object_body_is_refused_before_the_token(server):
    async with server.client("tok-a") as a:
        assert (await a.post("/channels", json={"channel": "ops"})).status_code == 201
    async with server.client() as anon, server.client("tok-a") as a:
        for path in WRITE_ROUTES + ["/channels/ghost/append", "/channels/Bad!/claim"]:
            for content in (None, b"[]", b"[1]", b"1", b'"s"', b"null", b"true"):
                for client in (anon, a):
                    response = await client.post(path, content=content)
                    assert (path, content, response.status_code) == (path, content, 400)
                    assert response.content == NOT_OBJECT
                    assert response.headers["content-type"] == JSON
        # Invalid JSON comes before both.
        response = await anon.post("/channels/ops/append", content=b"{")
        assert response.status_code == 400 and response.json()["error"]["code"] == "invalid_json"


async def test_every_401_is_byte_identical(server):
    async with server.client("admin-secret") as admin:
        minted = (await admin.post("/admin/tokens", json={"agent_id": "temp", "owner": "t"})).json()["token"]
        assert (await admin.post("/admin/tokens/revoke", json={"agent_id": "temp"})).json() == {"revoked": True}
    headers = [
        None,
        "",
        "Bearer",
        "Bearer nope",
        "Bearer tok-a-but-longer",
        f"Bearer {minted}",  # revoked
        "Basic tok-a",
        "tok-a",
        "Token tok-a",
        "Bearer admin-secret",  # the admin secret is not a write token
    ]
    async with server.client() as client:
        for header in headers:
            extra = {} if header is None else {"Authorization": header}
            for path in WRITE_ROUTES:
                body = {"channel": "ops"} if path == "/channels" else {**claim_msg(), "assignee": {}}
                response = await client.post(path, json=body, headers=extra)
                assert (header, path, response.status_code) == (header, path, 401)
                assert response.content == UNAUTHORIZED
                assert response.headers["content-type"] == JSON
            put = await client.put(f"/channels/ops/artifacts/{'0' * 64}", content=b"x", headers=extra)
            assert put.status_code == 401 and put.content == UNAUTHORIZED


async def test_bearer_parsing_is_lenient_like_caucus(server):
    async with server.client() as client:
        for header in ("Bearer tok-a", "bearer tok-a", "BEARER tok-a", "Bearer \t tok-a"):
            response = await client.post("/channels", json={"channel": f"c{ulid()[-6:].lower()}"},
                                         headers={"Authorization": header})
            assert response.status_code == 201, (header, response.text)
            assert response.json()["created_by"] == "alice"


async def test_token_is_checked_before_the_channel_and_the_assignee(server):
    async with server.client() as anon:
        for path in ("/channels/ghost/append", "/channels/Bad_Name/append", "/channels/ghost/reassign"):
            response = await anon.post(path, json=note())
            assert response.status_code == 401 and response.content == UNAUTHORIZED


async def test_reads_ignore_the_authorization_header(server):
    async with server.client("tok-a") as a:
        await a.post("/channels", json={"channel": "open"})
        await a.post("/channels/open/append", json=note())
    async with server.client("not-a-token") as bad:
        assert (await bad.get("/healthz")).status_code == 200
        assert (await bad.get("/channels")).status_code == 200
        assert (await bad.get("/channels/open")).status_code == 200
        assert (await bad.post("/channels/open/subscribe")).json() == {"cursor": 1}
        assert (await bad.post("/channels/open/read", json={"cursor": 0})).json()["cursor"] == 1
        assert (await bad.get("/channels/open/claims")).status_code == 200
        async with bad.stream("GET", "/channels/open/stream") as stream:
            assert stream.status_code == 200


async def test_reassign_assignee_shape(server):
    async with server.client("tok-a") as a:
        await a.post("/channels", json={"channel": "ops"})
        bad_assignees = [
            None,
            "sess-b",
            [],
            {},
            {"agent_id": "sess-b"},
            {"owner": "bob"},
            {"agent_id": "", "owner": "bob"},
            {"agent_id": "sess-b", "owner": ""},
            {"agent_id": 1, "owner": "bob"},
            {"agent_id": "sess-b", "owner": None},
        ]
        for assignee in bad_assignees:
            body = claim_msg()
            if assignee is not None:
                body["assignee"] = assignee
            response = await a.post("/channels/ops/reassign", json=body)
            assert response.status_code == 400, assignee
            assert response.json() == {"error": {"code": "invalid_request", "message": ASSIGNEE}}
        # The shape is checked before the backbone (no unknown_channel, no validation).
        for path, body in [
            ("/channels/ghost/reassign", claim_msg()),
            ("/channels/ops/reassign", {"type": "note"}),
        ]:
            response = await a.post(path, json=body)
            assert response.json()["error"] == {"code": "invalid_request", "message": ASSIGNEE}
        # A well-shaped assignee is validated like an identity field, after the message.
        response = await a.post(
            "/channels/ops/reassign", json={**claim_msg(), "assignee": {"agent_id": "b\x01", "owner": "bob"}}
        )
        assert response.status_code == 400
        assert response.json()["error"]["issues"] == ["assignee.agent_id must not contain control characters"]
        response = await a.post(
            "/channels/ops/reassign", json={**claim_msg(), "assignee": {"agent_id": "b", "owner": "o" * 1025}}
        )
        assert response.json()["error"]["issues"] == ["assignee.owner exceeds 1024 characters (1025)"]
        # Both bad: both issues, agent_id first (channels.md §2.8).
        response = await a.post(
            "/channels/ops/reassign", json={**claim_msg(), "assignee": {"agent_id": "b\x01", "owner": "o" * 1025}}
        )
        assert response.json()["error"] == {
            "code": "invalid_message",
            "message": "Invalid message: assignee.agent_id must not contain control characters; "
            "assignee.owner exceeds 1024 characters (1025)",
            "issues": [
                "assignee.agent_id must not contain control characters",
                "assignee.owner exceeds 1024 characters (1025)",
            ],
        }
        response = await a.post(
            "/channels/ops/reassign",
            json={"type": "claim", "msg_id": ulid(), "assignee": {"agent_id": "b\x01", "owner": "bob"}},
        )
        assert response.json()["error"]["issues"] == ["body must be a non-empty string", "claim requires a non-empty target"]


async def test_fail_closed_without_tokens(migrated_url):
    async with running_server(settings_for(migrated_url, tokens=())) as live:
        async with live.client("tok-a") as client:
            for path in WRITE_ROUTES:
                response = await client.post(path, json={"channel": "ops", **claim_msg()})
                assert response.status_code == 401 and response.content == UNAUTHORIZED
            put = await client.put(f"/channels/ops/artifacts/{'0' * 64}", content=b"x")
            assert put.content == UNAUTHORIZED
            # Reads still work.
            assert (await client.get("/channels")).json() == {"channels": []}
