"""The OpenAPI document describes exactly the routes the route table holds.

The document is rendered from ``parley.http.routes.ROUTES`` (ADR-0033), so
"served → documented" is checked where the table is checked
(tests/api/test_route_table.py: Quart's url_map and the /mcp mount against
the table). Here:

* the document itself is consistent OpenAPI 3.1 (refs resolve, every error
  code sits under its status, operation ids are unique);
* documented → served: every (method, path) is requested on a live server
  (WebSocket routes are really upgraded) and must not answer ``404
  not_found "no such route"`` / ``405``; the status it does answer must be
  one the document lists for that operation. Methods a documented path does
  *not* list must answer 404/405/426 (no hidden operation).
"""

from __future__ import annotations

import hashlib
import re

import httpx
import trio
import trio_websocket

from parley.errors import STATUS_BY_CODE
from parley.http import openapi, routes

HTTP_METHODS = ("GET", "POST", "PUT", "DELETE")


def documented() -> dict[tuple[str, str], dict]:
    doc = openapi.document()
    return {
        (method.upper(), path): op
        for path, item in doc["paths"].items()
        for method, op in item.items()
    }


# -- the document itself -----------------------------------------------------------


def _refs(node, found: set[str]) -> set[str]:
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "$ref":
                found.add(value)
            else:
                _refs(value, found)
    elif isinstance(node, list):
        for value in node:
            _refs(value, found)
    return found


def test_the_document_is_openapi_3_1_and_consistent():
    doc = openapi.document()
    assert doc["openapi"] == "3.1.0"
    assert doc is not openapi.document()  # a fresh dict every time
    schemas = doc["components"]["schemas"]
    for target in _refs(doc, set()):
        assert target.startswith("#/components/schemas/") and target.rsplit("/", 1)[1] in schemas, target
    assert set(schemas["ErrorEnvelope"]["properties"]["error"]["properties"]["code"]["enum"]) == set(STATUS_BY_CODE)
    ids = [op["operationId"] for op in documented().values()]
    assert len(ids) == len(set(ids))
    assert len(routes.operations()) == len(documented())  # no (method, path) listed twice
    for (method, path), op in documented().items():
        assert op["responses"], (method, path)
        assert op["x-error-codes"], (method, path)
        for code in op["x-error-codes"]:
            status = str(STATUS_BY_CODE[code])
            assert code in op["responses"][status]["x-error-codes"], (method, path, code)
        for status, response in op["responses"].items():
            if int(status) >= 400 and "x-error-codes" in response:  # not the /mcp mount's JSON-RPC 400
                schema = response["content"]["application/json"]["schema"]
                assert schema["allOf"][0] == {"$ref": "#/components/schemas/ErrorEnvelope"}
                assert all(STATUS_BY_CODE[c] == int(status) for c in response["x-error-codes"])
        for name in re.findall(r"\{(\w+)\}", path):
            assert any(p["name"] == name and p["in"] == "path" for p in op["parameters"]), (path, name)
        assert op.get("x-websocket", False) == path.endswith("/ws")


# -- documented → served (live) ------------------------------------------------------


def _no_such_route(response: httpx.Response) -> bool:
    try:
        error = response.json()["error"]
    except (ValueError, KeyError, TypeError, httpx.ResponseNotRead):
        return False
    return response.status_code == 404 and error == {"code": "not_found", "message": "no such route"}


def _code(response: httpx.Response) -> str | None:
    try:
        return response.json()["error"]["code"]
    except (ValueError, KeyError, TypeError, httpx.ResponseNotRead):
        return None


async def _probe(client: httpx.AsyncClient, method: str, url: str) -> httpx.Response:
    async with client.stream(method, url) as response:  # streams: look at the status, then hang up
        if "text/event-stream" not in response.headers.get("content-type", ""):
            await response.aread()
        return response


async def test_every_documented_route_is_served(server):
    blob = b"probe"
    sha = hashlib.sha256(blob).hexdigest()
    async with server.client("tok-a") as alice, server.client() as anon:
        assert (await alice.post("/channels", json={"channel": "probe"})).status_code == 201
        assert (await alice.put(f"/channels/probe/artifacts/{sha}", content=blob)).status_code == 201
        started = await alice.post("/v1/session", json={})
        assert started.status_code == 200, started.text
        values = {"channel": "probe", "sha256": sha, "id": started.json()["sessionId"], "asset": "app.js"}

        served = await anon.get("/openapi.json")
        assert served.status_code == 200 and served.json() == openapi.document()

        documented_routes = documented()
        for (method, path), op in sorted(documented_routes.items()):
            url = path.format(**values)
            if op.get("x-websocket"):
                ws_url = server.url.replace("http://", "ws://") + url
                with trio.fail_after(5):
                    async with trio_websocket.open_websocket_url(
                        ws_url, extra_headers=[(b"authorization", b"Bearer tok-a")]
                    ) as ws:
                        assert not ws.closed, (method, path)
                continue
            response = await _probe(anon, method, url)
            assert not _no_such_route(response), (method, path)
            assert response.status_code != 405, (method, path, response.text)
            assert str(response.status_code) in op["responses"], (method, path, response.status_code)
            if response.status_code >= 400:
                assert _code(response) in op["x-error-codes"], (method, path, _code(response))

        # A documented path answers no method it does not document (no hidden operation).
        # The /mcp mount checks the bearer before the method (ADR-0015): 401, like every method there.
        mounted = {r.path for r in routes.ROUTES if r.serve is routes.MOUNT}
        paths = {path: {m for m, p in documented_routes if p == path} for _, path in documented_routes}
        for path, methods in sorted(paths.items()):
            for method in HTTP_METHODS:
                if method in methods:
                    continue
                response = await _probe(anon, method, path.format(**values))
                if path in mounted:
                    assert _code(response) == "unauthorized", (method, path, response.status_code)
                    continue
                assert response.status_code in (404, 405, 426), (method, path, response.status_code)
                assert _code(response) in ("not_found", "method_not_allowed", "upgrade_required"), (method, path)
