"""Operations over a real socket: readiness, metrics, request ids, read auth (D10)."""

from __future__ import annotations

import trio

from parley.journal import migrate
from tests.support.messages import ulid
from tests.support.server import running_server, test_settings


async def test_readyz_turns_503_when_the_schema_falls_behind_and_back(server):
    async with server.client() as anon:
        assert (await anon.get("/readyz")).json() == {"ok": True}
        url = server.backbone.settings.database_url
        await trio.to_thread.run_sync(migrate.downgrade, url, "base")
        try:
            response = await anon.get("/readyz")
            assert response.status_code == 503
            assert response.headers["retry-after"] == "1"
            error = response.json()["error"]
            assert error["code"] == "unavailable" and "parley db upgrade" in error["message"]
        finally:
            await trio.to_thread.run_sync(migrate.upgrade, url)
        assert (await anon.get("/readyz")).status_code == 200


async def test_metrics_count_requests_by_route_and_status_and_time_appends(server):
    async with server.client("tok-a") as client:
        await client.post("/channels", json={"channel": "m"})
        for i in range(3):
            r = await client.post("/channels/m/append", json={"type": "note", "body": f"b{i}", "msg_id": ulid()})
            assert r.status_code == 201
        await client.post("/channels/m/append", json={"type": "note", "body": "b2", "msg_id": ulid()})
        await client.post("/channels/nope/append", json={"type": "note", "body": "x", "msg_id": ulid()})
        text = (await client.get("/metrics")).text
    assert 'parley_http_requests_total{route="append",status="201"} 3.0' in text
    assert 'parley_http_requests_total{route="append",status="404"} 1.0' in text
    assert 'parley_seatbelt_rejections_total{code="duplicate_post"} 1.0' in text
    assert 'parley_write_seconds_count{route="append"} 5.0' in text
    assert "parley_actors_active" in text and "parley_journal_batches_total" in text


async def test_every_response_carries_a_request_id_and_echoes_a_given_one(server):
    async with server.client() as anon:
        assert len((await anon.get("/healthz")).headers["x-request-id"]) == 32
        echoed = await anon.get("/healthz", headers={"x-request-id": "abc123"})
        assert echoed.headers["x-request-id"] == "abc123"


async def test_read_auth_token_makes_every_read_need_a_bearer(migrated_url):
    async with running_server(test_settings(migrated_url, read_auth=True)) as live:
        async with live.client("tok-a") as alice, live.client() as anon:
            assert (await alice.post("/channels", json={"channel": "closed"})).status_code == 201
            for method, path, body in [
                ("GET", "/channels", None),
                ("GET", "/channels/closed", None),
                ("POST", "/channels/closed/read", {"cursor": 0}),
                ("POST", "/channels/closed/subscribe", None),
                ("GET", "/channels/closed/claims", None),
                ("GET", "/channels/closed/stream", None),
                ("GET", "/v1/peers", None),
            ]:
                refused = await anon.request(method, path, json=body)
                assert refused.status_code == 401, path
                assert refused.json() == {"error": {"code": "unauthorized", "message": "missing or invalid token"}}
            assert (await alice.post("/channels/closed/read", json={"cursor": 0})).status_code == 200
            assert (await anon.get("/healthz")).status_code == 200
