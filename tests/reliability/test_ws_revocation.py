"""A revoke or rotate reaches open WebSockets (issue 20 item 2, ADR-0022).

Against real ``parley serve`` subprocesses: the socket opened with the token
closes with 4401 "token revoked", no frame sent after the revoke is
committed, and across two processes on one Postgres database the same holds
once the revocation has propagated.
"""

from __future__ import annotations

import httpx
import orjson
import pytest
import trio
from trio_websocket import ConnectionClosed, open_websocket_url

from tests.support.messages import ulid
from tests.support.process import ADMIN, database, serve, sqlite_url

pytestmark = pytest.mark.reliability


def mint(server, agent: str = "agent-r") -> str:
    with server.client(ADMIN) as admin:
        r = admin.post("/admin/tokens", json={"agent_id": agent, "owner": "ops"})
        assert r.status_code == 201, r.text
        return r.json()["token"]


def admin_post(server, path: str, body: dict) -> dict:
    with server.client(ADMIN) as admin:
        r = admin.post(path, json=body)
        assert r.status_code in (200, 201), r.text
        return r.json()


def ws(server, path: str) -> str:
    return server.url.replace("http://", "ws://") + path


def append_frame(i: int) -> str:
    return orjson.dumps({"id": i, "append": {"type": "note", "body": f"n{i}", "msg_id": ulid()}}).decode()


async def close_code_after(socket, frame: str | None = None) -> int | None:
    """Optionally send ``frame``, then read until the server closes; the close code."""
    with trio.fail_after(5):
        try:
            if frame is not None:
                await socket.send_message(frame)
            while True:
                message = orjson.loads(await socket.get_message())
                assert message.get("type") != "ack", f"a frame after the revoke was committed: {message}"
        except ConnectionClosed as closed:
            return closed.reason.code


def stored_bodies(server, channel: str) -> list[str]:
    with server.client("tok-a") as reader:
        page = reader.post(f"/channels/{channel}/read", json={"cursor": 0}).json()
    return [m["body"] for m in page["messages"]]


@pytest.mark.parametrize("how", ["revoke", "rotate"])
async def test_a_revoked_token_closes_its_channel_websocket_with_4401(tmp_path, how):
    with serve(sqlite_url(tmp_path), tmp_path) as server:
        token = mint(server)
        with server.client("tok-a") as a:
            assert a.post("/channels", json={"channel": "rv"}).status_code == 201
        headers = [("Authorization", f"Bearer {token}")]
        async with open_websocket_url(ws(server, "/channels/rv/ws?tail=0"), extra_headers=headers) as socket:
            await socket.send_message(append_frame(1))
            with trio.fail_after(5):
                ack = orjson.loads(await socket.get_message())
            assert ack["type"] == "ack" and ack["status"] == 201
            if how == "revoke":
                assert admin_post(server, "/admin/tokens/revoke", {"agent_id": "agent-r"}) == {"revoked": True}
            else:
                admin_post(server, "/admin/tokens/rotate", {"agent_id": "agent-r", "owner": "ops"})
            code = await close_code_after(socket, append_frame(2))
        assert code == 4401
        assert stored_bodies(server, "rv") == ["n1"]


async def test_a_revoked_token_closes_its_session_websocket_with_4401(tmp_path):
    with serve(sqlite_url(tmp_path), tmp_path) as server:
        token = mint(server, "agent-s")
        with server.client("tok-a") as a:
            assert a.post("/channels", json={"channel": "sv"}).status_code == 201
        headers = [("Authorization", f"Bearer {token}")]
        async with open_websocket_url(ws(server, "/v1/ws"), extra_headers=headers) as socket:
            first = {"actions": [{"append": {"channel": "sv", "message": {"type": "note", "body": "t1", "msg_id": ulid()}}}]}
            await socket.send_message(orjson.dumps(first).decode())
            with trio.fail_after(5):
                while (frame := orjson.loads(await socket.get_message()))["type"] != "outcome":
                    pass
            assert admin_post(server, "/admin/tokens/revoke", {"agent_id": "agent-s"}) == {"revoked": True}
            second = {"actions": [{"append": {"channel": "sv", "message": {"type": "note", "body": "t2", "msg_id": ulid()}}}]}
            with trio.fail_after(5):
                try:
                    await socket.send_message(orjson.dumps(second).decode())
                    while True:
                        frame = orjson.loads(await socket.get_message())
                        assert frame["type"] != "outcome", f"a turn after the revoke ran: {frame}"
                except ConnectionClosed as closed:
                    code = closed.reason.code
        assert code == 4401
        assert stored_bodies(server, "sv") == ["t1"]


@pytest.mark.postgres
async def test_a_revoke_on_one_server_closes_a_websocket_on_another(tmp_path):
    with (
        database("postgres", tmp_path) as url,
        serve(url, tmp_path, PARLEY_READ_AUTH="token") as one,
        serve(url, tmp_path, PARLEY_READ_AUTH="token") as two,
    ):
        token = mint(one, "agent-x")
        with one.client("tok-a") as a:
            assert a.post("/channels", json={"channel": "xp"}).status_code == 201
        headers = [("Authorization", f"Bearer {token}")]
        # The minted token and the channel reach the second server through the journal.
        with trio.fail_after(5):
            while httpx.post(f"{two.url}/channels/xp/read", json={"cursor": 0},
                             headers={"Authorization": f"Bearer {token}"}).status_code != 200:
                await trio.sleep(0.02)
        async with open_websocket_url(ws(two, "/channels/xp/ws?tail=0"), extra_headers=headers) as socket:
            await socket.send_message(append_frame(1))
            with trio.fail_after(5):
                assert orjson.loads(await socket.get_message())["type"] == "ack"
            assert admin_post(one, "/admin/tokens/revoke", {"agent_id": "agent-x"}) == {"revoked": True}
            code = await close_code_after(socket)
        assert code == 4401
        assert stored_bodies(two, "xp") == ["n1"]
