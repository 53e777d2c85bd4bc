"""Every typed error comes back from a real server as the class of parley.errors."""

from __future__ import annotations

import pytest

import parley.client as pc
import parley.errors as pe
from parley.client import AsyncParley
from tests.support.server import running_server, test_settings


def test_the_client_error_classes_are_the_server_classes():
    for cls in pe.ERROR_CLASSES:
        assert getattr(pc, cls.__name__) is cls
    for code, status in pe.STATUS_BY_CODE.items():
        error = pc.build_error(code, "m", status=status)
        assert type(error) is pe.error_class_for(code)
        assert (error.code, error.status, error.message) == (code, status, "m")
    unknown = pc.error_from_response(418, b'{"error":{"code":"teapot","message":"short and stout"}}')
    assert type(unknown) is pe.ParleyError and unknown.code == "teapot" and unknown.status == 418
    garbled = pc.error_from_response(502, b"<html>bad gateway</html>", {"retry-after": "7"})
    assert garbled.code == "http_error" and garbled.message == "parley HTTP 502" and garbled.retry_after == 7


def check(excinfo, cls, status: int, message: str | None = None) -> pe.ParleyError:
    error = excinfo.value
    assert type(error) is cls
    assert isinstance(error, pc.ParleyError)
    assert error.code == cls.code and error.status == status == cls.status
    if message is not None:
        assert error.message == message
    return error


async def test_typed_errors_from_a_live_server(server):
    async with AsyncParley(server.url, "tok-a") as alice, AsyncParley(server.url, "tok-b") as bob, AsyncParley(
        server.url
    ) as anon, AsyncParley(server.url, "not-a-token") as forged:
        await alice.create_channel("errs", purpose="typed errors")

        with pytest.raises(pc.ChannelExists) as excinfo:
            await alice.create_channel("errs")
        check(excinfo, pe.ChannelExists, 409, 'Channel already exists: "errs"')

        with pytest.raises(pc.InvalidChannelName) as excinfo:
            await alice.create_channel("Not A Slug")
        check(excinfo, pe.InvalidChannelName, 400)

        with pytest.raises(pc.UnknownChannel) as excinfo:
            await anon.describe("nowhere")
        check(excinfo, pe.UnknownChannel, 404, 'Unknown channel: "nowhere"')
        with pytest.raises(pc.UnknownChannel):
            await alice.append("nowhere", body="x")

        with pytest.raises(pc.InvalidMessage) as excinfo:
            await alice.append("errs", {"type": "gossip", "body": "", "colour": "red"})
        error = check(excinfo, pe.InvalidMessage, 400)
        assert error.issues == [
            'unknown field "colour"',
            "type must be one of finding, claim, status, question, answer, note, steer",
            "body must be a non-empty string",
        ]
        assert error.message == "Invalid message: " + "; ".join(error.issues)

        for client in (anon, forged):
            with pytest.raises(pc.Unauthorized) as excinfo:
                await client.append("errs", body="who am I")
            check(excinfo, pe.Unauthorized, 401, "missing or invalid token")

        first = await alice.append("errs", body="hello")
        with pytest.raises(pc.MsgIdConflict) as excinfo:
            await alice.append("errs", body="other", msg_id=first["message"]["msg_id"])
        check(excinfo, pe.MsgIdConflict, 409)

        with pytest.raises(pc.DuplicatePost) as excinfo:
            await alice.append("errs", body="hello")
        check(excinfo, pe.DuplicatePost, 409, pe.DuplicatePost.default_message)

        with pytest.raises(pc.InvalidCursor) as excinfo:
            await anon.read("errs", cursor=5)
        check(excinfo, pe.InvalidCursor, 400)

        with pytest.raises(pc.ArtifactIntegrity) as excinfo:
            await alice.put_artifact("errs", b"bytes", sha256="0" * 64)
        check(excinfo, pe.ArtifactIntegrity, 400, pe.ArtifactIntegrity.default_message)
        assert await anon.get_artifact("errs", "0" * 64) is None  # 404 not_found → None

        with pytest.raises(pc.IdempotencyConflict) as excinfo:
            for body in ("one", "two"):
                await alice.request(
                    "POST", "/channels/errs/append", json={"type": "note", "body": body, "msg_id": pc.new_ulid()},
                    idempotency_key="same-key",
                )
        check(excinfo, pe.IdempotencyConflict, 409)

        with pytest.raises(pc.NotFound) as excinfo:
            await alice.request("POST", "/channels/errs/frobnicate", json={})
        check(excinfo, pe.NotFound, 404, "no such route")
        with pytest.raises(pc.MethodNotAllowed) as excinfo:
            await alice.request("DELETE", "/channels")
        check(excinfo, pe.MethodNotAllowed, 405, "method not allowed")
        with pytest.raises(pc.InvalidRequest) as excinfo:
            await alice.request("POST", "/channels/errs/append", json=[1])
        check(excinfo, pe.InvalidRequest, 400, "request body must be a JSON object")
        with pytest.raises(pc.InvalidJson) as excinfo:
            await alice.request("POST", "/channels/errs/read", content=b"{nope")
        check(excinfo, pe.InvalidJson, 400, "request body is not valid JSON")
        with pytest.raises(pc.PayloadTooLarge) as excinfo:
            await alice.request("POST", "/channels/errs/read", content=b" " * 300_000)
        check(excinfo, pe.PayloadTooLarge, 413, "request body too large")

        with pytest.raises(pc.Forbidden) as excinfo:
            await bob.archive("errs")
        check(excinfo, pe.Forbidden, 403)
        assert (await alice.archive("errs"))["archived"] is True
        with pytest.raises(pc.ChannelArchived) as excinfo:
            await alice.append("errs", body="too late")
        check(excinfo, pe.ChannelArchived, 409)

        with pytest.raises(pc.Unauthorized):
            await alice.mint("x", "y")  # a write token is never an admin token


async def test_caps_rate_limit_and_capacity_errors(migrated_url):
    settings = test_settings(
        migrated_url, max_posts_per_minute=1, max_messages_per_channel=2, max_channels=1, max_streams=0
    )
    async with running_server(settings) as server:
        async with AsyncParley(server.url, "tok-a", max_retry_wait=0.5) as alice, AsyncParley(
            server.url, "tok-b"
        ) as bob, AsyncParley(server.url, "tok-c") as carol:
            await alice.create_channel("capped")
            with pytest.raises(pc.ChannelLimit) as excinfo:
                await alice.create_channel("another")
            check(excinfo, pe.ChannelLimit, 409, "Channel limit reached: at most 1 channels")

            await alice.append("capped", body="one")
            with pytest.raises(pc.RateLimited) as excinfo:
                await alice.append("capped", body="two")
            error = check(excinfo, pe.RateLimited, 429)
            assert error.retry_after == 60  # from the Retry-After header (ManualClock: a full window)
            assert "at most 1 posts/min per agent" in error.message and "Wait ~60s" in error.message

            await bob.append("capped", body="two")
            with pytest.raises(pc.ChannelFull) as excinfo:
                await carol.append("capped", body="three")
            check(
                excinfo,
                pe.ChannelFull,
                409,
                'Channel is full: "capped" holds at most 2 messages. Start a fresh channel to continue.',
            )

            with pytest.raises(pc.StreamCapacity) as excinfo:
                async with alice.tail("capped", since=0) as tail:
                    async for _ in tail:
                        pass
            error = check(excinfo, pe.StreamCapacity, 503, "too many concurrent streams; retry shortly")
            assert error.retry_after == 1
