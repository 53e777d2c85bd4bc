"""The route table is the only place a route exists (ADR-0033).

Derived from ``parley.http.routes.ROUTES``, on live servers:

* nothing is served outside the table: Quart's url_map holds the two
  catch-all rules (every method, ``methods=None``) and exactly the table's
  WebSocket routes; the ``/mcp`` mount serves the table's mount path;
* every operation is documented in ``/openapi.json`` and has a label, and
  each dispatched one is counted under that label on ``/metrics``;
* each entry's auth rule is what the wire enforces: an anonymous request is
  401 exactly on ``write``/``admin``/``session`` routes, and on ``read``
  routes only when ``PARLEY_READ_AUTH=token``.

The 404/405 matrix itself is pinned by tests/api/test_route_matrix.py.
"""

from __future__ import annotations

import hashlib
import re

import httpx
import pytest
import trio
import trio_websocket

from parley.http import openapi, routes
from parley.http.app import create_app
from parley.http.routing import Route, Router, Serve
from parley.mcp.http import PATH as MCP_MOUNTED
from tests.support.server import running_server, test_settings

SHA = hashlib.sha256(b"probe").hexdigest()
VALUES = {"channel": "probe", "sha256": SHA, "id": "ses_nope", "asset": "app.js"}
DISPATCHED = [r for r in routes.operations() if r.serve in (routes.RAW, Serve.JSON)]


def test_every_operation_is_documented_once_and_labelled():
    documented = openapi.route_set()
    assert documented == {(r.method, r.path) for r in routes.operations()}
    assert len(documented) == len(routes.operations())
    for route in routes.ROUTES:
        assert re.fullmatch(r"[a-z_]+", route.label), route
        if route.method is not None:
            assert route.handler is not None or route.serve is routes.MOUNT, route


def test_an_ambiguous_table_is_refused():
    a = Route(None, "/a/{x}", None, "a", "none")
    b = Route(None, "/{y}/b", None, "b", "none")
    with pytest.raises(ValueError, match="ambiguous"):
        Router([a, b])
    Router([a, Route(None, "/c/{y}", None, "c", "none")])  # told apart by the first segment


async def test_quart_serves_nothing_outside_the_table(server):
    app = create_app(server.backbone)
    catch_alls, websockets = set(), set()
    for rule in app.url_map.iter_rules():
        if rule.endpoint == "static":
            continue
        if rule.websocket:
            websockets.add(rule.rule)
        else:
            assert rule.methods is None, rule  # every method reaches the dispatcher's 404/405
            catch_alls.add(rule.rule)
    assert catch_alls == {"/", "/<everything:path>"}
    assert websockets == {r.quart_rule for r in routes.websocket_routes()}
    assert {r.path for r in routes.ROUTES if r.serve is routes.MOUNT} == {MCP_MOUNTED}


async def _ask(client: httpx.AsyncClient, route: Route) -> httpx.Response:
    url = route.path.format(**VALUES)
    body = b"" if route.serve is routes.RAW else b"{}"
    async with client.stream(route.method, url, content=body) as response:
        if "text/event-stream" not in response.headers.get("content-type", ""):
            await response.aread()
        return response


async def _upgrade_refused(server, route: Route) -> int | None:
    """The HTTP status refusing an anonymous upgrade (``None`` when it was accepted)."""
    url = server.url.replace("http://", "ws://") + route.path.format(**VALUES)
    try:
        with trio.fail_after(5):
            async with trio_websocket.open_websocket_url(url):
                return None
    except trio_websocket.ConnectionRejected as rejected:
        return rejected.status_code


def _counted(metrics: str) -> set[str]:
    return set(re.findall(r'^parley_http_requests_total\{route="([^"]*)"', metrics, re.M))


@pytest.mark.parametrize("read_auth", [False, True], ids=["open-reads", "token-reads"])
async def test_each_auth_rule_is_what_the_wire_enforces(migrated_url, read_auth):
    needs_token = {"write", "admin", "session"} | ({"read"} if read_auth else set())
    async with running_server(test_settings(migrated_url, read_auth=read_auth)) as live:
        async with live.client("tok-a") as alice, live.client() as anon:
            assert (await alice.post("/channels", json={"channel": "probe"})).status_code == 201
            for route in routes.operations():
                if route.serve is routes.WEBSOCKET:
                    status = await _upgrade_refused(live, route)
                else:
                    status = (await _ask(anon, route)).status_code
                assert (status == 401) == (route.auth in needs_token), (route.method, route.path, status)
            counted = _counted((await anon.get("/metrics")).text)
    assert {r.label for r in DISPATCHED} <= counted
