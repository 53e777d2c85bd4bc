"""``parley mcp`` over stdio, driven by the SDK's stdio client against a real ``parley serve``.

Every effect is checked over HTTP, not through MCP: anchored identity,
message types, claims, artifacts byte-identical.
"""

from __future__ import annotations

import hashlib
import json

import trio

from tests.support.process import clean_env, run_cli

from .conftest import call, stdio_mcp


def _messages(http, channel: str) -> list[dict]:
    return http.post(f"/channels/{channel}/read", json={"cursor": 0}).json()["messages"]


async def test_every_channel_tool_has_its_effect_over_http(server, tmp_path):
    http = server.client("tok-b")
    async with stdio_mcp(server.url, "tok-a", "war-room", tmp_path) as mcp:
        listed = [tool.name for tool in (await mcp.list_tools()).tools]
        assert listed[:2] == ["parley_status", "parley_post"] and len(listed) == 20

        # start-up auto-created the home channel, anchored to the token's owner
        home = http.get("/channels/war-room").json()
        assert home["purpose"] == "parley session channel (auto-created at startup)"
        assert home["created_by"] == "alice"
        status = await call(mcp, "parley_status")
        assert status.text == '{"agent_id":"session","owner":"(anchored server-side)","channel":"war-room","head":0}'

        note = (await call(mcp, "parley_post", type="note", body="cache looks fine ✓")).json
        finding = (await call(mcp, "parley_post_finding", body="db pool exhausted", to=["bob-agent"])).json
        steer = (await call(mcp, "parley_steer", body="check the deploy", status="needs-response")).json
        assert list(note) == ["msg_id", "cursor"] and note["cursor"] == 1 and steer["cursor"] == 3
        stored = _messages(http, "war-room")
        assert [(m["type"], m["owner"], m["agent_id"]) for m in stored] == [
            ("note", "alice", "sess-a"),
            ("finding", "alice", "sess-a"),
            ("steer", "alice", "sess-a"),
        ]
        assert [m["msg_id"] for m in stored] == [note["msg_id"], finding["msg_id"], steer["msg_id"]]
        assert stored[1]["to"] == ["bob-agent"] and stored[2]["status"] == "needs-response"

        page = (await call(mcp, "parley_read_channel", since=1, limit=1)).json
        assert page["count"] == 1 and page["messages"][0]["msg_id"] == finding["msg_id"]
        missing = await call(mcp, "parley_read_channel", channel="no-such-room")
        assert missing.text == '{"cursor":0,"count":0,"messages":[]}'

        claimed = (await call(mcp, "parley_claim", target="  db-pool  ", note="mine")).json
        assert claimed["outcome"] == "granted"
        claims = http.get("/channels/war-room/claims").json()["claims"]
        assert [(c["target"], c["holder"]["owner"]) for c in claims] == [("db-pool", "alice")]
        reassigned = (
            await call(mcp, "parley_reassign", target="db-pool", assignee_owner="bob", assignee_agent="sess-b")
        ).json
        assert reassigned["outcome"] == "granted"
        assert http.get("/channels/war-room/claims").json()["claims"][0]["holder"]["owner"] == "bob"
        refused = (await call(mcp, "parley_mark_done", target="db-pool")).json
        assert refused["outcome"] == "already_claimed" and refused["by"]["owner"] == "bob"
        assert list(refused["by"]) == ["agent_id", "owner", "ts", "msg_id"]
        assert (await call(mcp, "parley_mark_done", target="never-claimed")).text == '{"outcome":"not_held"}'

        digest = (await call(mcp, "parley_catch_me_up")).json
        assert digest["window"]["to_cursor"] == http.get("/channels/war-room").json()["head"]
        assert digest["by_type"]["claim"] == 2 and digest["open_claims"][0]["holder"]["owner"] == "alice"
        markdown = (await call(mcp, "parley_catch_me_up", format="markdown")).text
        assert markdown.startswith("# war-room \u2014 parley session channel (auto-created at startup)\n")

        head = http.get("/channels/war-room").json()["head"]
        assert (await call(mcp, "parley_subscribe")).json == {"cursor": head}
        listed_channels = (await call(mcp, "parley_list_channels")).json
        assert listed_channels["count"] == len(http.get("/channels").json()["channels"])

        created = (await call(mcp, "parley_create_channel", channel="side-room", purpose="cache investigation")).json
        assert created["channel"] == "side-room" and http.get("/channels/side-room").json()["created_by"] == "alice"
        guarded = await call(mcp, "parley_post", type="note", body="too early", channel="side-room")
        assert guarded.is_error and guarded.text.startswith("Cannot post to that channel: it has not been joined")
        assert http.get("/channels/side-room").json()["head"] == 0
        assert (await call(mcp, "parley_join_channel", channel="side-room")).json == {
            "channel": "side-room",
            "cursor": 0,
            "head": 0,
        }
        assert not (await call(mcp, "parley_post", type="question", body="who?", channel="side-room")).is_error
        assert [m["type"] for m in _messages(http, "side-room")] == ["question"]
        described = (await call(mcp, "parley_describe_channel", channel="side-room")).json
        assert described["head"] == 1
        assert (await call(mcp, "parley_describe_channel", channel="nope")).text == 'Unknown channel: "nope"'

        # artifacts: text content and a binary file, byte-identical both ways
        text = "repro script ✓\n"
        up = (await call(mcp, "parley_upload_artifact", content=text)).json
        assert up["sha256"] == hashlib.sha256(text.encode()).hexdigest() and up["size"] == len(text.encode())
        assert up["uri"] == f"caucus://artifact/war-room/{up['sha256']}"
        blob = bytes(range(256)) * 9
        source = tmp_path / "blob.bin"
        source.write_bytes(blob)
        up_file = (await call(mcp, "parley_upload_artifact", path=str(source), channel="side-room")).json
        got = http.get(f"/channels/side-room/artifacts/{up_file['sha256']}")
        assert got.content == blob
        fetched = (await call(mcp, "parley_fetch_artifact", uri=up["uri"])).json
        assert open(fetched["path"], "rb").read() == text.encode() and fetched["size"] == up["size"]
        target = tmp_path / "out.bin"
        fetched = (await call(mcp, "parley_fetch_artifact", uri=up_file["uri"].replace("caucus:", "parley:"), path=str(target))).json
        assert target.read_bytes() == blob and fetched == {"path": str(target), "size": len(blob)}
        bad = await call(mcp, "parley_fetch_artifact", uri="https://example.com/x")
        assert bad.is_error and bad.text.startswith("Not a valid caucus://artifact/")
        gone = await call(mcp, "parley_fetch_artifact", uri=f"caucus://artifact/war-room/{'0' * 64}")
        assert gone.is_error and gone.text.startswith("No artifact found at that URI")

        # the parley additions, once each (their own tests go deeper)
        assert (await call(mcp, "parley_wait", timeout=0)).json["timed_out"] is True
        started = (await call(mcp, "parley_session_start")).json
        assert started["status"] == "finished" and "continuationToken" not in json.dumps(started)
        assert (await call(mcp, "parley_session_continue")).json["sessionId"] == started["sessionId"]
        assert not (await call(mcp, "parley_session_close")).is_error
        no_session = await call(mcp, "parley_session_continue")
        assert no_session.text == "No parley session is active: call parley_session_start first."
        assert (await call(mcp, "parley_nope")).text == "Unknown tool: parley_nope"


async def test_two_agents_race_one_claim(server, tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    results = {}
    async with stdio_mcp(server.url, "tok-a", "war-room", tmp_path / "a") as alice:
        async with stdio_mcp(server.url, "tok-b", "war-room", tmp_path / "b") as bob:

            async def claim(name, client):
                results[name] = (await call(client, "parley_claim", target="cache stampede")).json

            async with trio.open_nursery() as nursery:
                nursery.start_soon(claim, "alice", alice)
                nursery.start_soon(claim, "bob", bob)
    outcomes = sorted(r["outcome"] for r in results.values())
    assert outcomes == ["already_claimed", "granted"]
    winner = next(name for name, r in results.items() if r["outcome"] == "granted")
    loser = results["bob" if winner == "alice" else "alice"]
    assert loser["by"]["owner"] == winner and loser["by"]["msg_id"] == results[winner]["msg_id"]
    claims = server.client("tok-a").get("/channels/war-room/claims").json()["claims"]
    assert [c["holder"]["owner"] for c in claims] == [winner]


async def test_bad_input_is_an_error_result_and_appends_nothing(server, tmp_path):
    http = server.client("tok-a")
    async with stdio_mcp(server.url, "tok-a", "war-room", tmp_path) as mcp:
        cases = [
            ("parley_post", {}, "Invalid arguments: `type` is required; `body` is required."),
            ("parley_post", {"type": "claim", "body": "x"}, "Invalid arguments: `type` must be one of: "
             "`finding`, `status`, `question`, `answer`, `note`, `steer`."),
            ("parley_post", {"type": "note", "body": ""}, "Invalid arguments: `body`: must not be empty."),
            ("parley_post_finding", {"body": 42, "to": []}, "Invalid arguments: `body` must be a string; "
             "`to`: must have at least 1 item(s)."),
            ("parley_read_channel", {"since": "3"}, "Invalid arguments: `since` must be a number."),
            ("parley_claim", {"target": "   "}, "Malformed message: target must not be empty"),
            ("parley_post", {"type": "note", "body": "a\x1bb"}, "Invalid message: body must not contain "
             "control characters (tab and newline are allowed)"),
            ("parley_post", {"type": "note", "body": "x" * 16001}, "Invalid message: body exceeds 16000 characters"),
            ("parley_post", {"type": "note", "body": "x", "thread": "x"}, "Invalid message: thread must be a ULID"),
            ("parley_upload_artifact", {}, "Provide exactly one of `path` or `content` (not both, not neither)."),
            ("parley_upload_artifact", {"content": "x" * 1_048_577}, "Artifact too large: at most 1048576 bytes per upload."),
            ("parley_wait", {"timeout": 301}, "Invalid arguments: `timeout`: must be at most 300."),
        ]
        for name, args, expected in cases:
            result = await call(mcp, name, **args, unknown_key_is_ignored=True)
            assert result.is_error, (name, args)
            assert result.text == expected, (name, args)
        past = await call(mcp, "parley_read_channel", since=5)
        assert past.is_error and past.text == "cursor must be an integer in [0, 0]"
    assert http.get("/channels/war-room").json()["head"] == 0
    assert http.get("/channels/war-room/claims").json()["claims"] == []


def test_start_up_failures_are_one_line_and_exit_1(server, tmp_path):
    cases = [
        (dict(PARLEY_URL=server.url, PARLEY_CHANNEL="war-room"), "ConfigError: PARLEY_TOKEN is required"),
        (dict(PARLEY_URL="http://u:p@127.0.0.1:1", PARLEY_TOKEN="t", PARLEY_CHANNEL="c"),
         "ConfigError: PARLEY_URL must not contain credentials (userinfo)"),
        (dict(PARLEY_URL=server.url, PARLEY_TOKEN="wrong", PARLEY_CHANNEL="war-room"),
         "UnauthorizedError: missing or invalid token"),
        (dict(PARLEY_URL=server.url, PARLEY_TOKEN="tok-a", PARLEY_CHANNEL="Bad_Name"),
         'InvalidChannelNameError: Invalid channel name: "Bad_Name" (must match ^[a-z0-9][a-z0-9-]{0,63}$)'),
    ]
    for env, expected in cases:
        result = run_cli(["mcp"], clean_env(**env), tmp_path)
        assert result.returncode == 1, result
        assert result.stderr == f"parley mcp failed to start: {expected}\n"
        assert result.stdout == ""
        assert "wrong" not in result.stderr or "wrong" in expected
    # the CAUCUS_* aliases are accepted
    alias = run_cli(["mcp"], clean_env(CAUCUS_URL=server.url, CAUCUS_TOKEN="wrong", CAUCUS_CHANNEL="war-room"), tmp_path)
    assert alias.stderr == "parley mcp failed to start: UnauthorizedError: missing or invalid token\n"


async def test_the_2026_era_probe_also_works_over_stdio(server, tmp_path):
    async with stdio_mcp(server.url, "tok-a", "war-room", tmp_path, mode="auto") as mcp:
        assert len((await mcp.list_tools()).tools) == 20
        assert (await call(mcp, "parley_status")).json["channel"] == "war-room"
