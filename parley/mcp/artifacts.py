"""``parley_upload_artifact`` / ``parley_fetch_artifact`` (contracts/mcp.md §5, §8.3).

Blobs go through the SDK's ``put_artifact`` / ``get_artifact`` (bearer on
every request, reads included). Over HTTP, ``path`` would name the server's
disk, so it is refused and fetched bytes come back inline.
"""

from __future__ import annotations

import base64
import hashlib
import os
import re
import tempfile
from typing import Any

import trio

from ..client import ParleyError
from ..domain import caps
from .agent import Agent, ToolError

MAX_UPLOAD = caps.MAX_ARTIFACT_BYTES  # the backbone's default single-artifact cap
URI = re.compile(r"^(?:caucus|parley)://artifact/([a-z0-9][a-z0-9-]{0,63})/([0-9a-f]{64})$")
BAD_URI = (
    "Not a valid caucus://artifact/<channel>/<sha256> URI. "
    "Only caucus:// artifact URIs from a room you're in can be fetched."
)
NOT_FOUND = (
    "No artifact found at that URI \u2014 it may have expired (the store is ephemeral) or the address is wrong."
)
ONE_OF = "Provide exactly one of `path` or `content` (not both, not neither)."
TOO_LARGE = f"Artifact too large: at most {MAX_UPLOAD} bytes per upload."
NO_PATH = "`path` is not available over the HTTP transport; use `content`"


def _refuse_path_over_http(agent: Agent, args: dict[str, Any]) -> None:
    if agent.transport == "http" and args.get("path") is not None:
        raise ToolError(NO_PATH)


async def upload(agent: Agent, args: dict[str, Any]) -> dict[str, Any]:
    _refuse_path_over_http(agent, args)
    path, content = args.get("path"), args.get("content")
    if (path is None) == (content is None):
        raise ToolError(ONE_OF)
    if path is not None:
        try:
            data = await trio.Path(path).read_bytes()
        except OSError as exc:
            raise ToolError(f"Could not read the file at `path` ({type(exc).__name__}).") from None
    else:
        data = content.encode("utf-8")
    if len(data) > MAX_UPLOAD:
        raise ToolError(TOO_LARGE)
    sha256 = hashlib.sha256(data).hexdigest()
    channel = agent.guard(args.get("channel"))
    stored = await agent.client.put_artifact(channel, data, sha256)
    return {"uri": stored["uri"], "sha256": stored["sha256"], "size": stored["size"]}


def _write_file(target: str | None, sha256: str, data: bytes) -> str:
    if target is None:
        target = os.path.join(tempfile.mkdtemp(prefix="parley-artifact-"), sha256)
    with open(target, "wb") as handle:
        handle.write(data)
    return target


async def fetch(agent: Agent, args: dict[str, Any]) -> dict[str, Any]:
    _refuse_path_over_http(agent, args)
    match = URI.match(args["uri"])
    if match is None:
        raise ToolError(BAD_URI)
    channel, sha256 = match.groups()
    agent.guard(channel)
    try:
        data = await agent.client.get_artifact(channel, sha256)
    except ParleyError as error:
        if error.status != 404:
            raise
        data = None
    if data is None:
        raise ToolError(NOT_FOUND)
    if agent.transport == "http":
        out: dict[str, Any] = {"uri": args["uri"], "sha256": sha256, "size": len(data)}
        try:
            out["content"] = data.decode("utf-8")
        except UnicodeDecodeError:
            out["content_base64"] = base64.b64encode(data).decode("ascii")
        return out
    try:
        path = await trio.to_thread.run_sync(_write_file, args.get("path"), sha256, data)
    except OSError as exc:
        raise ToolError(f"Could not write the file at `path` ({type(exc).__name__}).") from None
    return {"path": path, "size": len(data)}
