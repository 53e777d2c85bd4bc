"""The shapes of what the SDK returns, as :class:`typing.TypedDict` s.

Every result of :class:`~parley.client.Parley` / :class:`~parley.client.AsyncParley`
is the server's JSON body, decoded. These classes name its keys and their
types (from docs/contracts/channels.md and sessions.md), so an editor can
complete ``page["messages"]`` and a type checker catches ``page["msgs"]``.
At run time they are plain ``dict`` s: code that indexes them, compares them
with ``==`` or serialises them keeps working unchanged (ADR-0020).

Keys marked ``NotRequired`` are absent from some answers (for instance
``purpose`` of a channel created without one); use ``.get`` for them.
"""

# No ``from __future__ import annotations`` here: on Python 3.11 a TypedDict
# only sees ``NotRequired`` in evaluated annotations (``__required_keys__``).
from typing import Any, Literal, NotRequired, TypedDict

#: ``type`` of a schema-v1 message.
MessageType = Literal["finding", "claim", "status", "question", "answer", "note", "steer"]
#: ``status`` of a message.
MessageStatus = Literal["needs-response", "resolved", "fyi"]


class Identity(TypedDict):
    """Who an agent is: the pair a token resolves to."""

    agent_id: str
    owner: str


class Message(TypedDict):
    """A stored schema-v1 message (``v``, ``ts``, ``agent_id``, ``owner`` are set by the server)."""

    v: int
    type: MessageType
    agent_id: str
    owner: str
    msg_id: str
    body: str
    #: Opaque, strictly increasing stamp ``<ISO>#<12-digit seq>`` (not parseable as a date).
    ts: str
    thread: NotRequired[str]
    reply_to: NotRequired[str]
    to: NotRequired[list[str]]
    status: NotRequired[MessageStatus]
    artifact: NotRequired[str]
    #: Claims only.
    target: NotRequired[str]
    lease_ttl: NotRequired[int]
    heartbeat: NotRequired[bool]
    #: Stored reassign claims only.
    assignee: NotRequired[Identity]


class AppendResult(TypedDict):
    """``append``: the stored message and the channel cursor after it."""

    message: Message
    cursor: int


class ReadPage(TypedDict):
    """One ``read`` page: messages strictly after the asked cursor, and the cursor after them.

    An empty ``messages`` list means the reader has caught up.
    """

    messages: list[Message]
    cursor: int


class ChannelDescriptor(TypedDict):
    """``create_channel`` / ``describe`` / ``list_channels`` / ``archive``."""

    channel: str
    kind: Literal["ephemeral"]
    purpose: NotRequired[str]
    #: Stored as given at creation (not validated by the server); default ``"quiet"``.
    verbosity: Any
    renderBudgetChars: int
    created_by: str
    created_ts: str
    #: The live cursor: the number of messages in the channel.
    head: int
    archived: NotRequired[bool]


class Holder(TypedDict):
    """Who holds a claim, as ``already_claimed`` answers show it."""

    agent_id: str
    owner: str
    ts: str
    msg_id: str


class ClaimOutcome(TypedDict):
    """``claim`` / ``reassign`` / ``done``.

    ``granted`` carries ``message`` and ``cursor``; ``already_claimed``
    carries ``by``; ``not_held`` (``done`` only) carries nothing else.
    """

    outcome: Literal["granted", "already_claimed", "not_held"]
    message: NotRequired[Message]
    cursor: NotRequired[int]
    by: NotRequired[Holder]


class ClaimEntry(TypedDict):
    """One live claim of ``claims(channel)``."""

    target: str
    holder: Identity
    ts: str
    msg_id: str
    #: ISO-8601 instant the lease ends (absent: the claim never expires).
    expires_at: NotRequired[str]


class StoredArtifact(TypedDict):
    """``put_artifact``: where the blob lives, and whether it was already there."""

    uri: str
    sha256: str
    size: int
    #: True when the channel already had these bytes (HTTP 200 rather than 201).
    deduplicated: bool


class Token(TypedDict):
    """``mint`` / ``rotate``: the new bearer (shown only once) and its identity."""

    token: str
    agent_id: str
    owner: str


class Health(TypedDict):
    """``health``: ``{"ok": true}`` while the server answers."""

    ok: bool


class TailItem(TypedDict):
    """One live-tail frame (``tail`` / ``tail_ws``): a message and the cursor after it.

    ``cursor`` is ``None`` only from a server that sends no ``id:`` lines
    before the client knows where it started (never from parley).
    """

    cursor: int | None
    message: Message


class Delivered(TypedDict):
    """A message a session turn delivers, with its channel and the channel cursor after it."""

    channel: str
    cursor: int
    message: Message


class TurnOutput(TypedDict):
    """``output`` of a finished or parked turn.

    ``results[i]`` is the body the channel route returns for action ``i``
    (an :class:`AppendResult`, a :class:`ClaimOutcome`, …) or its error
    envelope ``{"error": {"code", "message"}}``; actions stop at the first error.
    """

    results: list[dict[str, Any]]
    messages: list[Delivered]
    #: The session's cursor on each subscribed channel after the turn.
    cursors: dict[str, int]


class TurnWait(TypedDict):
    """``wait`` of a parked turn: what it waited on."""

    channels: list[str]
    cursors: dict[str, int]


class SessionTurn(TypedDict):
    """A turn response (``start_session`` / ``continue_session`` / ``ResumableSession.turn``).

    ``finished``: committed. ``parked``: committed after waiting with
    nothing arriving. ``contended``: nothing committed (another process holds
    the session); the same ``continuationToken`` comes back.
    """

    sessionId: str
    status: Literal["finished", "parked", "contended"]
    #: Present it on the next turn; it rotates on every committed turn.
    continuationToken: str
    output: NotRequired[TurnOutput]
    wait: NotRequired[TurnWait]
    #: Contended only: the session's journal head.
    current: NotRequired[int]


class SessionDescription(TypedDict):
    """``describe_session``: never shows a token."""

    sessionId: str
    agent_id: str
    owner: str
    handler: str
    #: Committed turns; the start turn is turn 1.
    turns: int
    subscriptions: dict[str, int]
    status: Literal["idle", "in_turn"]
    created_ts: NotRequired[str]
    updated_ts: NotRequired[str]


class SessionClosed(TypedDict):
    """``close_session``."""

    closed: bool


__all__ = [
    "AppendResult",
    "ChannelDescriptor",
    "ClaimEntry",
    "ClaimOutcome",
    "Delivered",
    "Health",
    "Holder",
    "Identity",
    "Message",
    "MessageStatus",
    "MessageType",
    "ReadPage",
    "SessionClosed",
    "SessionDescription",
    "SessionTurn",
    "StoredArtifact",
    "TailItem",
    "Token",
    "TurnOutput",
    "TurnWait",
]
