"""Shared helpers of the session API tests (no tests here)."""

from __future__ import annotations

from typing import Any

import httpx

from parley.domain.tokens import new_session_id


def ulid() -> str:
    return new_session_id()[4:]


def note(body: str, **extra: Any) -> dict[str, Any]:
    return {"type": "note", "body": body, "msg_id": ulid(), **extra}


def error_of(response: httpx.Response) -> tuple[int, str, str]:
    body = response.json()
    return response.status_code, body["error"]["code"], body["error"]["message"]


async def create_channel(client: httpx.AsyncClient, name: str) -> None:
    response = await client.post("/channels", json={"channel": name})
    assert response.status_code == 201, response.text


async def start(client: httpx.AsyncClient, body: dict[str, Any] | None = None, **kwargs: Any) -> dict[str, Any]:
    response = await client.post("/v1/session", json=body or {}, **kwargs)
    assert response.status_code == 200, response.text
    return response.json()


async def turn(
    client: httpx.AsyncClient, session: dict[str, Any], body: dict[str, Any] | None = None, **kwargs: Any
) -> httpx.Response:
    payload = {"continuationToken": session["continuationToken"], **(body or {})}
    return await client.post(f"/v1/session/{session['sessionId']}/message", json=payload, **kwargs)


def parse_sse(text: str) -> list[tuple[str, str]]:
    """``(event, data)`` pairs of an SSE body; comments come back as ``(":", text)``."""
    out: list[tuple[str, str]] = []
    for block in text.split("\n\n"):
        if not block.strip():
            continue
        if block.startswith(":"):
            out.append((":", block[1:].strip()))
            continue
        event, data = "", ""
        for line in block.split("\n"):
            if line.startswith("event: "):
                event = line[len("event: ") :]
            elif line.startswith("data: "):
                data = line[len("data: ") :]
        out.append((event, data))
    return out
