"""``parley hook`` end to end: the real hook subprocess against a real ``parley serve``
(contracts/mcp.md §6, §8.4; ADR-0016)."""

from __future__ import annotations

import itertools
import json
import os
import re
import socket
import stat

import pytest

from parley.client import Parley
from tests.support.process import serve, sqlite_url, start_server

from .support import Hook, bodies, quiet

SKIPPED = "parley-hook: skipped this turn (backbone unavailable or slow)\n"
ROOMY = {
    "PARLEY_MAX_POSTS_PER_MINUTE": "1000",
    "PARLEY_GLOBAL_MAX_POSTS_PER_MINUTE": "1000",
    "PARLEY_MAX_CHANNEL_CREATES_PER_MINUTE": "1000",
}


_ROOMS = itertools.count(1)


@pytest.fixture(scope="module")
def shared_server(tmp_path_factory):
    """One server for the tests that need no restart; each test has its own channel."""
    tmp = tmp_path_factory.mktemp("server")
    with serve(sqlite_url(tmp), tmp, **ROOMY) as srv:
        yield srv


@pytest.fixture
def server(shared_server, request):
    room = f"r{next(_ROOMS)}-" + re.sub(r"[^a-z0-9]+", "-", request.node.originalname.lower())[:50].strip("-")
    with Parley(shared_server.url, "tok-a") as client:
        client.create_channel(room)
    shared_server.room = room
    return shared_server


def post(server_or_url, *bodies_: str, **fields) -> None:
    url, room = (server_or_url, "war-room") if isinstance(server_or_url, str) else (server_or_url.url, server_or_url.room)
    with Parley(url, "tok-a") as client:
        for body in bodies_:
            client.append(room, body=body, **fields)


def test_first_run_is_quiet_and_the_second_injects_exactly_the_delta(server, tmp_path):
    post(server, "backlog before the first run")
    hook = Hook(tmp_path, server.url, server.room)
    quiet(hook.run())
    first = hook.state()
    assert list(first) == ["sessionId", "continuationToken", "channel", "v"]
    assert first["channel"] == server.room and first["sessionId"].startswith("ses_")
    assert stat.S_IMODE(os.stat(hook.state_file()).st_mode) == 0o600

    with Parley(server.url, "tok-a") as client:
        client.append(server.room, type="finding", body="cache hit rate fell\nto 3%", status="fyi")
        client.append(server.room, type="steer", body="check the deploy ", to=["alice-agent", "bob-agent"])
        client.append(server.room, body="see logs", artifact="caucus://artifact/war-room/" + "a" * 64)
    result = hook.run()
    assert (result.code, result.stderr) == (0, "")
    assert result.block == "\n".join(
        [
            "=== PARLEY CHANNEL (new since last turn) ===",
            "[parley] delivered \u2014 cursor 4 \u00b7 quote between the === markers to verify",
            "[parley] finding  A\u00b7alice  cache hit rate fell to 3%  [fyi]",
            "[parley] steer    A\u00b7alice  \u25b8 human directive: check the deploy  @alice-agent @bob-agent",
            "[parley] note     A\u00b7alice  see logs  \u2197artifact",
            "=== END PARLEY ===",
        ]
    )
    saved = hook.state()
    assert saved["sessionId"] == first["sessionId"]
    assert saved["continuationToken"] != first["continuationToken"]
    assert saved["lastInjection"]["cursor"] == 4 and saved["lastInjection"]["block"] == result.block
    assert "pending" not in saved and "resumeFrom" not in saved

    quiet(hook.run())  # nothing new: quiet, and lastInjection survives the quiet turn
    assert hook.state()["lastInjection"] == saved["lastInjection"]


def test_a_parley_restart_loses_and_repeats_nothing(tmp_path):
    url = sqlite_url(tmp_path)
    srv = start_server(url, tmp_path)
    try:
        with Parley(srv.url, "tok-a") as client:
            client.create_channel("war-room")
        hook = Hook(tmp_path, srv.url)
        quiet(hook.run())
        post(srv.url, "before restart 1", "before restart 2")
        assert srv.terminate() == 0
        session = hook.state()["sessionId"]

        quiet(hook.run(), SKIPPED)  # the server is down: fail open, the turn stays recorded
        assert "pending" in hook.state()
    finally:
        srv.close()
    with serve(url, tmp_path) as again:
        hook.env["PARLEY_URL"] = again.url
        post(again.url, "after restart")
        result = hook.run()
        assert result.stderr == ""
        assert bodies(result.block) == ["before restart 1", "before restart 2", "after restart"]
        assert hook.state()["sessionId"] == session  # resumed, not re-minted
        quiet(hook.run())
        post(again.url, "later")
        assert bodies(hook.run().block) == ["later"]


def test_a_turn_answered_but_never_stored_is_replayed_not_lost(server, tmp_path):
    """The hook killed (or timed out) after the server committed its turn: the next run
    resends the recorded turn with the same key and token and gets the same answer."""
    hook = Hook(tmp_path, server.url, server.room)
    quiet(hook.run())
    post(server, "one", "two")
    before = hook.state()
    before["pending"] = {"idempotencyKey": "hook-test-key-1", "body": {"wait": 0, "max": 100}}
    hook.state_file().write_text(json.dumps(before))
    assert bodies(hook.run().block) == ["one", "two"]
    hook.state_file().write_text(json.dumps(before))  # as if that answer was lost
    again = hook.run()
    assert again.stderr == "" and bodies(again.block) == ["one", "two"]
    quiet(hook.run())


def test_a_stale_state_file_starts_a_new_session_at_head(server, tmp_path):
    hook = Hook(tmp_path, server.url, server.room)
    quiet(hook.run())
    copied = hook.state_file().read_text()
    post(server, "seen")
    assert bodies(hook.run().block) == ["seen"]
    hook.state_file().write_text(copied)  # a copy of an old file: its token is stale
    post(server, "lost to the copy")
    quiet(hook.run(), "parley-hook: started a new session\n")
    post(server, "after")
    assert bodies(hook.run().block) == ["after"]


def test_the_cap_carries_the_rest_to_the_next_turn(server, tmp_path):
    hook = Hook(tmp_path, server.url, server.room)
    quiet(hook.run())
    sent = [f"m{i:02d} " + "x" * 190 for i in range(45)]
    with Parley(server.url, "tok-a") as client:
        for body in sent:
            client.append(server.room, body=body)
    shown: list[str] = []
    blocks = []
    while len(blocks) < 5:
        result = hook.run()
        if not result.stdout:
            break
        assert result.stderr == ""
        blocks.append(result.block)
        shown += bodies(result.block)
    assert shown == sent  # every message exactly once, in order
    assert len(blocks) == 2 and all(len(b) <= 8000 for b in blocks)
    first = blocks[0].split("\n")
    held = 45 - len(bodies(blocks[0]))
    assert first[2] == f"[+{held} newer messages \u2014 next turn, or parley_read_channel]"
    assert first[1] == f"[parley] delivered \u2014 cursor {45 - held} \u00b7 quote between the === markers to verify"
    assert len(blocks[0]) > 8000 - 260  # the page was filled, not merely shortened
    assert not blocks[1].split("\n")[2].startswith("[+")


def test_an_unknown_channel_means_no_output_and_no_session(server, tmp_path):
    hook = Hook(tmp_path, server.url, channel="no-such-room")
    quiet(hook.run(), SKIPPED)
    assert not hook.state_dir.joinpath("hook").exists() or not any(hook.state_dir.joinpath("hook").iterdir())


def test_no_channel_means_nothing_at_all(tmp_path):
    hook = Hook(tmp_path, "http://127.0.0.1:9")
    del hook.env["PARLEY_CHANNEL"]
    quiet(hook.run())
    assert not hook.state_dir.exists()


def test_caucus_aliases_work_and_the_parley_name_wins(server, tmp_path):
    hook = Hook(tmp_path, "http://127.0.0.1:9", CAUCUS_URL=server.url, CAUCUS_CHANNEL=server.room)
    del hook.env["PARLEY_URL"], hook.env["PARLEY_CHANNEL"]
    hook.env["CAUCUS_TOKEN"] = hook.env.pop("PARLEY_TOKEN")
    quiet(hook.run('{"session_id":"s/1 x"}'))
    assert hook.state(f"s-1-x__{server.room}.json")["channel"] == server.room
    hook.env["PARLEY_CHANNEL"] = "other-room"  # PARLEY_ wins: another (unknown) channel
    quiet(hook.run('{"session_id":"s/1 x"}'), SKIPPED)


@pytest.mark.parametrize("stdin", ["", "not json", "[]", '{"session_id":""}', '{"session_id":7}'])
def test_bad_stdin_means_the_default_session(server, tmp_path, stdin):
    hook = Hook(tmp_path, server.url, server.room)
    quiet(hook.run(stdin))
    assert hook.state(f"default__{server.room}.json")["channel"] == server.room


def test_no_token_means_no_request_and_one_line(tmp_path):
    hook = Hook(tmp_path, "http://127.0.0.1:9")
    del hook.env["PARLEY_TOKEN"]
    quiet(hook.run(), "parley-hook: PARLEY_TOKEN is required (a parley session belongs to a token's identity)\n")
    assert not hook.state_dir.exists()


def test_a_down_server_means_no_output_and_exit_0(tmp_path):
    with socket.socket() as probe:  # a port with nothing listening
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    hook = Hook(tmp_path, f"http://127.0.0.1:{port}")
    result = hook.run()
    quiet(result, SKIPPED)
    assert result.seconds < 4


def test_a_server_that_never_answers_is_given_up_within_the_timeout(tmp_path):
    with socket.socket() as hole:  # accepts connections (backlog) but never answers
        hole.bind(("127.0.0.1", 0))
        hole.listen(8)
        hook = Hook(tmp_path, f"http://127.0.0.1:{hole.getsockname()[1]}")
        result = hook.run()
    quiet(result, SKIPPED)
    assert 3.9 < result.seconds < 8


def test_a_state_file_that_cannot_be_written_is_one_line(server, tmp_path):
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("")
    hook = Hook(tmp_path, server.url, server.room)
    hook.env["PARLEY_STATE_DIR"] = str(blocker / "state")
    quiet(hook.run(), "parley-hook: could not persist checkpoint this turn\n")


def test_with_an_outbox_each_prompt_sends_the_posts_queued_while_parley_was_down(server, tmp_path):
    """Posts ``parley mcp`` queued (here enqueued directly) go out at the next prompt."""
    from parley.client import Outbox

    path = tmp_path / "outbox.db"
    with Outbox(path) as outbox:
        queued = [outbox.enqueue(server.room, {"type": "note", "body": f"queued {i}"}) for i in range(3)]
    hook = Hook(tmp_path, server.url, server.room, PARLEY_OUTBOX=str(path))
    quiet(hook.run())  # the first run: sends the queue, starts the session at the head
    with Parley(server.url, "tok-a") as client:
        stored = [m for page in client.read_all(server.room) for m in page["messages"]]
    assert [m["msg_id"] for m in stored] == queued
    with Outbox(path) as outbox:
        assert {row.state for row in outbox.rows()} == {"done"}
    quiet(hook.run())  # nothing left to send, nothing new: quiet, and nothing sent twice
    with Parley(server.url, "tok-a") as client:
        assert len([m for page in client.read_all(server.room) for m in page["messages"]]) == 3
