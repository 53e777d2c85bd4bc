"""The whole 404/405 matrix, byte for byte, against a recorded answer sheet.

Every (method, path, body) below is sent anonymously to a live server and
its status, error code and message are compared with
``tests/data/route_matrix.json``, recorded from the hand-written dispatcher
that the route table replaced (ADR-0033). Together with the metric labels
the requests were counted under, this pins the dispatch order of
channels.md §4.2 (artifact → stream → JSON; the method before the action on
``/channels/:c/<action>``; raw-path decoding; JSON parsed even on a 404)
against any change of the table.

``PARLEY_RECORD_ROUTE_MATRIX=1 pytest tests/api/test_route_matrix.py``
rewrites the sheet: only do that for a deliberate, ADR-recorded change.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from pathlib import Path

import httpx

SHEET = Path(__file__).resolve().parents[1] / "data" / "route_matrix.json"
METHODS = ("GET", "POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS", "TRACE")
SHA = hashlib.sha256(b"probe").hexdigest()
PATHS = (
    "/", "/nope", "/healthz", "/healthz/x", "/readyz", "/metrics", "/openapi.json", "/openapi.json/x",
    "/channels", "/channels/", "/channels/nope", "/channels/probe", "/channels/probe/x/y",
    "/channels/probe/append", "/channels/probe/read", "/channels/probe/subscribe", "/channels/probe/claim",
    "/channels/probe/reassign", "/channels/probe/done", "/channels/probe/archive", "/channels/probe/claims",
    "/channels/probe/stream", "/channels/probe/stream/x", "/channels/probe/ws", "/channels/probe/foo",
    "/channels/probe/artifacts", f"/channels/probe/artifacts/{SHA}", "/channels/probe/artifacts/abc",
    "/channels/probe/artifacts/x/y", "/channels/a%ZZb", "/channels/%C3%28/append", "//channels///probe//claims",
    "/channels/pr%6Fbe/claims", "/channels/stream/stream", "/channels/artifacts/artifacts/x",
    "/admin", "/admin/foo", "/admin/tokens", "/admin/tokens/revoke", "/admin/tokens/rotate", "/admin/tokens/foo",
    "/admin/tokens/foo/bar", "/v1", "/v1/foo", "/v1/peers", "/v1/peers/x", "/v1/session", "/v1/session/ses_nope",
    "/v1/session/ses_nope/message", "/v1/session/ses_nope/other", "/v1/session/a/b/c", "/v1/sessions",
    "/v1/sessions/x", "/v1/ws", "/v1/ws/x", "/ui", "/ui/", "/ui/app.js", "/ui/nope.js", "/ui/a/b", "/uix",
    "/mcp", "/mcp/x",
)
BODIES = {"none": None, "bad": b"{not json"}


def _answer(response: httpx.Response) -> list:
    content_type = response.headers.get("content-type", "")
    code = message = None
    if content_type.startswith("application/json"):
        try:
            error = json.loads(response.content).get("error")
        except (ValueError, AttributeError):
            error = None
        if isinstance(error, dict):
            code, message = error.get("code"), error.get("message")
    return [response.status_code, content_type.split(";")[0], code, message]


async def _ask(client: httpx.AsyncClient, method: str, path: str, body: bytes | None) -> list:
    headers = {"content-type": "application/json"} if body is not None else {}
    async with client.stream(method, path, content=body, headers=headers) as response:
        if "text/event-stream" not in response.headers.get("content-type", ""):
            await response.aread()
        return _answer(response)


def _sheet(observed: dict) -> str:
    """The answer sheet, one request per line (diffs stay readable)."""
    lines = ['{"answers": {']
    answers = sorted(observed["answers"].items())
    lines += [f"  {json.dumps(k)}: {json.dumps(v)}{',' if i < len(answers) - 1 else ''}" for i, (k, v) in enumerate(answers)]
    lines.append(f'}}, "counted": {json.dumps(observed["counted"], sort_keys=True)}}}')
    return "\n".join(lines) + "\n"


def _request_counts(metrics_text: str) -> dict[str, float]:
    found = re.findall(r'^parley_http_requests_total\{route="([^"]*)",status="(\d+)"\} (\S+)$', metrics_text, re.M)
    return {f"{route} {status}": float(count) for route, status, count in sorted(found)}


async def test_every_answer_of_the_matrix_is_the_recorded_one(server):
    async with server.client("tok-a") as alice, server.client() as anon:
        assert (await alice.post("/channels", json={"channel": "probe"})).status_code == 201
        answers: dict[str, list] = {}
        for path in PATHS:
            for method in METHODS:
                for name, body in BODIES.items():
                    answers[f"{method} {path} {name}"] = await _ask(anon, method, path, body)
        counts = _request_counts((await anon.get("/metrics")).text)
    observed = {"answers": answers, "counted": counts}
    if os.environ.get("PARLEY_RECORD_ROUTE_MATRIX") == "1":
        SHEET.write_text(_sheet(observed))
    recorded = json.loads(SHEET.read_text())
    wrong = {k: (v, recorded["answers"].get(k)) for k, v in answers.items() if recorded["answers"].get(k) != v}
    assert not wrong, f"{len(wrong)} answers differ (observed, recorded): {dict(list(wrong.items())[:10])}"
    assert set(answers) == set(recorded["answers"])
    assert counts == recorded["counted"]
