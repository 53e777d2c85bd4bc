"""Session turns between actor and runner (ADR-0030), on the in-memory journal.

The runner reports a turn's result through the actor's mailbox; these tests
race the next command against that result, keep an actor busy past its idle
timeout, and let a second "process" (another backbone on the same journal)
move the stream under an accepted turn.
"""

from __future__ import annotations

import pytest
import trio

from parley.actors.session_actor import SessionActor, TurnRequest
from parley.domain import session as S
from parley.domain.outcomes import Appended
from parley.errors import StaleToken, TurnInFlight
from parley.journal.memory import MemoryJournal
from tests.actors.memory_backbone import ALICE, BOB, memory_backbone
from tests.support.messages import ulid


def turn(body: dict, *, start: bool = False, token: str | None = None) -> TurnRequest:
    return TurnRequest(ALICE, S.parse_turn_input(body, start=start), token, None, S.fingerprint(body))


async def answer(handle) -> dict:
    await handle.done.wait()
    assert handle.error is None, handle.error
    return handle.response


async def test_a_waiting_turn_keeps_its_actor_in_memory_past_the_idle_timeout(autojump_clock):
    async with memory_backbone(actor_idle_s=0.05) as backbone:
        await backbone.create_channel({"channel": "team"}, ALICE)
        sessions = backbone.sessions
        started = await answer(await sessions.start(turn({"actions": [{"subscribe": {"channel": "team"}}]}, start=True)))
        sid, token = started["sessionId"], started["continuationToken"]
        waiting = await sessions.continue_(sid, turn({"wait": 5}, token=token))
        await trio.sleep(1)  # virtual time: twenty idle timeouts
        actor = sessions.registry.peek(sid)
        assert isinstance(actor, SessionActor) and actor.in_flight is waiting
        with pytest.raises(TurnInFlight):
            await sessions.continue_(sid, turn({}, token=token))
        message = {"type": "note", "body": "wake up", "msg_id": ulid(3)}
        assert isinstance(await backbone.append("team", message, BOB), Appended)
        woken = await answer(waiting)
        assert woken["status"] == "finished"
        assert [m["message"]["msg_id"] for m in woken["output"]["messages"]] == [ulid(3)]
        after = await answer(await sessions.continue_(sid, turn({}, token=woken["continuationToken"])))
        assert after["status"] == "finished"
        assert (await sessions.describe(sid, ALICE))["turns"] == 3
        await trio.sleep(1)  # idle now: it may leave memory
        assert not sessions.registry.is_active(sid)


async def test_the_next_turn_sent_the_moment_one_is_answered_meets_the_committed_state():
    async with memory_backbone() as backbone:
        sessions = backbone.sessions
        answered = await answer(await sessions.start(turn({}, start=True)))
        sid = answered["sessionId"]
        for _ in range(40):
            # No checkpoint between the answer and the next command: it races the
            # runner's result in the mailbox, and must queue behind it.
            handle = await sessions.continue_(sid, turn({}, token=answered["continuationToken"]))
            answered = await answer(handle)
        assert (await sessions.describe(sid, ALICE))["turns"] == 41


async def test_racing_turns_with_one_token_commit_once_and_the_rest_are_in_flight():
    async with memory_backbone() as backbone:
        sessions = backbone.sessions
        started = await answer(await sessions.start(turn({}, start=True)))
        sid = started["sessionId"]
        outcomes: list[str] = []

        async def go() -> None:
            try:
                handle = await sessions.continue_(sid, turn({}, token=started["continuationToken"]))
                response = await answer(handle)
                outcomes.append(response["status"])
            except TurnInFlight:
                outcomes.append("turn_in_flight")
            except StaleToken:
                outcomes.append("stale_token")

        async with trio.open_nursery() as nursery:
            for _ in range(8):
                nursery.start_soon(go)
        assert outcomes.count("finished") == 1, outcomes
        assert set(outcomes) <= {"finished", "turn_in_flight", "stale_token"}
        assert (await sessions.describe(sid, ALICE))["turns"] == 2


async def test_a_turn_accepted_on_a_state_another_process_moved_is_decided_again():
    journal = MemoryJournal()
    async with memory_backbone(journal) as one, memory_backbone(journal) as two:
        started = await answer(await one.sessions.start(turn({}, start=True)))
        sid, first = started["sessionId"], started["continuationToken"]
        moved = await answer(await two.sessions.continue_(sid, turn({}, token=first)))
        assert moved["status"] == "finished"
        # Process one still holds turn 1 as current: it accepts the old token,
        # its runner finds the stream moved, and the actor decides again.
        handle = await one.sessions.continue_(sid, turn({}, token=first))
        await handle.done.wait()
        assert isinstance(handle.error, StaleToken)
        again = await answer(await one.sessions.continue_(sid, turn({}, token=moved["continuationToken"])))
        assert again["status"] == "finished"
        assert (await two.sessions.describe(sid, ALICE))["turns"] == 3
