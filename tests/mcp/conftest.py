"""Fixtures for the MCP tests: a real ``parley serve`` and the SDK's stdio client spawning ``parley mcp``."""

from __future__ import annotations

import json
import sys
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
from mcp import Client, StdioServerParameters

from tests.support.process import clean_env, serve, sqlite_url


@pytest.fixture
def server(tmp_path):
    with serve(sqlite_url(tmp_path), tmp_path) as srv:
        yield srv


def mcp_env(url: str, token: str, channel: str, state_dir: Path, **extra: str) -> dict[str, str]:
    return clean_env(PARLEY_URL=url, PARLEY_TOKEN=token, PARLEY_CHANNEL=channel, PARLEY_STATE_DIR=str(state_dir), **extra)


@asynccontextmanager
async def stdio_mcp(url: str, token: str, channel: str, cwd: Path, *, mode: str = "legacy", env_state: Path | None = None, **kw):
    """``parley mcp`` spawned by the SDK's stdio client (state dir ``env_state``, default ``cwd``)."""
    env = mcp_env(url, token, channel, env_state or cwd)
    params = StdioServerParameters(command=sys.executable, args=["-m", "parley", "mcp"], env=env, cwd=str(cwd))
    async with Client(params, mode=mode, **kw) as client:
        yield client


class Result:
    """A tool result: its text, whether it is an error, and the JSON it holds."""

    def __init__(self, raw) -> None:
        assert len(raw.content) == 1 and raw.content[0].type == "text"
        self.text = raw.content[0].text
        self.is_error = bool(raw.is_error)

    @property
    def json(self):
        assert not self.is_error, self.text
        return json.loads(self.text)


async def call(client, name: str, **arguments) -> Result:
    return Result(await client.call_tool(name, arguments))


def append(http, channel: str, **fields) -> dict:
    """Append over plain HTTP (not through MCP) → the server's ``{"message", "cursor"}``."""
    from parley.client import new_ulid

    body = {"type": "note", "msg_id": new_ulid(), "agent_id": "x", "owner": "x", **fields}
    response = http.post(f"/channels/{channel}/append", json=body)
    assert response.status_code == 201, response.text
    return response.json()


async def open_streams(http, at_least: int) -> None:
    """Return once the server's ``parley_open_streams`` gauge reaches ``at_least`` (a condition, polled)."""
    import trio

    with trio.fail_after(10):
        while True:
            text = await trio.to_thread.run_sync(lambda: http.get("/metrics").text)
            gauge = next(line for line in text.splitlines() if line.startswith("parley_open_streams "))
            if float(gauge.split()[1]) >= at_least:
                return
            await trio.sleep(0.02)


def mcp_children() -> list[int]:
    """Live ``parley mcp`` processes started by this test process (Linux ``/proc``)."""
    import os

    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                argv = f.read().split(b"\0")
        except OSError:
            continue
        if fields[0] != "Z" and int(fields[1]) == os.getpid() and argv[1:4] == [b"-m", b"parley", b"mcp"]:
            found.append(int(entry))
    return found
