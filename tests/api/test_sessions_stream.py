"""Session turns over SSE and WebSocket, leases, shutdown and restarts (live server, both backends)."""

from __future__ import annotations

import json

import pytest
import trio
from trio_websocket import ConnectionClosed, ConnectionRejected, open_websocket_url

from tests.api.test_sessions_helpers import create_channel, error_of, note, parse_sse, start, turn, ulid
from tests.support.server import running_server, test_settings

SSE = {"accept": "text/event-stream"}
AUTH_A = [("Authorization", "Bearer tok-a")]


def ws_url(live) -> str:
    return live.url.replace("http://", "ws://") + "/v1/ws"


async def test_sse_event_order_and_refusals_before_the_stream(server):
    async with server.client("tok-a") as client:
        await create_channel(client, "feed")
        posted = note("streamed")
        response = await client.post(
            "/v1/session",
            json={
                "actions": [
                    {"subscribe": {"channel": "feed", "from": "start"}},
                    {"append": {"channel": "feed", "message": posted}},
                ]
            },
            headers=SSE,
        )
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        events = [e for e in parse_sse(response.text) if e[0] != ":"]
        assert [kind for kind, _ in events] == ["record", "record", "delta", "outcome"]
        records = [json.loads(data) for _, data in events[:2]]
        outcome = json.loads(events[3][1])
        sid = outcome["sessionId"]
        assert [(r["stream"], r["seq"], r["type"]) for r in records] == [
            (f"session:{sid}", 1, "session_started"),
            (f"session:{sid}", 2, "turn_committed"),
        ]
        assert outcome["continuationToken"] not in response.text.replace(events[3][1], "")
        assert json.loads(events[2][1]) == outcome["output"]["messages"][0]
        assert outcome["output"]["messages"][0]["message"]["msg_id"] == posted["msg_id"]

        # A refusal is plain JSON, never a half-open stream.
        stale = await client.post(
            f"/v1/session/{sid}/message", json={"continuationToken": "ct_nope"}, headers=SSE
        )
        assert stale.headers["content-type"].startswith("application/json")
        assert error_of(stale)[:2] == (409, "stale_token")

        # The streamed outcome is exactly the JSON answer (an idempotent replay: one outcome event).
        session = {"sessionId": sid, "continuationToken": outcome["continuationToken"]}
        first = await turn(client, session, headers={**SSE, "Idempotency-Key": "k1"})
        (only,) = [e for e in parse_sse(first.text) if e[0] == "outcome"]
        replay = await turn(client, session, headers={**SSE, "Idempotency-Key": "k1"})
        assert replay.headers["Idempotent-Replayed"] == "true"
        assert [e for e in parse_sse(replay.text) if e[0] != ":"] == [only]
        plain = await turn(client, session, headers={"Idempotency-Key": "k1"})
        assert plain.content.decode() == only[1]


async def test_sse_keep_alive_while_waiting(migrated_url):
    async with running_server(test_settings(migrated_url, stream_heartbeat_s=0.2)) as live:
        async with live.client("tok-a") as client:
            await create_channel(client, "slow")
            session = await start(client, {"actions": [{"subscribe": {"channel": "slow"}}]})
            response = await turn(client, session, {"wait": 1}, headers=SSE)
            events = parse_sse(response.text)
            assert events[0] == (":", "keep-alive")
            assert sum(1 for e in events if e[0] == ":") >= 3
            kinds = [kind for kind, _ in events if kind != ":"]
            assert kinds == ["record", "outcome"]
            assert json.loads(events[-1][1])["status"] == "parked"


async def test_failpoint_fails_a_streamed_turn_without_rotating(migrated_url):
    settings = test_settings(migrated_url, failpoints=frozenset({"turn-after-stream-open"}), testing=True)
    async with running_server(settings) as live:
        async with live.client("tok-a") as client:
            session = await start(client)
            streamed = await turn(client, session, headers=SSE)
            assert streamed.status_code == 200
            events = [e for e in parse_sse(streamed.text) if e[0] != ":"]
            assert len(events) == 1 and events[0][0] == "error"
            assert json.loads(events[0][1]) == {
                "code": "internal_error",
                "message": "failpoint turn-after-stream-open",
            }
            # Not rotated: the same token still runs the turn.
            again = await turn(client, session)
            assert again.status_code == 200
            info = (await client.get(f"/v1/session/{session['sessionId']}")).json()
            assert info["turns"] == 2


async def _frames_until_outcome(ws) -> list[dict]:
    frames = []
    while True:
        frame = json.loads(await ws.get_message())
        frames.append(frame)
        if frame["type"] in ("outcome", "error"):
            return frames


async def test_websocket_turns(server):
    url = ws_url(server)
    async with server.client("tok-a") as client, server.client("tok-b") as bob:
        await create_channel(client, "live")
        async with open_websocket_url(url, extra_headers=AUTH_A) as ws:
            await ws.send_message(json.dumps({"actions": [{"subscribe": {"channel": "live"}}]}))
            frames = await _frames_until_outcome(ws)
            assert [f["type"] for f in frames] == ["record", "record", "outcome"]
            outcome = frames[-1]
            sid, token = outcome["sessionId"], outcome["continuationToken"]
            assert outcome["status"] == "finished"
            assert frames[0]["record"]["type"] == "session_started"

            # A waiting turn; a frame meanwhile is turn_in_flight and the socket stays open.
            await ws.send_message(json.dumps({"wait": 30}))
            with trio.fail_after(5):
                while (await client.get(f"/v1/session/{sid}")).json()["status"] != "in_turn":
                    await trio.sleep(0.01)
            await ws.send_message("{}")
            busy = json.loads(await ws.get_message())
            assert busy == {
                "type": "error",
                "code": "turn_in_flight",
                "message": "a turn is already in flight for this session",
            }
            posted = note("over ws")
            assert (await bob.post("/channels/live/append", json=posted)).status_code == 201
            frames = await _frames_until_outcome(ws)
            assert [f["type"] for f in frames] == ["record", "delta", "outcome"]
            assert frames[1]["delta"]["message"]["msg_id"] == posted["msg_id"]
            assert frames[2]["output"]["messages"] == [frames[1]["delta"]]
            token = frames[2]["continuationToken"]

            # Errors never close the socket.
            for raw, code in (
                ("not json", "invalid_request"),
                ("[1]", "invalid_request"),
                (json.dumps({"sessionId": f"ses_{ulid()}"}), "invalid_request"),
                (json.dumps({"continuationToken": "ct_old"}), "stale_token"),
                (json.dumps({"wait": -1}), "invalid_request"),
            ):
                await ws.send_message(raw)
                frame = json.loads(await ws.get_message())
                assert (frame["type"], frame["code"]) == ("error", code), raw

            # A REST turn rotates the token; the held connection still authorizes.
            rest = await turn(client, {"sessionId": sid, "continuationToken": token})
            assert rest.status_code == 200
            await ws.send_message("{}")
            frames = await _frames_until_outcome(ws)
            assert frames[-1]["type"] == "outcome"
            token = frames[-1]["continuationToken"]

        # Resume on a new connection; a token without sessionId is missing_session.
        async with open_websocket_url(url, subprotocols=["bearer", "tok-a"]) as ws:
            assert ws.subprotocol == "bearer"
            await ws.send_message(json.dumps({"continuationToken": token}))
            frame = json.loads(await ws.get_message())
            assert (frame["type"], frame["code"]) == ("error", "missing_session")
            await ws.send_message(json.dumps({"sessionId": sid, "continuationToken": token, "idempotencyKey": "w1"}))
            frames = await _frames_until_outcome(ws)
            assert frames[-1]["type"] == "outcome" and frames[-1]["sessionId"] == sid
            resumed = frames[-1]
        # The same frame again (lost outcome) replays: a single outcome frame.
        async with open_websocket_url(url, extra_headers=AUTH_A) as ws:
            await ws.send_message(json.dumps({"sessionId": sid, "continuationToken": token, "idempotencyKey": "w1"}))
            frame = json.loads(await ws.get_message())
            assert frame == resumed
            # Bob cannot bind alice's session.
        async with open_websocket_url(url, extra_headers=[("Authorization", "Bearer tok-b")]) as ws:
            await ws.send_message(json.dumps({"sessionId": sid, "continuationToken": resumed["continuationToken"]}))
            frame = json.loads(await ws.get_message())
            assert frame == {"type": "error", "code": "unknown_session", "message": f"unknown session '{sid}'"}

        with pytest.raises(ConnectionRejected) as rejected:
            async with open_websocket_url(url):
                pass
        assert rejected.value.status_code == 401

        async with open_websocket_url(url, extra_headers=AUTH_A) as ws:
            await ws.send_message("x" * (4 * 1024 * 1024 + 1))
            with pytest.raises(ConnectionClosed) as closed:
                await ws.get_message()
            assert closed.value.reason.code == 1009


async def test_websockets_off_is_426(migrated_url):
    async with running_server(test_settings(migrated_url, websockets=False)) as live:
        with pytest.raises(ConnectionRejected) as rejected:
            async with open_websocket_url(ws_url(live), extra_headers=AUTH_A):
                pass
        assert rejected.value.status_code == 426


async def test_lease_held_elsewhere_is_contended(server):
    async with server.client("tok-a") as client:
        session = await start(client)
        sid = session["sessionId"]
        now = server.clock.now()
        journal = server.backbone.journal
        base = await journal.last_seq(f"session:{sid}")
        assert await journal.take_lease(
            sid, holder="other-process", now=now, expires_at=now + 60, base_seq=base, holder_is_dead=lambda h: False
        ) == 1
        assert (await client.get(f"/v1/session/{sid}")).json()["status"] == "in_turn"
        response = await turn(client, session)
        assert response.status_code == 200
        assert response.headers["Retry-After"] == "1"
        assert response.json() == {
            "sessionId": sid,
            "status": "contended",
            "continuationToken": session["continuationToken"],
            "current": 2,
        }
        server.clock.advance(61_000)  # the other process died: its lease expires
        assert (await client.get(f"/v1/session/{sid}")).json()["status"] == "idle"
        assert (await turn(client, session)).status_code == 200


async def test_restart_keeps_sessions_and_shutdown_parks_waits(migrated_url):
    settings = test_settings(migrated_url)
    async with running_server(settings) as live:
        async with live.client("tok-a") as client:
            await create_channel(client, "durable")
            start_body = {"actions": [{"subscribe": {"channel": "durable"}}]}
            started = await client.post("/v1/session", json=start_body, headers={"Idempotency-Key": "s-1"})
            first = started.json()
            step = {"actions": [{"append": {"channel": "durable", "message": note("before")}}]}
            second = await turn(client, first, step, headers={"Idempotency-Key": "r-2"})
            assert second.status_code == 200
            waiting: list = []

            async def wait_turn() -> None:
                waiting.append(await turn(client, second.json(), {"wait": 60}))

            async with trio.open_nursery() as nursery:
                nursery.start_soon(wait_turn)
                with trio.fail_after(5):
                    while (await client.get(f"/v1/session/{first['sessionId']}")).json()["status"] != "in_turn":
                        await trio.sleep(0.01)
                with trio.fail_after(5):  # graceful shutdown ends the wait early
                    live.stop.set()
                    while not waiting:
                        await trio.sleep(0.01)
            parked = waiting[0]
            assert parked.status_code == 200 and parked.json()["status"] == "parked"
    async with running_server(settings) as live:
        async with live.client("tok-a") as client:
            sid = first["sessionId"]
            info = (await client.get(f"/v1/session/{sid}")).json()
            assert (info["turns"], info["status"], info["subscriptions"]) == (3, "idle", {"durable": 1})
            assert error_of(await turn(client, first))[:2] == (409, "stale_token")
            assert error_of(await turn(client, second.json()))[:2] == (409, "stale_token")
            # Turn 3 came after turn 2, so turn 2's key names an older turn: stale.
            replay = await turn(client, first, step, headers={"Idempotency-Key": "r-2"})
            assert error_of(replay)[:2] == (409, "stale_token")
            latest = await turn(client, parked.json(), headers={"Idempotency-Key": "r-4"})
            assert latest.status_code == 200
            again = await turn(client, parked.json(), headers={"Idempotency-Key": "r-4"})
            assert again.content == latest.content
    async with running_server(settings) as live:
        async with live.client("tok-a") as client:
            # Across a restart the replay is byte-identical, and the start key still finds the session.
            again = await turn(client, parked.json(), headers={"Idempotency-Key": "r-4"})
            assert again.content == latest.content
            assert again.headers["Idempotent-Replayed"] == "true"
            assert (await turn(client, latest.json())).status_code == 200
            restarted = await client.post("/v1/session", json=start_body, headers={"Idempotency-Key": "s-1"})
            assert restarted.content == started.content
