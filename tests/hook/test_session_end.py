"""``parley hook`` on Claude Code's ``SessionEnd`` (ADR-0062): the session is closed, so an
identity's session limit is not used up by sessions that ended, and a resumed Claude
session starts a new one from the last cursor shown: nothing is lost or shown twice.
The real hook subprocess against a real ``parley serve``."""

from __future__ import annotations

import json
import os
import time

import pytest

from parley.client import Parley
from parley.errors import UnknownSession
from tests.support.process import serve, sqlite_url

from .support import Hook, bodies, quiet

ROOMY = {"PARLEY_MAX_POSTS_PER_MINUTE": "1000", "PARLEY_GLOBAL_MAX_POSTS_PER_MINUTE": "1000"}
SKIPPED = "parley-hook: skipped this turn (backbone unavailable or slow)\n"


def prompt(session: str = "s1") -> str:
    return json.dumps({"session_id": session, "hook_event_name": "UserPromptSubmit"})


def session_end(session: str = "s1") -> str:
    return json.dumps({"session_id": session, "hook_event_name": "SessionEnd", "reason": "prompt_input_exit"})


@pytest.fixture
def srv(tmp_path):
    with serve(sqlite_url(tmp_path), tmp_path, PARLEY_MAX_SESSIONS_PER_IDENTITY="2", **ROOMY) as server:
        with Parley(server.url, "tok-a") as client:
            client.create_channel("war-room")
        yield server


def post(url: str, *texts: str) -> None:
    with Parley(url, "tok-a") as client:
        for text in texts:
            client.append("war-room", body=text)


def closed(url: str, session_id: str) -> bool:
    with Parley(url, "tok-a") as client:
        try:
            client.describe_session(session_id)
        except UnknownSession:
            return True
    return False


def test_an_ended_session_is_closed_and_a_resumed_one_misses_nothing(srv, tmp_path):
    hook = Hook(tmp_path, srv.url)
    quiet(hook.run(prompt()))
    post(srv.url, "shown")
    assert bodies(hook.run(prompt()).block) == ["shown"]
    post(srv.url, "after the last prompt")
    old = hook.state()
    quiet(hook.run(session_end()))
    parked = hook.state()
    assert parked["parkedAt"] == 1 and parked["lastInjection"] == old["lastInjection"]
    assert closed(srv.url, old["sessionId"])
    post(srv.url, "while it was ended")
    resumed = hook.run(prompt())  # `claude --resume`: the same session id
    assert resumed.stderr == "" and bodies(resumed.block) == ["after the last prompt", "while it was ended"]
    again = hook.state()
    assert again["sessionId"] != old["sessionId"] and "parkedAt" not in again
    quiet(hook.run(prompt()))
    post(srv.url, "later")
    assert bodies(hook.run(prompt()).block) == ["later"]


def test_ended_sessions_give_their_slots_back(srv, tmp_path):
    """With a limit of two sessions per identity, a third Claude session starts only once
    one of the first two has ended."""
    hook = Hook(tmp_path, srv.url)
    quiet(hook.run(prompt("a")))
    quiet(hook.run(prompt("b")))
    quiet(hook.run(prompt("c")), SKIPPED)  # session_limit
    assert not hook.state_file("c__war-room.json").exists()
    quiet(hook.run(session_end("a")))
    quiet(hook.run(prompt("c")))
    assert hook.state("c__war-room.json")["sessionId"].startswith("ses_")


def test_messages_the_cap_held_back_come_after_the_resume(srv, tmp_path):
    hook = Hook(tmp_path, srv.url)
    quiet(hook.run(prompt()))
    sent = [f"m{i:02d} " + "x" * 190 for i in range(45)]
    post(srv.url, *sent)
    shown = bodies(hook.run(prompt()).block)
    assert 0 < len(shown) < 45 and hook.state()["resumeFrom"] == len(shown)
    quiet(hook.run(session_end()))
    assert hook.state()["parkedAt"] == len(shown)
    shown += bodies(hook.run(prompt()).block)
    assert shown == sent  # every message exactly once, in order


def test_an_end_the_server_missed_is_finished_by_the_next_run(srv, tmp_path):
    """A down server at the end: the state is left as it was (one line); with a parked
    file whose close never arrived, the next run closes the old session first."""
    hook = Hook(tmp_path, srv.url)
    quiet(hook.run(prompt()))
    state = hook.state()
    hook.env["PARLEY_URL"] = "http://127.0.0.1:9"
    quiet(hook.run(session_end()), SKIPPED)
    assert hook.state() == state
    hook.env["PARLEY_URL"] = srv.url
    hook.state_file().write_text(json.dumps({**state, "parkedAt": 0}))  # parked, close not sent
    post(srv.url, "one")
    assert bodies(hook.run(prompt()).block) == ["one"]
    assert closed(srv.url, state["sessionId"])


def test_an_end_with_a_turn_pending_or_no_state_changes_nothing(srv, tmp_path):
    hook = Hook(tmp_path, srv.url)
    quiet(hook.run(session_end()))  # never prompted: no state, no session
    assert not hook.state_file().exists()
    quiet(hook.run(prompt()))
    pending = {**hook.state(), "pending": {"idempotencyKey": "hook-end-key-1", "body": {"wait": 0, "max": 100}}}
    hook.state_file().write_text(json.dumps(pending))
    quiet(hook.run(session_end()))
    assert hook.state() == pending and not closed(srv.url, pending["sessionId"])


def test_end_idle_ends_the_sessions_idle_long_enough_and_they_resume_losslessly(srv, tmp_path):
    """``parley hook --end-idle DAYS``: for Claude sessions that ended without SessionEnd."""
    hook = Hook(tmp_path, srv.url)
    quiet(hook.run(prompt("old")))
    quiet(hook.run(prompt("new")))
    old, new = hook.state("old__war-room.json"), hook.state("new__war-room.json")
    week_ago = time.time() - 8 * 86_400
    os.utime(hook.state_file("old__war-room.json"), (week_ago, week_ago))
    post(srv.url, "while idle")
    result = hook.run("", "--end-idle", "7")
    assert (result.code, result.stdout) == (0, "")
    assert result.stderr == "parley-hook: ended 1 idle session(s) of 1 state file(s) idle for 7 day(s) or more\n"
    assert closed(srv.url, old["sessionId"]) and not closed(srv.url, new["sessionId"])
    assert hook.state("old__war-room.json")["parkedAt"] == 0
    assert bodies(hook.run(prompt("old")).block) == ["while idle"]
    hook.env["PARLEY_URL"] = "http://127.0.0.1:9"
    for name in ("old__war-room.json", "new__war-room.json"):
        os.utime(hook.state_file(name), (week_ago, week_ago))
    down = hook.run("", "--end-idle", "7")
    assert down.stderr.splitlines() == [
        SKIPPED.strip() + " (x2)",
        "parley-hook: ended 0 idle session(s) of 2 state file(s) idle for 7 day(s) or more",
    ]
    bad = hook.run("", "--end-idle", "soon")
    assert bad.code == 2 and "--end-idle" in bad.stderr and bad.stdout == ""


def test_end_idle_leaves_sessions_of_another_token_and_takes_every_channel(srv, tmp_path):
    with Parley(srv.url, "tok-a") as client:
        client.create_channel("other-room")
    hook = Hook(tmp_path, srv.url)
    quiet(hook.run(prompt("mine")))
    hook.env["PARLEY_CHANNEL"] = "other-room"
    quiet(hook.run(prompt("elsewhere")))
    hook.env["PARLEY_TOKEN"] = "tok-b"
    quiet(hook.run(prompt("bobs")))
    with Parley(srv.url, "tok-b") as bob:
        bobs = hook.state("bobs__other-room.json")["sessionId"]
        week_ago = time.time() - 8 * 86_400
        for name in ("mine__war-room.json", "elsewhere__other-room.json", "bobs__other-room.json"):
            os.utime(hook.state_file(name), (week_ago, week_ago))
        hook.env["PARLEY_TOKEN"] = "tok-a"
        result = hook.run("", "--end-idle", "7")
        assert result.stderr == "parley-hook: ended 2 idle session(s) of 3 state file(s) idle for 7 day(s) or more\n"
        assert bob.describe_session(bobs)["sessionId"] == bobs  # still open
    assert "parkedAt" not in hook.state("bobs__other-room.json")
    assert hook.state("mine__war-room.json")["parkedAt"] == 0
    assert hook.state("elsewhere__other-room.json")["parkedAt"] == 0
