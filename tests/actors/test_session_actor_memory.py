"""The session service and actor on the in-memory journal: start, continue, describe, close.

The same operations the ``/v1/session`` routes call, without a server: a
turn's channel writes, its lease and its commit all land in the memory journal.
"""

from __future__ import annotations

from parley.actors.session_actor import TurnRequest
from parley.domain import session as S
from tests.actors.memory_backbone import ALICE, memory_backbone
from tests.support.messages import ulid


def turn(body: dict, *, start: bool, token: str | None = None) -> TurnRequest:
    return TurnRequest(ALICE, S.parse_turn_input(body, start=start), token, None, S.fingerprint(body))


async def answer(handle) -> dict:
    await handle.done.wait()
    assert handle.error is None, handle.error
    return handle.response


async def test_a_session_subscribes_appends_and_resumes():
    async with memory_backbone() as backbone:
        await backbone.create_channel({"channel": "team"}, ALICE)
        sessions = backbone.sessions
        started = await answer(await sessions.start(turn({"actions": [{"subscribe": {"channel": "team"}}]}, start=True)))
        sid = started["sessionId"]
        assert started["continuationToken"]
        message = {"type": "note", "body": "hello", "msg_id": ulid(7)}
        second = await answer(
            await sessions.continue_(
                sid,
                turn({"actions": [{"append": {"channel": "team", "message": message}}]}, start=False,
                     token=started["continuationToken"]),
            )
        )
        assert second["continuationToken"] != started["continuationToken"]
        page, head = await backbone.read_from("team", 0, 10)
        assert head == 1 and page[0]["msg_id"] == ulid(7)
        described = await sessions.describe(sid, ALICE)
        assert described["status"] == "idle"
        session_events = await backbone.journal.read_stream(f"session:{sid}")
        assert session_events[0].type == S.SESSION_STARTED and session_events[-1].type == S.TURN_COMMITTED
        lease, seq = await backbone.journal.lease_and_head(sid)
        assert seq == len(session_events) and lease is not None and lease.holder == ""  # released in the commit
        assert await backbone.journal.open_sessions(S.SESSION_STARTED, S.SESSION_CLOSED) == {sid: ("sess-a", "alice")}
        await sessions.close(sid, ALICE, second["continuationToken"])
        assert await backbone.journal.open_sessions(S.SESSION_STARTED, S.SESSION_CLOSED) == {}
