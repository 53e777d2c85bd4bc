"""GET /v1/peers: agents seen recently, active then idle after the TTL (controllable clock)."""

from __future__ import annotations


async def test_peers_show_who_wrote_and_go_idle_after_the_ttl(server):
    async with server.client("tok-a") as alice, server.client("tok-b") as bob, server.client() as anon:
        assert (await anon.get("/v1/peers")).json() == {"peers": []}
        assert (await alice.post("/channels", json={"channel": "here"})).status_code == 201
        server.clock.advance(1000)
        await bob.post("/v1/session", json={})
        peers = (await anon.get("/v1/peers")).json()["peers"]
        assert [(p["agent_id"], p["status"]) for p in peers] == [("sess-b", "active"), ("sess-a", "active")]
        ttl_ms = int(server.backbone.settings.presence_ttl_s * 1000)
        server.clock.advance(ttl_ms - 1000)
        peers = {p["agent_id"]: p["status"] for p in (await anon.get("/v1/peers")).json()["peers"]}
        assert peers == {"sess-a": "idle", "sess-b": "active"}
        server.clock.advance(1000)
        peers = {p["agent_id"]: p["status"] for p in (await anon.get("/v1/peers")).json()["peers"]}
        assert peers == {"sess-a": "idle", "sess-b": "idle"}
        assert (await anon.post("/v1/peers")).status_code == 405
