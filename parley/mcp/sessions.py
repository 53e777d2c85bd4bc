"""``parley_session_start`` / ``_continue`` / ``_close`` (contracts/mcp.md §8.2).

The model never sees a continuation token: the MCP server holds it in an
:class:`~parley.client.AsyncResumableSession`, whose resume file
(``$PARLEY_STATE_DIR/sessions/<agent_id>__<home>.json``, mode 0600) records
the turn in flight (input + ``Idempotency-Key``) before it is sent and the
rotated token after it is answered. A restarted MCP process therefore
resumes the same session, and a lost answer is resent with the same key and
token (the server replays it). Turns are serialised by a lock, and the send
is shielded so a cancelled call still stores the rotated token.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import trio

from ..client import AsyncResumableSession, ParleyError, SessionFile, SessionState
from . import sanitize
from .agent import Agent, ToolError

NO_SESSION = "No parley session is active: call parley_session_start first."
_UNSAFE = re.compile(r"[^A-Za-z0-9_-]+")


class HeldSession:
    """The one parley session an :class:`Agent` holds (at most one)."""

    def __init__(self, agent: Agent) -> None:
        self.agent = agent
        self.lock = trio.Lock()
        self.path: Path | None = None
        if agent.state_dir is not None:
            name = f"{_UNSAFE.sub('-', agent.identity.agent_id)}__{_UNSAFE.sub('-', agent.home)}.json"
            self.path = Path(agent.state_dir) / "sessions" / name
        self.resumable: AsyncResumableSession | None = None
        if self.path is not None and self.path.exists():
            self.resumable = self._open()
            if self.resumable.session_id is None and self.resumable.pending is None:
                self.resumable = None

    def _open(self, handler: str | None = None) -> AsyncResumableSession:
        if self.path is None:  # HTTP transport: held in memory, never on the server's disk
            return AsyncResumableSession(os.devnull, self.agent.client, handler=handler, file=_MemoryFile())
        return AsyncResumableSession(self.path, self.agent.client, handler=handler)

    def drop(self) -> None:
        if self.resumable is not None:
            self.resumable.file.delete()
        self.resumable = None

    async def turn(self, session: AsyncResumableSession, actions: list[dict[str, Any]] | None, wait: int, max_: int) -> dict[str, Any]:
        try:
            with trio.CancelScope(shield=True):
                response = await session.turn(actions, wait=wait, max_messages=max_)
        except ParleyError as error:
            if error.code in ("stale_token", "unknown_session"):
                self.drop()
            raise
        _restrict(session.file.path)
        return response


class _MemoryFile(SessionFile):
    """A :class:`SessionFile` that keeps the state in memory (the ``/mcp`` transport)."""

    def __init__(self) -> None:
        super().__init__(os.devnull)
        self._state: SessionState | None = None

    def exists(self) -> bool:
        return self._state is not None

    def load(self) -> SessionState | None:
        return self._state

    def save(self, state: SessionState) -> None:
        self._state = SessionState.from_json(state.to_json())

    def delete(self) -> None:
        self._state = None


def _restrict(path: Path) -> None:
    if str(path) == os.devnull:
        return
    try:
        os.chmod(path, 0o600)
    except OSError:  # the file was removed by a close
        pass


def held(agent: Agent) -> HeldSession:
    if agent.session is None:
        agent.session = HeldSession(agent)
    return agent.session


def _result(response: dict[str, Any]) -> dict[str, Any]:
    output = response.get("output") or {}
    messages = [
        {"channel": item.get("channel"), "cursor": item.get("cursor"), "message": sanitize.message(item.get("message") or {})}
        for item in output.get("messages") or []
    ]
    if response.get("status") == "contended":
        messages = []
    return {
        "sessionId": response.get("sessionId"),
        "status": response.get("status"),
        "results": output.get("results") or [],
        "messages": messages,
        "cursors": output.get("cursors") or {},
    }


async def start_tool(agent: Agent, args: dict[str, Any], _ctx: Any) -> dict[str, Any]:
    held_session = held(agent)
    channels = args.get("channels") or [agent.home]
    from_ = args.get("from", "head")
    actions = [{"subscribe": {"channel": c, "from": from_}} for c in channels]
    async with held_session.lock:
        previous = held_session.resumable
        if previous is not None and previous.session_id is not None:
            with trio.move_on_after(5):
                try:
                    await previous.close()
                except ParleyError:
                    pass
        held_session.drop()
        session = held_session._open(args.get("handler"))
        held_session.resumable = session
        try:
            response = await held_session.turn(session, actions, args.get("wait", 0), args.get("max", 100))
        except ParleyError:
            held_session.drop()
            raise
    return _result(response)


async def continue_tool(agent: Agent, args: dict[str, Any], _ctx: Any) -> dict[str, Any]:
    held_session = held(agent)
    async with held_session.lock:
        session = held_session.resumable
        if session is None:
            raise ToolError(NO_SESSION)
        from_ = args.get("from", "head")
        actions = [{"subscribe": {"channel": c, "from": from_}} for c in args.get("subscribe") or []]
        actions += [{"unsubscribe": {"channel": c}} for c in args.get("unsubscribe") or []]
        response = await held_session.turn(session, actions or None, args.get("wait", 0), args.get("max", 100))
    return _result(response)


async def close_tool(agent: Agent, args: dict[str, Any], _ctx: Any) -> dict[str, Any]:
    held_session = held(agent)
    async with held_session.lock:
        session = held_session.resumable
        if session is None:
            raise ToolError(NO_SESSION)
        session_id = session.session_id
        try:
            await session.close()
        finally:
            held_session.drop()
    return {"sessionId": session_id, "closed": True}
