"""One MCP session's state (contracts/mcp.md §1 "Per-process state").

An :class:`Agent` is what a tool call runs against: the SDK client (its
bearer), the home channel, the joined set, the wait cursors, the msg_ids it
wrote, and the held parley session. stdio has one per process; ``/mcp`` has
one per MCP session (ADR-0015).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ..client import AsyncParley, ChannelExists, UnknownChannel
from .config import DisplayIdentity

HOME_PURPOSE = "parley session channel (auto-created at startup)"
GUARD_TEXT = (
    "Cannot post to that channel: it has not been joined in this session. "
    "Join it first with parley_join_channel, then retry."
)


class ToolError(Exception):
    """A refused tool call: its text is the whole ``isError`` result."""

    def __init__(self, text: str) -> None:
        super().__init__(text)
        self.text = text


@dataclass
class Agent:
    client: AsyncParley
    home: str
    identity: DisplayIdentity
    #: ``stdio`` or ``http`` (``path`` arguments are refused over HTTP, §8.3).
    transport: str = "stdio"
    #: Where the held session's resume file lives (None: not persisted).
    state_dir: str | None = None
    joined: list[str] = field(default_factory=list)
    wait_cursors: dict[str, int] = field(default_factory=dict)
    written: set[str] = field(default_factory=set)
    #: The held parley session (:class:`parley.mcp.sessions.HeldSession`), created on first use.
    session: Any = None
    #: Where background work of this MCP session runs (resource subscriptions); None: unsupported.
    task_group: Any = None
    #: Resource subscriptions: uri → the cancel scope of its watcher.
    watchers: dict[str, Any] = field(default_factory=dict)
    #: ``PARLEY_OUTBOX``'s :class:`parley.client.Outbox`: posts go through it (stdio only).
    outbox: Any = None

    async def ensure_home(self) -> dict[str, Any]:
        """Describe the home channel, creating it if missing (§1); sets the home wait cursor."""
        try:
            descriptor = await self.client.describe(self.home)
        except UnknownChannel:
            try:
                descriptor = await self.client.create_channel(
                    self.home, purpose=HOME_PURPOSE, created_by=self.identity.owner
                )
            except ChannelExists:
                descriptor = await self.client.describe(self.home)
        self.wait_cursors.setdefault(self.home, int(descriptor.get("head") or 0))
        return descriptor

    def watched(self) -> list[str]:
        return [self.home, *self.joined]

    def guard(self, channel: str | None) -> str:
        """The target channel of a write or fetch, or the join-guard refusal (before any request)."""
        if channel is None or channel == self.home:
            return self.home
        if channel in self.joined:
            return channel
        raise ToolError(GUARD_TEXT)

    def join(self, channel: str, cursor: int) -> None:
        if channel != self.home and channel not in self.joined:
            self.joined.append(channel)
            self.wait_cursors[channel] = cursor
        self.wait_cursors.setdefault(channel, cursor)
