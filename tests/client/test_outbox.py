"""The client outbox against a live in-process server: drain, refusals, retries, requeue, turns.

Every drain here is ``await box.drain(AsyncParley(...))`` (the server runs in
the same trio loop); the blocking ``Parley`` path is driven against
subprocess servers in tests/reliability/test_outbox_crash.py.
"""

from __future__ import annotations

import socket

import httpx
import pytest

from parley.client import Actions, AsyncParley, Outbox, OutboxStateError, new_ulid
from tests.client import Faulty, is_post
from tests.support.server import running_server, test_settings


@pytest.fixture
async def live(sqlite_url):
    async with running_server(test_settings(sqlite_url)) as server:
        yield server


@pytest.fixture
def box(tmp_path):
    with Outbox(tmp_path / "outbox.db", patience=10) as outbox:
        yield outbox


def _nobody_listening() -> str:
    """The URL of a loopback port that was free a moment ago (connections to it are refused)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{sock.getsockname()[1]}"


async def _messages(client: AsyncParley, channel: str) -> list[dict]:
    return [m for page in [p async for p in client.read_all(channel)] for m in page["messages"]]


async def test_drain_delivers_each_row_once_in_order_and_records_the_cursor(live, box):
    async with AsyncParley(live.url, "tok-a") as client:
        await client.create_channel("work")
        await client.create_channel("side")
        ids = [box.enqueue("work" if i % 2 else "side", {"body": f"m{i}"}) for i in range(6)]
        assert [r.state for r in box.rows()] == ["pending"] * 6
        result = await box.drain(client)
        assert result.delivered == ids and result.pending == 0 and not result.dead
        work = await _messages(client, "work")
        assert [m["msg_id"] for m in work] == ids[1::2]
        assert [m["body"] for m in work] == ["m1", "m3", "m5"]
        rows = {r.client_id: r for r in box.rows()}
        assert all(r.state == "done" and r.attempts == 1 and r.delivered_at for r in rows.values())
        assert [rows[i].cursor for i in ids[1::2]] == [1, 2, 3]
        # A second drain has nothing to do; re-enqueueing a delivered id returns its outcome.
        assert (await box.drain(client)).delivered == []
        again = box.accept("work", {"body": "m1", "msg_id": ids[1]})
        assert (again.outcome, again.cursor) == ("accepted_done", 1)


async def test_a_refused_message_goes_dead_with_the_wire_error_and_is_not_retried(live, box):
    async with AsyncParley(live.url, "tok-a") as client:
        await client.create_channel("work")
        bad = box.enqueue("work", {"type": "gossip", "body": "not a message type"})
        good = box.enqueue("work", {"body": "fine"})
        nowhere = box.enqueue("no-such-channel", {"body": "lost"})
        result = await box.drain(client)
        assert result.delivered == [good] and sorted(result.dead) == sorted([bad, nowhere])
        dead = box.get(bad)
        assert dead.state == "dead" and dead.attempts == 1
        assert (dead.error_status, dead.error_code) == (400, "invalid_message")
        assert dead.last_error.startswith("HTTP 400 invalid_message: ")
        assert box.get(nowhere).error_code == "unknown_channel"
        # Nothing is retried later: a new drain sends nothing.
        assert (await box.drain(client)).dead == []
        assert box.get(bad).attempts == 1
        # The operator fixes the cause and requeues: the same msg_id is delivered.
        await client.create_channel("no-such-channel")
        assert box.requeue(nowhere) == nowhere
        assert (await box.drain(client)).delivered == [nowhere]
        assert [m["msg_id"] for m in await _messages(client, "no-such-channel")] == [nowhere]


async def test_a_lost_answer_is_resent_with_the_same_key_and_stored_once(live, box):
    faulty = Faulty(is_post("/append"), mode="lose", times=2)
    async with AsyncParley(live.url, "tok-a", transport=faulty) as client:
        await client.create_channel("work")
        cid = box.enqueue("work", {"body": "once"})
        result = await box.drain(client)
        assert result.delivered == [cid]
        row = box.get(cid)
        assert row.attempts == 3 and row.response == {"cursor": 1, "replayed": True}
        assert row.last_error.startswith("transport_error")
        keys = {r.headers["idempotency-key"] for r in faulty.requests if r.url.path.endswith("/append")}
        assert keys == {row.idempotency_key}
        assert [m["msg_id"] for m in await _messages(client, "work")] == [cid]


async def test_503_with_retry_after_is_retried_then_delivered(live, box):
    faulty = Faulty(is_post("/append"), mode="unavailable", times=2)
    async with AsyncParley(live.url, "tok-a", transport=faulty) as client:
        await client.create_channel("work")
        cid = box.enqueue("work", {"body": "later"})
        assert (await box.drain(client)).delivered == [cid]
        assert box.get(cid).attempts == 3 and box.get(cid).error_status == 503


async def test_a_server_that_stays_down_leaves_rows_pending_after_patience(tmp_path):
    with Outbox(tmp_path / "o.db", patience=0.5) as box:
        cid = box.enqueue("work", {"body": "nobody home"})
        async with AsyncParley(_nobody_listening(), "tok-a") as client:
            result = await box.drain(client)
        assert (result.delivered, result.pending) == ([], 1)
        row = box.get(cid)
        assert row.state == "pending" and row.attempts >= 2 and row.error_code == "transport_error"


async def test_requeue_with_a_new_client_id_sends_a_new_row_and_aborts_the_old(live, box):
    async with AsyncParley(live.url, "tok-a") as client:
        await client.create_channel("work")
        taken = new_ulid()
        await client.append("work", {"body": "original", "msg_id": taken})
        cid = box.enqueue("work", {"body": "clashes", "msg_id": taken})
        assert (await box.drain(client)).dead == [cid]
        assert box.get(cid).error_code == "msg_id_conflict"
        fresh = new_ulid()
        assert box.requeue(cid, fresh) == fresh
        old, new = box.get(cid), box.get(fresh)
        assert (old.state, old.superseded_by, new.requeued_from) == ("aborted", fresh, cid)
        assert new.request["msg_id"] == fresh and new.idempotency_key != old.idempotency_key
        assert (await box.drain(client)).delivered == [fresh]
        assert [m["body"] for m in await _messages(client, "work")] == ["original", "clashes"]
        with pytest.raises(OutboxStateError, match=f"requeued as {fresh}"):
            box.requeue(cid)  # the old row must never come back beside its successor


async def test_abort_keeps_a_row_from_being_sent(live, box):
    async with AsyncParley(live.url, "tok-a") as client:
        await client.create_channel("work")
        dropped = box.enqueue("work", {"body": "never"})
        kept = box.enqueue("work", {"body": "sent"})
        assert box.abort(dropped).state == "aborted"
        assert (await box.drain(client)).delivered == [kept]
        assert [m["body"] for m in await _messages(client, "work")] == ["sent"]


async def test_deliver_sends_the_lane_up_to_the_row_or_reports_queued(live, box):
    async with AsyncParley(live.url, "tok-a") as client:
        await client.create_channel("work")
        first = box.enqueue("work", {"body": "first"})
        second = box.enqueue("work", {"body": "second"})
        delivery = await box.deliver(client, second)
        assert (delivery.outcome, delivery.row.cursor) == ("delivered", 2)
        assert box.get(first).state == "done"
    async with AsyncParley(_nobody_listening(), "tok-a") as down:
        third = box.enqueue("work", {"body": "third"})
        assert (await box.deliver(down, third)).outcome == "queued"
        assert box.get(third).state == "pending"


async def test_session_turns_chain_tokens_and_a_lost_answer_replays_the_same_turn(live, box):
    faulty = Faulty(is_post("/message"), mode="lose", times=1)
    async with AsyncParley(live.url, "tok-a", transport=faulty) as client:
        await client.create_channel("work")
        started = await client.start_session([Actions.subscribe("work", "start")])
        sid, token = started["sessionId"], started["continuationToken"]
        one = box.enqueue_turn(sid, token, {"actions": [Actions.append("work", body="turn one")]})
        two = box.enqueue_turn(sid, None, {"actions": [Actions.append("work", body="turn two")]})
        result = await box.drain(client)
        assert result.delivered == [one, two]
        assert box.get(one).attempts == 2  # the first answer was lost; the resend was replayed
        assert [m["body"] for m in await _messages(client, "work")] == ["turn one", "turn two"]
        info = await client.describe_session(sid)
        assert info["turns"] == 3
        assert box.continuation_token(sid) == box.get(two).response["continuationToken"]


class RateLimitedOnce(httpx.AsyncBaseTransport):
    """A real transport whose first append is answered 429 ``Retry-After: 1`` without reaching the server."""

    def __init__(self) -> None:
        self.inner = httpx.AsyncHTTPTransport()
        self.limited = False

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/append") and not self.limited:
            self.limited = True
            body = {"error": {"code": "rate_limited", "message": "slow down (injected)"}}
            return httpx.Response(429, headers={"Retry-After": "1"}, json=body)
        return await self.inner.handle_async_request(request)

    async def aclose(self) -> None:
        await self.inner.aclose()


async def test_429_is_retried_after_its_retry_after(live, box):
    retried = []
    async with AsyncParley(live.url, "tok-a", transport=RateLimitedOnce()) as client:
        await client.create_channel("work")
        cid = box.enqueue("work", {"body": "patient"})
        assert (await box.drain(client, on_retry=retried.append)).delivered == [cid]
    [row] = retried
    assert (row.state, row.error_status, row.error_code) == ("pending", 429, "rate_limited")
    assert row.next_attempt_at - row.last_attempt_at >= 1.0  # the server's Retry-After, not the 0.1 s backoff
    assert box.get(cid).attempts == 2


@pytest.mark.parametrize(
    ("status", "code", "kind"),
    [
        (400, "invalid_message", "dead"),
        (401, "unauthorized", "dead"),
        (403, "forbidden", "dead"),
        (404, "unknown_channel", "dead"),
        (409, "msg_id_conflict", "dead"),
        (409, "stale_token", "dead"),
        (409, "turn_in_flight", "retry"),
        (413, "payload_too_large", "dead"),
        (408, "http_error", "retry"),
        (429, "rate_limited", "retry"),
        (500, "internal_error", "retry"),
        (502, "http_error", "retry"),
        (503, "unavailable", "retry"),
    ],
)
def test_verdict_retries_timing_failures_and_kills_every_other_refusal(status, code, kind):
    from parley.client._errors import build_error
    from parley.client._outbox_rules import verdict

    found = verdict(status, build_error(code, "m", status=status), 2.0)
    assert (found.kind, found.code, found.status, found.delay) == (kind, code, status, 2.0)
    assert found.error == f"HTTP {status} {code}: m"
