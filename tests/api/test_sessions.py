"""Sessions over HTTP (contracts/sessions.md): the REST routes on a live server, both backends."""

from __future__ import annotations

import json

import trio

from parley.domain.session_input import fingerprint
from tests.api.test_sessions_helpers import create_channel, error_of, note, start, turn, ulid


async def test_start_continue_describe_close(server):
    async with server.client("tok-a") as client:
        await create_channel(client, "work")
        first = note("hello")
        started = await start(
            client,
            {
                "actions": [
                    {"subscribe": {"channel": "work", "from": "start"}},
                    {"append": {"channel": "work", "message": first}},
                ]
            },
        )
        sid, token1 = started["sessionId"], started["continuationToken"]
        assert sid.startswith("ses_") and token1.startswith("ct_")
        assert started["status"] == "finished"
        assert list(started) == ["sessionId", "status", "continuationToken", "output"]
        out = started["output"]
        assert out["results"][0] == {"cursor": 0}
        assert out["results"][1]["cursor"] == 1
        assert out["results"][1]["message"]["owner"] == "alice"
        # The session's own append is delivered in the same turn.
        assert [m["cursor"] for m in out["messages"]] == [1]
        assert out["messages"][0]["channel"] == "work"
        assert out["messages"][0]["message"]["msg_id"] == first["msg_id"]
        assert out["cursors"] == {"work": 1}

        second = await turn(client, started)
        assert second.status_code == 200, second.text
        continued = second.json()
        assert continued["sessionId"] == sid
        assert continued["continuationToken"] not in (token1, "")
        assert continued["output"] == {"results": [], "messages": [], "cursors": {"work": 1}}

        described = await client.get(f"/v1/session/{sid}")
        assert described.status_code == 200
        info = described.json()
        assert info["sessionId"] == sid
        assert (info["agent_id"], info["owner"], info["handler"]) == ("sess-a", "alice", "inbox")
        assert info["turns"] == 2
        assert info["subscriptions"] == {"work": 1}
        assert info["status"] == "idle"
        assert "#" in info["created_ts"] and info["updated_ts"] >= info["created_ts"]
        assert token1 not in described.text and continued["continuationToken"] not in described.text

        # The old token is stale now; close needs the current one (the header works too).
        assert error_of(await turn(client, started)) == (
            409,
            "stale_token",
            "stale or invalid continuationToken",
        )
        closed = await client.request(
            "DELETE", f"/v1/session/{sid}", headers={"x-continuation-token": continued["continuationToken"]}
        )
        assert closed.status_code == 200 and closed.json() == {"closed": True}
        unknown = (404, "unknown_session", f"unknown session '{sid}'")
        assert error_of(await client.get(f"/v1/session/{sid}")) == unknown
        assert error_of(await turn(client, continued)) == unknown
        again = await client.request(
            "DELETE", f"/v1/session/{sid}", json={"continuationToken": continued["continuationToken"]}
        )
        assert error_of(again) == unknown


async def test_refusal_order(server):
    url_unknown = f"/v1/session/ses_{ulid()}/message"
    async with server.client() as anon, server.client("tok-a") as client:
        # 1. invalid JSON / non-object body come before auth.
        bad_json = await anon.post(url_unknown, content=b"{nope", headers={"content-type": "application/json"})
        assert error_of(bad_json)[:2] == (400, "invalid_json")
        assert error_of(await anon.post("/v1/session", json=[1]))[:2] == (400, "invalid_request")
        # 2. bearer: byte-identical to the channel routes' 401.
        channel_401 = await anon.post("/channels/x/append", json={})
        async with server.client("tok-nope") as forged:
            with_forged = await forged.post("/v1/session", json={})
        for response in (
            await anon.post("/v1/session", json={}),
            await anon.post(url_unknown, json={"wait": 99}),
            await anon.get(url_unknown.rsplit("/", 1)[0]),
            with_forged,
        ):
            assert response.status_code == 401
            assert response.content == channel_401.content
        # 3. bad input before the session lookup; messages never echo values.
        status, code, message = error_of(await client.post(url_unknown, json={"wait": 61}))
        assert (status, code) == (400, "invalid_request") and "wait" in message and "61" not in message
        assert error_of(await client.post(url_unknown, json={"max": True}))[:2] == (400, "invalid_request")
        assert error_of(await client.post(url_unknown, json={"secret-thing": 1}))[:2] == (400, "invalid_request")
        assert error_of(await client.post(url_unknown, json={"continuationToken": 5}))[:2] == (
            400,
            "invalid_request",
        )
        assert error_of(await client.post(url_unknown, json={"actions": [{"fly": {}}]}))[:2] == (
            400,
            "invalid_request",
        )
        assert error_of(
            await client.post(url_unknown, json={}, headers={"Idempotency-Key": "has space"})
        )[:2] == (400, "invalid_request")
        start_with_token = await client.post("/v1/session", json={"continuationToken": "x"})
        assert error_of(start_with_token)[:2] == (400, "invalid_request")
        unknown_handler = await client.post("/v1/session", json={"handler": "nope"})
        assert error_of(unknown_handler) == (400, "invalid_request", 'unknown handler "nope"')
        # 4. unknown session (before the missing token); the id is cleaned and cut.
        sid_unknown = url_unknown.split("/")[3]
        assert error_of(await client.post(url_unknown, json={})) == (
            404,
            "unknown_session",
            f"unknown session '{sid_unknown}'",
        )
        long_id = "x\x01" + "y" * 200
        from urllib.parse import quote

        response = await client.post(f"/v1/session/{quote(long_id, safe='')}/message", json={})
        assert error_of(response) == (404, "unknown_session", "unknown session '" + "x" + "y" * 119 + "…'")

        session = await start(client)
        sid = session["sessionId"]
        url = f"/v1/session/{sid}/message"
        # 5. missing token: absent, empty, or an empty body string even with a valid header.
        missing = (400, "missing_token", "missing continuationToken")
        assert error_of(await client.post(url, json={})) == missing
        assert error_of(await client.post(url, json={"continuationToken": ""})) == missing
        assert error_of(
            await client.post(
                url, json={"continuationToken": ""}, headers={"x-continuation-token": session["continuationToken"]}
            )
        ) == missing
        # 7. a wrong token is stale.
        stale = (409, "stale_token", "stale or invalid continuationToken")
        assert error_of(await client.post(url, json={"continuationToken": "ct_forged"})) == stale
        # The body wins over the header.
        assert error_of(
            await client.post(
                url, json={"continuationToken": "ct_forged"}, headers={"x-continuation-token": session["continuationToken"]}
            )
        ) == stale
        by_header = await client.post(url, json={}, headers={"x-continuation-token": session["continuationToken"]})
        assert by_header.status_code == 200, by_header.text

        # Methods and unknown paths.
        assert error_of(await client.get("/v1/session"))[:2] == (405, "method_not_allowed")
        assert error_of(await client.put(f"/v1/session/{sid}", json={}))[:2] == (405, "method_not_allowed")
        assert error_of(await client.get(url))[:2] == (405, "method_not_allowed")
        assert error_of(await client.post("/v1/nope", json={}))[:2] == (404, "not_found")
        assert error_of(await client.post(f"/v1/session/{sid}/other", json={}))[:2] == (404, "not_found")


async def test_someone_elses_session_is_unknown(server):
    async with server.client("tok-a") as alice, server.client("tok-b") as bob:
        session = await start(alice)
        sid = session["sessionId"]
        fake = f"ses_{ulid()}"
        for method, suffix, body in (
            ("POST", "/message", {"continuationToken": session["continuationToken"]}),
            ("GET", "", None),
            ("DELETE", "", {"continuationToken": session["continuationToken"]}),
        ):
            theirs = await bob.request(method, f"/v1/session/{sid}{suffix}", json=body)
            nobody = await bob.request(method, f"/v1/session/{fake}{suffix}", json=body)
            assert theirs.status_code == nobody.status_code == 404
            assert theirs.content == f'{{"error":{{"code":"unknown_session","message":"unknown session \'{sid}\'"}}}}'.encode()
            assert theirs.content.replace(sid.encode(), fake.encode()) == nobody.content
            skip = {"x-request-id", "date"}
            assert {k: v for k, v in theirs.headers.items() if k not in skip} == {
                k: v for k, v in nobody.headers.items() if k not in skip
            }
        # Nothing was consumed: alice's token still works.
        assert (await turn(alice, session)).status_code == 200


async def test_concurrent_continues_commit_exactly_once(server):
    async with server.client("tok-a") as client:
        await create_channel(client, "race")
        session = await start(client, {"actions": [{"subscribe": {"channel": "race"}}]})
        responses = []

        async def one(i: int) -> None:
            responses.append(await turn(client, session, {"actions": [{"append": {"channel": "race", "message": note(f"n{i}")}}]}))

        async with trio.open_nursery() as nursery:
            for i in range(20):
                nursery.start_soon(one, i)
        ok = [r for r in responses if r.status_code == 200]
        assert len(ok) == 1, [r.text for r in responses]
        refused = {r.json()["error"]["code"] for r in responses if r.status_code != 200}
        assert refused <= {"turn_in_flight", "stale_token"}
        info = (await client.get(f"/v1/session/{session['sessionId']}")).json()
        assert info["turns"] == 2
        assert (await client.get("/channels/race")).json()["head"] == 1


async def test_turn_in_flight_is_answered_while_a_turn_waits(server):
    async with server.client("tok-a") as client, server.client("tok-b") as bob:
        await create_channel(client, "quiet")
        session = await start(client, {"actions": [{"subscribe": {"channel": "quiet"}}]})
        sid = session["sessionId"]
        waiting: list = []

        async def wait_turn() -> None:
            waiting.append(await turn(client, session, {"wait": 30}))

        async with trio.open_nursery() as nursery:
            nursery.start_soon(wait_turn)
            # The waiting turn is in flight: describe says so, a second turn is refused at once.
            with trio.fail_after(5):
                while (await client.get(f"/v1/session/{sid}")).json()["status"] != "in_turn":
                    await trio.sleep(0.01)
            with trio.fail_after(2):
                second = await turn(client, session)
            assert error_of(second) == (409, "turn_in_flight", "a turn is already in flight for this session")
            closing = await client.request(
                "DELETE", f"/v1/session/{sid}", json={"continuationToken": session["continuationToken"]}
            )
            assert error_of(closing)[:2] == (409, "turn_in_flight")
            # Another client's append wakes the waiting turn.
            posted = note("wake up")
            appended = await bob.post("/channels/quiet/append", json=posted)
            assert appended.status_code == 201
        (done,) = waiting
        assert done.status_code == 200
        body = done.json()
        assert body["status"] == "finished"
        assert [m["message"]["msg_id"] for m in body["output"]["messages"]] == [posted["msg_id"]]
        assert body["output"]["cursors"] == {"quiet": 1}
        assert (await client.get(f"/v1/session/{sid}")).json()["status"] == "idle"


async def test_wait_parks_on_deadline_and_without_subscriptions_finishes_at_once(server):
    async with server.client("tok-a") as client:
        await create_channel(client, "still")
        bare = await start(client, {"wait": 60})  # nothing to wait for
        assert bare["status"] == "finished"
        session = await start(client, {"actions": [{"subscribe": {"channel": "still"}}]})
        started = trio.current_time()
        response = await turn(client, session, {"wait": 1})
        assert 0.9 <= trio.current_time() - started < 10
        parked = response.json()
        assert parked["status"] == "parked"
        assert parked["continuationToken"] != session["continuationToken"]
        assert parked["output"] == {"results": [], "messages": [], "cursors": {"still": 0}}
        assert parked["wait"] == {"channels": ["still"], "cursors": {"still": 0}}
        assert (await client.get(f"/v1/session/{session['sessionId']}")).json()["turns"] == 2


async def test_idempotent_retries(server):
    async with server.client("tok-a") as client:
        await create_channel(client, "idem")
        body = {"actions": [{"subscribe": {"channel": "idem", "from": "start"}}]}
        first = await client.post("/v1/session", json=body, headers={"Idempotency-Key": "start-1"})
        again = await client.post("/v1/session", json=body, headers={"Idempotency-Key": "start-1"})
        assert first.status_code == again.status_code == 200
        assert again.content == first.content
        assert again.headers["Idempotent-Replayed"] == "true"
        assert "Idempotent-Replayed" not in first.headers
        conflict = await client.post("/v1/session", json={"wait": 0}, headers={"Idempotency-Key": "start-1"})
        assert error_of(conflict)[:2] == (409, "idempotency_conflict")
        session = first.json()
        sid = session["sessionId"]

        step = {"actions": [{"append": {"channel": "idem", "message": note("once")}}]}
        sent = await turn(client, session, step, headers={"Idempotency-Key": "turn-2"})
        assert sent.status_code == 200
        # The response is lost; the client retries with the same token, key and body.
        retried = await turn(client, session, step, headers={"Idempotency-Key": "turn-2"})
        assert retried.status_code == 200
        assert retried.content == sent.content
        assert retried.headers["Idempotent-Replayed"] == "true"
        # Header presentation of the token is the same request.
        by_header = await client.post(
            f"/v1/session/{sid}/message",
            json=step,
            headers={"Idempotency-Key": "turn-2", "x-continuation-token": session["continuationToken"]},
        )
        assert by_header.content == sent.content
        info = (await client.get(f"/v1/session/{sid}")).json()
        assert info["turns"] == 2
        assert (await client.get("/channels/idem")).json()["head"] == 1
        # Same key, different body → conflict; same key with the current token → conflict.
        other = await turn(client, session, {"wait": 0}, headers={"Idempotency-Key": "turn-2"})
        assert error_of(other)[:2] == (409, "idempotency_conflict")
        current = {"sessionId": sid, "continuationToken": sent.json()["continuationToken"]}
        reused = await turn(client, current, step, headers={"Idempotency-Key": "turn-2"})
        assert error_of(reused)[:2] == (409, "idempotency_conflict")
        # A fresh key with a stale token is stale; the key of an older turn is stale too.
        assert error_of(await turn(client, session, headers={"Idempotency-Key": "turn-x"}))[:2] == (
            409,
            "stale_token",
        )
        third = await turn(client, current, headers={"Idempotency-Key": "turn-3"})
        assert third.status_code == 200
        old_key = await turn(client, session, step, headers={"Idempotency-Key": "turn-2"})
        assert error_of(old_key)[:2] == (409, "stale_token")
        # The fingerprint is the canonical body without the token.
        assert fingerprint({"b": 1, "a": [1], "continuationToken": "x"}) == fingerprint({"a": [1], "b": 1})


async def test_actions_results_and_first_failure_stops(server):
    async with server.client("tok-a") as client:
        await create_channel(client, "acts")
        claim = {"type": "claim", "body": "mine", "msg_id": ulid(), "target": "task-1"}
        session = await start(client)
        response = await turn(
            client,
            session,
            {
                "actions": [
                    {"subscribe": {"channel": "acts", "from": 0}},
                    {"claim": {"channel": "acts", "message": claim}},
                    {
                        "reassign": {
                            "channel": "acts",
                            "message": {"type": "claim", "body": "yours", "msg_id": ulid(), "target": "task-1"},
                            "assignee": {"agent_id": "sess-b", "owner": "bob"},
                        }
                    },
                    {"append": {"channel": "acts", "message": {"type": "note", "body": ""}}},
                    {"append": {"channel": "acts", "message": note("never")}},
                    {"unsubscribe": {"channel": "acts"}},
                ]
            },
        )
        assert response.status_code == 200, response.text
        body = response.json()
        results = body["output"]["results"]
        assert len(results) == 4
        assert results[0] == {"cursor": 0}
        assert results[1]["outcome"] == "granted" and results[1]["cursor"] == 1
        assert results[2]["outcome"] == "granted" and results[2]["message"]["assignee"]["owner"] == "bob"
        error = results[3]["error"]
        assert error["code"] == "invalid_message" and error["issues"]
        # Same envelope as the channel route gives for the same message.
        direct = await client.post("/channels/acts/append", json={"type": "note", "body": ""})
        assert direct.json() == results[3]
        # The turn committed: token rotated, the subscription kept, both claim messages delivered.
        assert [m["cursor"] for m in body["output"]["messages"]] == [1, 2]
        assert body["output"]["cursors"] == {"acts": 2}
        assert (await client.get("/channels/acts")).json()["head"] == 2
        # Bad subscribes fail with the channel codes.
        nxt = await turn(
            client,
            body,
            {"actions": [{"subscribe": {"channel": "acts", "from": 99}}, {"subscribe": {"channel": "nope"}}]},
        )
        assert nxt.json()["output"]["results"] == [
            {"error": {"code": "invalid_cursor", "message": "cursor must be an integer in [0, 2]"}}
        ]
        third = await turn(client, nxt.json(), {"actions": [{"subscribe": {"channel": "nope"}}]})
        assert third.json()["output"]["results"][0]["error"]["code"] == "unknown_channel"
        fourth = await turn(client, third.json(), {"actions": [{"unsubscribe": {"channel": "acts"}}]})
        assert fourth.json()["output"]["cursors"] == {}


async def test_a_retried_turn_never_applies_an_action_twice(server):
    """The same turn's actions, run again (a crash before the commit), replay in the channel."""
    from parley.actors.session_actor import TurnRequest
    from parley.domain.identity import Identity
    from parley.domain.session_input import parse_turn_input

    async with server.client("tok-a") as client:
        await create_channel(client, "twice")
        session = await start(client)
        body = {"actions": [{"append": {"channel": "twice", "message": note("only once")}}]}
        req = TurnRequest(Identity("sess-a", "alice"), parse_turn_input(body, start=False), None, None, "")
        service = server.backbone.sessions
        first = await service.apply_actions(session["sessionId"], 2, req, {})
        second = await service.apply_actions(session["sessionId"], 2, req, {})
        assert first == second
        assert (await client.get("/channels/twice")).json()["head"] == 1
        # The real turn 2 uses the same keys: it replays too.
        done = await turn(client, session, body)
        assert done.json()["output"]["results"] == first
        assert (await client.get("/channels/twice")).json()["head"] == 1


async def test_delivery_order_and_max(server):
    async with server.client("tok-a") as client, server.client("tok-b") as bob:
        for name in ("one", "two"):
            await create_channel(client, name)
        session = await start(
            client,
            {"actions": [{"subscribe": {"channel": "one"}}, {"subscribe": {"channel": "two"}}]},
        )
        sent = []
        for i, channel in enumerate(["two", "one", "two", "one", "one"]):
            message = note(f"m{i}")
            assert (await bob.post(f"/channels/{channel}/append", json=message)).status_code == 201
            sent.append((channel, message["msg_id"]))
        page = (await turn(client, session, {"max": 3})).json()
        got = [(m["channel"], m["message"]["msg_id"]) for m in page["output"]["messages"]]
        assert got == sent[:3]
        assert page["output"]["cursors"] == {"one": 1, "two": 2}
        rest = (await turn(client, page, {"max": 500})).json()
        assert [(m["channel"], m["message"]["msg_id"]) for m in rest["output"]["messages"]] == sent[3:]
        assert [m["cursor"] for m in rest["output"]["messages"]] == [2, 3]


async def test_session_limit(migrated_url):
    from tests.support.server import running_server, test_settings

    async with running_server(test_settings(migrated_url, max_sessions_per_identity=2)) as live:
        async with live.client("tok-a") as client, live.client("tok-b") as bob:
            one = await start(client)
            await start(client)
            refused = await client.post("/v1/session", json={})
            assert error_of(refused) == (
                409,
                "session_limit",
                "session limit reached: at most 2 open sessions per identity",
            )
            await start(bob)  # per identity
            closed = await client.request(
                "DELETE", f"/v1/session/{one['sessionId']}", json={"continuationToken": one["continuationToken"]}
            )
            assert closed.status_code == 200
            await start(client)


async def test_digest_handler(server):
    async with server.client("tok-a") as client, server.client("tok-b") as bob:
        await create_channel(client, "ops")
        question = {"type": "question", "body": "who owns deploy?", "msg_id": ulid()}
        answered = {"type": "question", "body": "is CI green?", "msg_id": ulid()}
        for sender, message in (
            (client, {"type": "finding", "body": "latency up 20%", "msg_id": ulid()}),
            (bob, question),
            (bob, answered),
            (client, {"type": "answer", "body": "yes", "msg_id": ulid(), "reply_to": answered["msg_id"]}),
        ):
            assert (await sender.post("/channels/ops/append", json=message)).status_code == 201
        claim = {"type": "claim", "body": "on it", "msg_id": ulid(), "target": "deploy"}
        assert (await bob.post("/channels/ops/claim", json=claim)).status_code == 200
        done = {"type": "claim", "body": "x", "msg_id": ulid(), "target": "rollback"}
        assert (await client.post("/channels/ops/claim", json=done)).status_code == 200
        fin = {"type": "claim", "body": "done", "msg_id": ulid(), "target": "rollback"}
        assert (await client.post("/channels/ops/done", json=fin)).status_code == 200

        session = await start(client, {"handler": "digest", "actions": [{"subscribe": {"channel": "ops", "from": "head"}}]})
        digest = session["output"]["digest"]["ops"]
        assert digest["messages"] == 7
        assert digest["by_type"] == {"finding": 1, "question": 2, "answer": 1, "claim": 3}
        assert digest["participants"] == [
            {"agent_id": "sess-a", "owner": "alice"},
            {"agent_id": "sess-b", "owner": "bob"},
        ]
        assert [c["target"] for c in digest["claims"]["open"]] == ["deploy"]
        assert digest["claims"]["open"][0]["holder"] == {"agent_id": "sess-b", "owner": "bob"}
        assert [c["target"] for c in digest["claims"]["resolved"]] == ["rollback"]
        assert [q["msg_id"] for q in digest["unanswered_questions"]] == [question["msg_id"]]
        assert [f["body"] for f in digest["latest_findings"]] == ["latency up 20%"]
        assert session["output"]["messages"] == []
        info = (await client.get(f"/v1/session/{session['sessionId']}")).json()
        assert info["handler"] == "digest"
        # The digest comes back on every turn and on an idempotent replay too.
        nxt = await turn(client, session, headers={"Idempotency-Key": "d-2"})
        again = await turn(client, session, headers={"Idempotency-Key": "d-2"})
        assert json.loads(again.content)["output"]["digest"]["ops"]["messages"] == 7
        assert again.content == nxt.content


async def test_a_json_null_body_is_refused_and_runs_no_turn(server):
    """``null`` is not an empty body: it was read as ``{}`` and rotated the token (issue 16 item 9)."""
    headers = {"content-type": "application/json"}
    async with server.client("tok-a") as client:
        refused = await client.post("/v1/session", content=b"null", headers=headers)
        assert error_of(refused) == (400, "invalid_request", "request body must be a JSON object")
        started = await start(client, {})
        sid, token = started["sessionId"], started["continuationToken"]
        refused = await client.post(
            f"/v1/session/{sid}/message", content=b"null", headers={**headers, "x-continuation-token": token}
        )
        assert error_of(refused) == (400, "invalid_request", "request body must be a JSON object")
        info = (await client.get(f"/v1/session/{sid}")).json()
        assert info["turns"] == 1  # no turn ran
        assert (await turn(client, started)).status_code == 200  # the token was not rotated


async def test_refusals_on_session_routes_are_counted_under_their_route(server):
    async with server.client() as anonymous:
        assert (await anonymous.post("/v1/session", json={})).status_code == 401
        assert (await anonymous.get("/v1/session/ses_nope")).status_code == 401
        metrics = (await anonymous.get("/metrics")).text
    assert 'parley_http_requests_total{route="session_start",status="401"} 1.0' in metrics
    assert 'parley_http_requests_total{route="session_describe",status="401"} 1.0' in metrics
    assert 'route="unmatched",status="401"' not in metrics
