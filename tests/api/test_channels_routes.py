"""The channel wire, route by route (channels.md §4.1-§4.2), over a real socket.

Success shapes and statuses of every route, the 404/405 matrix, and the
transport rules every route shares: JSON body buffering (even on GET), the
256 KiB cap, strict percent-decoding and ignored empty segments.
"""

from __future__ import annotations

import hashlib
import re
from tests.support.messages import ulid

JSON = "application/json; charset=utf-8"
STAMP = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z#\d{12}$")


def note(body: str, **extra) -> dict:
    return {"type": "note", "body": body, "msg_id": ulid(), **extra}


def claim_msg(target: str, **extra) -> dict:
    return {"type": "claim", "body": f"claiming {target}", "msg_id": ulid(), "target": target, **extra}


def err(response, status: int, code: str, message: str | None = None) -> dict:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == JSON
    error = response.json()["error"]
    assert error["code"] == code, error
    if message is not None:
        assert error["message"] == message
    return error


NOT_ALLOWED = ("method_not_allowed", "method not allowed")
NO_ROUTE = ("not_found", "no such route")


# -- success shapes ------------------------------------------------------------


async def test_every_route_answers_with_its_documented_shape(server):
    async with server.client("tok-a") as a, server.client() as anon:
        health = await anon.get("/healthz")
        assert health.status_code == 200
        assert health.headers["content-type"] == JSON
        assert health.content == b'{"ok":true}'

        created = await a.post("/channels", json={"channel": "war-room", "purpose": "p", "created_by": "mallory"})
        assert created.status_code == 201
        descriptor = created.json()
        assert list(descriptor) == [
            "channel", "kind", "purpose", "verbosity", "renderBudgetChars", "created_by", "created_ts", "head",
        ]
        assert descriptor["kind"] == "ephemeral"
        assert descriptor["verbosity"] == "quiet"
        assert descriptor["renderBudgetChars"] == 200
        assert descriptor["created_by"] == "alice"
        assert STAMP.match(descriptor["created_ts"])
        assert descriptor["head"] == 0

        bare = (await a.post("/channels", json={"channel": "bare"})).json()
        assert "purpose" not in bare

        listed = await anon.get("/channels")
        assert listed.status_code == 200
        assert [d["channel"] for d in listed.json()["channels"]] == ["war-room", "bare"]
        assert listed.json()["channels"][0] == descriptor

        assert (await anon.post("/channels/war-room/subscribe")).json() == {"cursor": 0}

        message = note("hello", agent_id="spoof")
        appended = await a.post("/channels/war-room/append", json=message)
        assert appended.status_code == 201
        body = appended.json()
        assert body["cursor"] == 1
        stored = body["message"]
        assert list(stored) == ["type", "body", "msg_id", "agent_id", "owner", "v", "ts"]
        assert stored["v"] == 1 and STAMP.match(stored["ts"])
        assert stored["ts"] > descriptor["created_ts"]

        described = await anon.get("/channels/war-room")
        assert described.status_code == 200
        assert described.json() == {**descriptor, "head": 1}
        assert (await anon.post("/channels/war-room/subscribe", json=[1, 2])).json() == {"cursor": 1}

        page = await anon.post("/channels/war-room/read", json={"cursor": 0})
        assert page.status_code == 200
        assert page.json() == {"messages": [stored], "cursor": 1}

        granted = await a.post("/channels/war-room/claim", json=claim_msg("job"))
        assert granted.status_code == 200
        assert granted.json()["outcome"] == "granted" and granted.json()["cursor"] == 2

        reassigned = await a.post(
            "/channels/war-room/reassign",
            json={**claim_msg("job"), "assignee": {"agent_id": "sess-b", "owner": "bob"}},
        )
        assert reassigned.status_code == 200 and reassigned.json()["outcome"] == "granted"
        async with server.client("tok-b") as b:
            done = await b.post("/channels/war-room/done", json=claim_msg("job"))
        assert done.status_code == 200 and done.json()["outcome"] == "granted"
        assert done.json()["message"]["status"] == "resolved"

        claims = await anon.get("/channels/war-room/claims")
        assert claims.status_code == 200 and claims.json() == {"claims": []}

        blob = b"\x00\x01binary\xff"
        sha = hashlib.sha256(blob).hexdigest()
        put = await a.put(f"/channels/war-room/artifacts/{sha}", content=blob)
        assert put.status_code == 201
        assert put.json() == {"uri": f"caucus://artifact/war-room/{sha}", "sha256": sha, "size": len(blob)}
        got = await anon.get(f"/channels/war-room/artifacts/{sha}")
        assert got.status_code == 200 and got.content == blob

        async with anon.stream("GET", "/channels/war-room/stream") as stream:
            assert stream.status_code == 200
            assert stream.headers["content-type"] == "text/event-stream; charset=utf-8"

        async with server.client("admin-secret") as admin:
            minted = await admin.post("/admin/tokens", json={"agent_id": "x", "owner": "y"})
            assert minted.status_code == 201
            assert (await admin.post("/admin/tokens/revoke", json={"agent_id": "x"})).json() == {"revoked": True}
            rotated = await admin.post("/admin/tokens/rotate", json={"agent_id": "x", "owner": "y"})
            assert rotated.status_code == 201


# -- the 404/405 matrix --------------------------------------------------------


MATRIX = [
        ("GET", "/channels/x/foo", NOT_ALLOWED),
        ("PUT", "/channels/x/append", NOT_ALLOWED),
        ("GET", "/channels/x/append", NOT_ALLOWED),
        ("DELETE", "/channels/x/read", NOT_ALLOWED),
        ("GET", "/channels/x/artifacts", NOT_ALLOWED),
        ("POST", "/channels/x/foo", NO_ROUTE),
        ("POST", "/channels/x/artifacts", NO_ROUTE),
        ("POST", "/channels/x/claims", NO_ROUTE),
        ("POST", "/healthz", NOT_ALLOWED),
        ("PUT", "/healthz", NOT_ALLOWED),
        ("DELETE", "/healthz", NOT_ALLOWED),
        ("OPTIONS", "/healthz", NOT_ALLOWED),
        ("PUT", "/channels", NOT_ALLOWED),
        ("DELETE", "/channels", NOT_ALLOWED),
        ("PATCH", "/channels", NOT_ALLOWED),
        ("POST", "/channels/x", NOT_ALLOWED),
        ("PUT", "/channels/x", NOT_ALLOWED),
        ("DELETE", "/channels/x", NOT_ALLOWED),
        ("POST", f"/channels/x/artifacts/{'0' * 64}", NOT_ALLOWED),
        ("DELETE", f"/channels/x/artifacts/{'0' * 64}", NOT_ALLOWED),
        ("PATCH", "/channels/x/artifacts/abc", NOT_ALLOWED),
        ("POST", "/channels/x/stream", NOT_ALLOWED),
        ("PUT", "/channels/x/stream", NOT_ALLOWED),
        ("DELETE", "/channels/x/stream", NOT_ALLOWED),
        ("GET", "/admin/tokens", NOT_ALLOWED),
        ("PUT", "/admin/tokens", NOT_ALLOWED),
        ("GET", "/admin/tokens/revoke", NOT_ALLOWED),
        ("GET", "/admin/tokens/rotate", NOT_ALLOWED),
        ("GET", "/admin/tokens/nope", NOT_ALLOWED),
        ("POST", "/admin/tokens/nope", NO_ROUTE),
        ("POST", "/admin", NO_ROUTE),
        ("GET", "/admin", NO_ROUTE),
        ("POST", "/admin/tokens/revoke/extra", NO_ROUTE),
        ("GET", "/", NO_ROUTE),
        ("POST", "/", NO_ROUTE),
        ("GET", "/nope", NO_ROUTE),
        ("GET", "/healthz/extra", NO_ROUTE),
        ("POST", "/channels/x/append/extra", NO_ROUTE),
        ("GET", "/channels/x/stream/extra", NO_ROUTE),
        ("GET", "/channels/x/artifacts/abc/extra", NO_ROUTE),
        ("GET", "/channels/x/y/z/w", NO_ROUTE),
]


async def test_route_matrix(server):
    """The method is checked before the action; the body of every answer is exact."""
    async with server.client("tok-a") as client:
        for method, path, expected in MATRIX:
            response = await client.request(method, path)
            status = 405 if expected is NOT_ALLOWED else 404
            assert (method, path, response.status_code) == (method, path, status)
            err(response, status, *expected)


UNUSUAL_METHODS = ("TRACE", "PROPFIND", "MKCOL", "BREW")


async def test_every_method_gets_the_matrix_answer_and_is_counted(server):
    """Methods outside GET/POST/PUT/DELETE/PATCH/HEAD/OPTIONS were a 500 with a
    traceback, missing from /metrics (issue 16 item 2)."""
    cases = [(m, path, NOT_ALLOWED) for m in UNUSUAL_METHODS for path in ("/channels", "/channels/x/read", "/healthz", "/v1/session", f"/channels/x/artifacts/{'0' * 64}", "/channels/x/stream")]
    cases += [(m, path, NO_ROUTE) for m in UNUSUAL_METHODS for path in ("/", "/nope", "/channels/x/y/z/w")]
    async with server.client("tok-a") as client:
        for method, path, expected in cases:
            response = await client.request(method, path)
            assert (method, path, response.status_code) == (method, path, 405 if expected is NOT_ALLOWED else 404)
            err(response, response.status_code, *expected)
        metrics = (await client.get("/metrics")).text
    counted = sum(
        float(line.rsplit(" ", 1)[1])
        for line in metrics.splitlines()
        if line.startswith("parley_http_requests_total{") and ('status="404"' in line or 'status="405"' in line)
    )
    assert counted >= len(cases)


async def test_head_on_healthz_is_not_allowed(server):
    async with server.client() as client:
        response = await client.head("/healthz")
    assert response.status_code == 405


async def test_unknown_channel_on_every_channel_route(server):
    message = 'Unknown channel: "ghost"'
    async with server.client("tok-a") as client:
        err(await client.get("/channels/ghost"), 404, "unknown_channel", message)
        err(await client.post("/channels/ghost/subscribe"), 404, "unknown_channel", message)
        err(await client.post("/channels/ghost/append", json=note("x")), 404, "unknown_channel", message)
        err(await client.post("/channels/ghost/read", json={"cursor": 0}), 404, "unknown_channel", message)
        err(await client.post("/channels/ghost/claim", json=claim_msg("t")), 404, "unknown_channel", message)
        err(await client.post("/channels/ghost/done", json=claim_msg("t")), 404, "unknown_channel", message)
        err(await client.get("/channels/ghost/claims"), 404, "unknown_channel", message)
        err(await client.get("/channels/ghost/stream"), 404, "unknown_channel", message)
        err(await client.get(f"/channels/ghost/artifacts/{'0' * 64}"), 404, "unknown_channel", message)
        err(await client.put(f"/channels/ghost/artifacts/{'0' * 64}", content=b"x"), 404, "unknown_channel", message)
        bad = 'Invalid channel name: "Bad_Name" (must match ^[a-z0-9][a-z0-9-]{0,63}$)'
        err(await client.get("/channels/Bad_Name"), 400, "invalid_channel_name", bad)
        err(await client.post("/channels/Bad_Name/append", json=note("x")), 400, "invalid_channel_name", bad)


# -- transport rules -------------------------------------------------------------


async def test_body_is_parsed_on_every_json_route_even_get(server):
    async with server.client("tok-a") as client:
        for method, path in [("GET", "/healthz"), ("GET", "/channels"), ("GET", "/nope"), ("POST", "/channels")]:
            response = await client.request(method, path, content=b"{not json")
            err(response, 400, "invalid_json", "request body is not valid JSON")
        # Whitespace is a non-empty body and not JSON (JSON.parse("  ") throws).
        err(await client.request("GET", "/healthz", content=b"   "), 400, "invalid_json")
        # An empty body is absent.
        assert (await client.request("GET", "/healthz", content=b"")).status_code == 200
        # Any JSON value is fine on a route that ignores its body.
        assert (await client.request("GET", "/healthz", content=b"[1]")).status_code == 200
        # The request content-type is not checked.
        created = await client.post(
            "/channels", content=b'{"channel":"typed"}', headers={"content-type": "text/plain"}
        )
        assert created.status_code == 201


async def test_json_body_cap_is_256_kib(server):
    limit = 262_144
    async with server.client("tok-a") as client:
        await client.post("/channels", json={"channel": "big"})
        padding = '{"cursor":0,"pad":"' + "x" * (limit - 21) + '"}'
        assert len(padding) == limit
        ok = await client.post("/channels/big/read", content=padding.encode())
        assert ok.status_code == 200, ok.text
        over = padding[:-2] + 'x"}'
        assert len(over) == limit + 1
        response = await client.post("/channels/big/read", content=over.encode())
        err(response, 413, "payload_too_large", "request body too large")
        assert response.headers["connection"] == "close"
        err(await client.request("GET", "/healthz", content=b"x" * (limit + 1)), 413, "payload_too_large")

    async def chunks():
        for _ in range(limit // 4096 + 1):
            yield b"x" * 4096

    async with server.client("tok-a") as client:  # chunked: no content-length to pre-check
        err(await client.post("/channels/big/append", content=chunks()), 413, "payload_too_large")


async def test_percent_decoding_of_path_segments(server):
    async with server.client("tok-a") as client:
        await client.post("/channels", json={"channel": "c1"})
        assert (await client.get("/channels/c%31")).json()["channel"] == "c1"
        assert (await client.post("/%63hannels/%63%31/subscribe")).json() == {"cursor": 0}
        for segment in ("%zz", "a%2", "%", "%E0%A4%A", "%C3%28", "%FF"):
            err(
                await client.get(f"/channels/{segment}"),
                400,
                "invalid_request",
                f"malformed percent-encoding in path: {segment}",
            )
        long = "%" + "a" * 200
        error = err(await client.get(f"/channels/{long}"), 400, "invalid_request")
        assert error["message"] == "malformed percent-encoding in path: " + long[:120] + "\u2026"
        # A decoded slash is part of one segment, which is not a slug.
        err(await client.get("/channels/c1%2Fread"), 400, "invalid_channel_name")
        # The query string is not part of the path.
        assert (await client.get("/healthz?x=%zz")).status_code == 200


async def test_trailing_and_empty_segments_are_ignored(server):
    async with server.client("tok-a") as client:
        assert (await client.get("/healthz/")).json() == {"ok": True}
        assert (await client.post("/channels/", json={"channel": "slash"})).status_code == 201
        assert (await client.get("/channels/")).json()["channels"][0]["channel"] == "slash"
        assert (await client.get("/channels/slash/")).json()["channel"] == "slash"
        appended = await client.post("/channels//slash//append/", json=note("x"))
        assert appended.status_code == 201
        assert (await client.post("/channels///slash/read//", json={"cursor": 0})).json()["cursor"] == 1
        async with client.stream("GET", "/channels/slash/stream/") as stream:
            assert stream.status_code == 200


async def test_error_envelope_and_request_id(server):
    async with server.client() as client:
        response = await client.get("/nope", headers={"x-request-id": "abc123"})
    assert response.content == b'{"error":{"code":"not_found","message":"no such route"}}'
    assert response.headers["x-request-id"] == "abc123"
