"""Two servers on one database: any process continues any session; one commit per token."""

from __future__ import annotations

import trio

from tests.api.test_sessions_helpers import create_channel, error_of, note, start, turn
from tests.support.server import running_server, test_settings


async def test_two_servers_share_sessions(migrated_url):
    settings = test_settings(migrated_url)
    async with running_server(settings) as one, running_server(settings) as two:
        assert one.backbone.sessions.secret == two.backbone.sessions.secret  # generated once, stored
        async with one.client("tok-a") as a, two.client("tok-a") as b:
            await create_channel(a, "shared")
            session = await start(a, {"actions": [{"subscribe": {"channel": "shared"}}]})
            sid = session["sessionId"]
            # Continue on the other process, then back on the first (its cached state is old).
            moved = await turn(b, session, {"actions": [{"append": {"channel": "shared", "message": note("from two")}}]})
            assert moved.status_code == 200, moved.text
            back = await turn(a, moved.json())
            assert back.status_code == 200, back.text
            assert error_of(await turn(b, moved.json()))[:2] == (409, "stale_token")
            assert (await b.get(f"/v1/session/{sid}")).json()["turns"] == 3

            # The same token on both processes at once: exactly one commits.
            current = back.json()
            responses = []

            async def go(client) -> None:
                responses.append(await turn(client, current))

            async with trio.open_nursery() as nursery:
                for client in (a, b, a, b, a, b):
                    nursery.start_soon(go, client)
            committed = [r for r in responses if r.status_code == 200 and r.json()["status"] != "contended"]
            assert len(committed) == 1, [r.text for r in responses]
            for r in responses:
                if r.status_code == 200 and r.json()["status"] == "contended":
                    assert r.json()["continuationToken"] == current["continuationToken"]
                    assert r.headers["Retry-After"] == "1"
                elif r not in committed:
                    assert r.json()["error"]["code"] in ("turn_in_flight", "stale_token")
            assert (await a.get(f"/v1/session/{sid}")).json()["turns"] == 4
            # Close on one process; the other answers 404 afterwards.
            token = committed[0].json()["continuationToken"]
            closed = await b.request("DELETE", f"/v1/session/{sid}", json={"continuationToken": token})
            assert closed.status_code == 200
            with trio.fail_after(5):  # the first process learns it from the journal
                while (await a.get(f"/v1/session/{sid}")).status_code != 404:
                    await trio.sleep(0.02)


async def test_passivated_session_comes_back_from_its_snapshot(migrated_url):
    async with running_server(test_settings(migrated_url, actor_idle_s=0.2)) as live:
        sessions = live.backbone.sessions
        async with live.client("tok-a") as client:
            await create_channel(client, "snap")
            session = await start(client, {"actions": [{"subscribe": {"channel": "snap", "from": "start"}}]})
            sid = session["sessionId"]
            latest = (await turn(client, session, {"actions": [{"append": {"channel": "snap", "message": note("x")}}]})).json()
            before = (await client.get(f"/v1/session/{sid}")).json()
            with trio.fail_after(5):  # idle passivation saves a snapshot
                while (snapshot := await live.backbone.journal.load_snapshot(f"session:{sid}")) is None:
                    await trio.sleep(0.05)
                while sessions.registry.is_active(sid):
                    await trio.sleep(0.05)
            assert snapshot.seq == 3
            assert (await client.get(f"/v1/session/{sid}")).json() == before
            assert error_of(await turn(client, session))[:2] == (409, "stale_token")
            assert (await turn(client, latest)).status_code == 200
