"""The OpenAPI document describes exactly the routes the dispatcher serves.

Both directions are checked, so a route added to the dispatcher without
being documented fails here:

* documented → served: every (method, path) of ``openapi.ROUTES`` is
  requested on a live server (WebSocket routes are really upgraded) and must
  not answer ``404 not_found "no such route"`` / ``405``; the status it does
  answer must be one the document lists for that operation. Methods a
  documented path does *not* list must answer 404/405 (no hidden operation).
* served → documented: the route tables the dispatcher walks
  (``channels.POST_ACTIONS``/``GET_ACTIONS``, ``admin.ACTIONS``), every
  path-segment literal the dispatch functions of ``app.py`` and
  ``sessions.py`` compare segments against (read from their source with
  ``ast``), the Quart rules of the app (the WebSocket routes), and a
  hard-coded list of the dispatcher's routes must all be in the document.
"""

from __future__ import annotations

import ast
import hashlib
import inspect
import re
from pathlib import Path

import httpx
import trio
import trio_websocket

from parley.errors import STATUS_BY_CODE
from parley.http import admin, app as app_module, channels, openapi

HTTP_METHODS = ("GET", "POST", "PUT", "DELETE")

#: The dispatcher's routes, by hand (keep in step with parley/http/app.py).
DISPATCHER_ROUTES = {
    ("GET", "/healthz"),
    ("GET", "/readyz"),
    ("GET", "/metrics"),
    ("GET", "/openapi.json"),
    ("GET", "/channels"),
    ("POST", "/channels"),
    ("GET", "/channels/{channel}"),
    ("POST", "/channels/{channel}/subscribe"),
    ("POST", "/channels/{channel}/append"),
    ("POST", "/channels/{channel}/read"),
    ("POST", "/channels/{channel}/claim"),
    ("POST", "/channels/{channel}/reassign"),
    ("POST", "/channels/{channel}/done"),
    ("POST", "/channels/{channel}/archive"),
    ("GET", "/channels/{channel}/claims"),
    ("GET", "/channels/{channel}/stream"),
    ("PUT", "/channels/{channel}/artifacts/{sha256}"),
    ("GET", "/channels/{channel}/artifacts/{sha256}"),
    ("GET", "/channels/{channel}/ws"),
    ("POST", "/admin/tokens"),
    ("POST", "/admin/tokens/revoke"),
    ("POST", "/admin/tokens/rotate"),
    ("POST", "/v1/session"),
    ("GET", "/v1/sessions"),
    ("GET", "/ui"),
    ("GET", "/ui/{asset}"),
    ("POST", "/v1/session/{id}/message"),
    ("GET", "/v1/session/{id}"),
    ("DELETE", "/v1/session/{id}"),
    ("GET", "/v1/ws"),
    ("GET", "/v1/peers"),
}


def documented() -> dict[tuple[str, str], dict]:
    doc = openapi.document()
    return {
        (method.upper(), path): op
        for path, item in doc["paths"].items()
        for method, op in item.items()
    }


def literal_segments() -> set[str]:
    """Every segment of a documented path that is not a ``{parameter}``."""
    return {seg for _, path in documented() for seg in path.strip("/").split("/") if not seg.startswith("{")}


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
    assert len(openapi.ROUTES) == len(documented())  # no (method, path) listed twice
    for (method, path), op in documented().items():
        assert op["responses"], (method, path)
        assert op["x-error-codes"], (method, path)
        for code in op["x-error-codes"]:
            status = str(STATUS_BY_CODE[code])
            assert code in op["responses"][status]["x-error-codes"], (method, path, code)
        for status, response in op["responses"].items():
            if int(status) >= 400:
                schema = response["content"]["application/json"]["schema"]
                assert schema["allOf"][0] == {"$ref": "#/components/schemas/ErrorEnvelope"}
                assert all(STATUS_BY_CODE[c] == int(status) for c in response["x-error-codes"])
        for name in re.findall(r"\{(\w+)\}", path):
            assert any(p["name"] == name and p["in"] == "path" for p in op["parameters"]), (path, name)
        assert op.get("x-websocket", False) == path.endswith("/ws")


# -- served → documented -----------------------------------------------------------


def test_the_hand_written_route_list_matches_the_document():
    assert openapi.route_set() == DISPATCHER_ROUTES


def test_the_dispatch_tables_are_documented():
    routes = openapi.route_set()
    for action in channels.POST_ACTIONS:
        assert ("POST", f"/channels/{{channel}}/{action}") in routes, action
    for action in channels.GET_ACTIONS:
        assert ("GET", f"/channels/{{channel}}/{action}") in routes, action
    for action in admin.ACTIONS:
        assert ("POST", f"/admin/tokens/{action}") in routes, action


def _segment_literals(source: str, functions: set[str] | None) -> set[str]:
    """String constants compared against a path segment (``s[i]``, ``segments[i]``) in ``functions``."""

    def is_segment(node: ast.AST) -> bool:
        if not isinstance(node, ast.Subscript):
            return False
        base = node.value
        return (isinstance(base, ast.Name) and base.id in ("s", "segments", "seg", "parts")) or (
            isinstance(base, ast.Attribute) and base.attr == "segments"
        )

    def strings(node: ast.AST) -> list[str]:
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            return [node.value]
        if isinstance(node, (ast.Tuple, ast.List, ast.Set)):
            return [s for elt in node.elts for s in strings(elt)]
        return []

    found: set[str] = set()
    for fn in ast.walk(ast.parse(source)):
        if not isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef)):
            continue
        if functions is not None and fn.name not in functions:
            continue
        for node in ast.walk(fn):
            if isinstance(node, ast.Compare):
                operands = [node.left, *node.comparators]
                if any(is_segment(o) for o in operands):
                    for operand in operands:
                        found.update(strings(operand))
            elif isinstance(node, ast.Subscript) and isinstance(node.value, ast.Dict) and is_segment(node.slice):
                found.update(k.value for k in node.value.keys if isinstance(k, ast.Constant))
    return found


def test_every_segment_the_dispatcher_matches_is_documented():
    app_source = Path(inspect.getsourcefile(app_module)).read_text()
    literals = _segment_literals(app_source, {"dispatch", "_route_json", "_route_channels", "_route_admin"})
    # Sanity: the extraction sees the dispatcher's vocabulary.
    assert {"healthz", "channels", "artifacts", "stream", "admin", "tokens", "v1", "openapi.json"} <= literals
    from parley.http import sessions

    literals |= _segment_literals(Path(inspect.getsourcefile(sessions)).read_text(), {"_handler"})
    assert {"session", "message", "ws"} <= literals
    undocumented = literals - literal_segments()
    assert not undocumented, f"dispatcher segments missing from the OpenAPI document: {sorted(undocumented)}"


async def test_every_quart_rule_is_documented(server):
    app = app_module.create_app(server.backbone)
    routes = documented()
    catch_all = {"/", "/<everything:path>"}
    websocket_rules = set()
    for rule in app.url_map.iter_rules():
        if rule.rule in catch_all or rule.endpoint == "static":
            continue
        path = re.sub(r"<(?:[^:>]+:)?([^>]+)>", r"{\1}", rule.rule)
        if rule.websocket:
            websocket_rules.add(path)
            assert routes.get(("GET", path), {}).get("x-websocket") is True, path
        else:
            for method in (rule.methods or set()) - {"HEAD", "OPTIONS"}:
                assert (method, path) in routes, (method, path)
    assert websocket_rules == {"/channels/{channel}/ws", "/v1/ws"}


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

        routes = documented()
        for (method, path), op in sorted(routes.items()):
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
        paths = {path: {m for m, p in routes if p == path} for _, path in routes}
        for path, methods in sorted(paths.items()):
            for method in HTTP_METHODS:
                if method in methods:
                    continue
                response = await _probe(anon, method, path.format(**values))
                assert response.status_code in (404, 405, 426), (method, path, response.status_code)
                assert _code(response) in ("not_found", "method_not_allowed", "upgrade_required"), (method, path)
