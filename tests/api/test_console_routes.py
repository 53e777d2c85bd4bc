"""``/ui`` serves the console's files with strict headers; ``GET /v1/sessions`` lists the bearer's sessions (ADR-0017)."""

from __future__ import annotations

import pytest

from parley.http import ui


async def test_the_page_and_its_assets_are_served_with_their_type_and_a_strict_policy(server):
    async with server.client() as anon:
        page = await anon.get("/ui")
        assert page.status_code == 200
        assert page.headers["content-type"] == "text/html; charset=utf-8"
        assert page.headers["content-security-policy"].startswith("default-src 'self';")
        assert "frame-ancestors 'none'" in page.headers["content-security-policy"]
        assert page.headers["x-content-type-options"] == "nosniff"
        assert (await anon.get("/ui/")).content == page.content
        for name, kind in (("app.js", "text/javascript"), ("app.css", "text/css"), ("favicon.svg", "image/svg+xml")):
            asset = await anon.get(f"/ui/{name}")
            assert asset.status_code == 200 and asset.headers["content-type"].startswith(kind), name
        head = await anon.head("/ui/app.js")
        assert head.status_code == 200 and head.content == b""
        etag = page.headers["etag"]
        again = await anon.get("/ui", headers={"If-None-Match": etag})
        assert again.status_code == 304 and again.content == b""


async def test_every_script_the_page_loads_is_a_served_file():
    # No inline script, no other host: what index.html references all lives under /ui/.
    index = ui.assets()["index.html"].data.decode()
    assert "<script>" not in index and "http://" not in index and "https://" not in index
    assert {"index.html", "app.js", "api.js", "render.js", "charts.js", "app.css", "favicon.svg"} <= set(ui.assets())


@pytest.mark.parametrize(
    "method,path,status,code",
    [
        ("POST", "/ui", 405, "method_not_allowed"),
        ("DELETE", "/ui/app.js", 405, "method_not_allowed"),
        ("GET", "/ui/nope.js", 404, "not_found"),
        ("GET", "/ui/static/app.js", 404, "not_found"),
        ("GET", "/ui/..%2Fhttp%2Fui.py", 404, "not_found"),
        ("GET", "/uix", 404, "not_found"),
    ],
)
async def test_other_methods_and_paths_answer_the_error_envelope(server, method, path, status, code):
    async with server.client() as anon:
        response = await anon.request(method, path)
        assert response.status_code == status
        assert response.json()["error"]["code"] == code


async def test_sessions_lists_only_the_bearers_open_sessions_newest_first(server):
    async with server.client("tok-a") as alice, server.client("tok-b") as bob, server.client() as anon:
        assert (await anon.get("/v1/sessions")).status_code == 401
        assert (await alice.get("/v1/sessions")).json() == {"agent_id": "sess-a", "owner": "alice", "sessions": []}
        await alice.post("/channels", json={"channel": "ops"})
        first = (await alice.post("/v1/session", json={"actions": [{"subscribe": {"channel": "ops"}}]})).json()
        server.clock.advance(5)
        second = (await alice.post("/v1/session", json={})).json()
        theirs = (await bob.post("/v1/session", json={})).json()
        listed = (await alice.get("/v1/sessions")).json()["sessions"]
        assert [s["sessionId"] for s in listed] == [second["sessionId"], first["sessionId"]]
        assert listed[1]["subscriptions"] == {"ops": 0} and listed[1]["turns"] == 1
        assert listed[1] == (await alice.get(f"/v1/session/{first['sessionId']}")).json()
        closed = await alice.request(
            "DELETE", f"/v1/session/{second['sessionId']}", json={"continuationToken": second["continuationToken"]}
        )
        assert closed.status_code == 200
        assert [s["sessionId"] for s in (await alice.get("/v1/sessions")).json()["sessions"]] == [first["sessionId"]]
        assert [s["sessionId"] for s in (await bob.get("/v1/sessions")).json()["sessions"]] == [theirs["sessionId"]]
        assert (await alice.post("/v1/sessions")).status_code == 405
