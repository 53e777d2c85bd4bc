"""Typed use of the SDK, checked by ``mypy --strict`` in test_types.py (never run).

Each ``reveal``-free line below only type-checks if the SDK's annotations are
real: a misspelt key or a wrong element type makes mypy fail. The
``# type: ignore[...]`` lines are the negative checks: with ``warn_unused_ignores``
(part of ``--strict``) mypy fails if they stop being errors.
"""

from __future__ import annotations

from parley.client import (
    Actions,
    AppendResult,
    AsyncParley,
    AsyncResumableSession,
    ChannelDescriptor,
    ChannelExists,
    ClaimOutcome,
    Message,
    Parley,
    ReadPage,
    ResumableSession,
    SessionTurn,
    TailItem,
)


def sync_usage(client: Parley) -> list[str]:
    try:
        descriptor: ChannelDescriptor = client.create_channel("war-room", purpose="incident 42")
        head: int = descriptor["head"]
    except ChannelExists:
        head = client.describe("war-room")["head"]
    appended: AppendResult = client.append("war-room", {"type": "note", "body": "hello"})
    cursor: int = appended["cursor"]
    ts: str = appended["message"]["ts"]
    page: ReadPage = client.read("war-room", cursor=0, limit=10)
    bodies = [m["body"] for m in page["messages"]]
    for each in client.read_all("war-room"):
        bodies.extend(m["body"] for m in each["messages"])
    for message in client.iter_messages("war-room"):
        bodies.append(message["body"])
    claim: ClaimOutcome = client.claim("war-room", "db", lease_ttl=60)
    if claim["outcome"] == "already_claimed" and "by" in claim:
        bodies.append(claim["by"]["agent_id"])
    for entry in client.claims("war-room"):
        bodies.append(entry["holder"]["owner"] + entry.get("expires_at", ""))
    stored = client.put_artifact("war-room", b"blob")
    deduplicated: bool = stored["deduplicated"]
    turn: SessionTurn = client.start_session([Actions.subscribe("war-room", "start")])
    token: str = turn["continuationToken"]
    if "output" in turn:
        bodies.extend(d["message"]["body"] for d in turn["output"]["messages"])
    client.continue_session(turn["sessionId"], token, wait=0)
    session: ResumableSession = ResumableSession.open("s.json", client)
    bodies.append(session.turn()["status"])
    page["nope"]  # type: ignore[typeddict-item]
    _wrong: str = page["cursor"]  # type: ignore[assignment]
    return [*bodies, ts, str(head + cursor), str(deduplicated)]


async def async_usage(client: AsyncParley) -> list[Message]:
    out: list[Message] = []
    async for message in client.iter_messages("war-room"):
        out.append(message)
    async with client.tail("war-room", since=0) as tail:
        async for item in tail:
            frame: TailItem = item
            out.append(frame["message"])
            break
    session: AsyncResumableSession = ResumableSession.open("s.json", client)
    turn = await session.turn(wait=1)
    if turn["status"] == "parked" and "wait" in turn:
        out.extend([])
    return out
