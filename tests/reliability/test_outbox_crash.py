"""The outbox survives real crashes: kill -9 of the draining client, kill -9 of parley, an outage, 8 writers.

Servers are ``parley serve`` subprocesses on one SQLite file; the draining
client is :mod:`tests.reliability.outbox_child`, killed after a handshake
line (never after a sleep). After every scenario each channel is read back
over HTTP: every enqueued ``msg_id`` exactly once, in enqueue order.
``PARLEY_LONG_TESTS=1`` stretches the outage from 2 s to 10 s.
"""

from __future__ import annotations

import os
import time
from collections import Counter

import pytest

from parley.client import Outbox, Parley, new_ulid
from tests.support.outbox import (
    CHANNELS,
    FAST,
    assert_exactly_once_in_order,
    fill,
    kill9,
    outbox_child,
    read_until,
)
from tests.support.process import serve, sqlite_url, start_server

pytestmark = pytest.mark.reliability

LONG = os.environ.get("PARLEY_LONG_TESTS") == "1"
OUTAGE_S = 10.0 if LONG else 2.0


@pytest.mark.parametrize("when", ["before", "after"])
def test_a_client_killed_mid_drain_resumes_and_delivers_each_message_once(tmp_path, when):
    with serve(sqlite_url(tmp_path), tmp_path, **FAST) as server, Outbox(tmp_path / "outbox.db") as box:
        expected = fill(server.url, box, per_channel=5)
        child = outbox_child("drain", str(box.path), server.url, "tok-a", "--hold", when, "4")
        lines = read_until(child, lambda seen: seen[-1] == "held")
        kill9(child)
        assert sum(line.startswith("settled done") for line in lines) == 3
        orphan = [r for r in box.rows() if r.state == "inflight"]
        assert len(orphan) == 1 and orphan[0].attempts == 1

        with Parley(server.url, "tok-a") as client:
            result = box.drain(client)
        assert result.pending == 0 and not result.dead
        assert Counter(r.state for r in box.rows()) == {"done": 10}
        replayed = box.get(orphan[0].client_id).response["replayed"]
        assert replayed is (when == "after")  # the server had committed it: the resend was a replay
        assert_exactly_once_in_order(server.url, expected)


def test_parley_killed_and_restarted_mid_drain_loses_and_duplicates_nothing(tmp_path):
    url = sqlite_url(tmp_path)
    server = start_server(url, tmp_path, **FAST)
    try:
        with Outbox(tmp_path / "outbox.db") as box:
            expected = fill(server.url, box, per_channel=15)
        child = outbox_child("drain", str(tmp_path / "outbox.db"), server.url, "tok-a")
        read_until(child, lambda seen: sum(line.startswith("settled done") for line in seen) >= 6)
        server.kill9()
        port = server.url.rsplit(":", 1)[1]
        server.close()
        server = start_server(url, tmp_path, PORT=port, **FAST)
        out, err = child.communicate(timeout=60)
        assert child.returncode == 0, err[-2000:]
        assert "result delivered=" in out and "pending=0" in out and "dead=0" in out
        assert_exactly_once_in_order(server.url, expected)
        with Outbox(tmp_path / "outbox.db") as box:
            assert {r.state for r in box.rows()} == {"done"}
    finally:
        server.close()


def test_posts_made_during_an_outage_queue_up_and_drain_in_order_when_parley_returns(tmp_path):
    url = sqlite_url(tmp_path)
    server = start_server(url, tmp_path, **FAST)
    try:
        with Outbox(tmp_path / "outbox.db") as box:
            with Parley(server.url, "tok-a") as client:
                for channel in CHANNELS:
                    client.create_channel(channel)
            port = server.url.rsplit(":", 1)[1]
            server.kill9()
            server.close()
            expected = {c: [box.enqueue(c, {"body": f"{c} {i}"}) for i in range(8)] for c in CHANNELS}
            down_at = time.monotonic()
            child = outbox_child("drain", str(box.path), server.url, "tok-a")
            read_until(child, lambda seen: seen[-1].startswith("retry transport_error "))  # it tried and failed
            assert all(r.state in ("pending", "inflight") for r in box.rows())
            time.sleep(max(0.0, OUTAGE_S - (time.monotonic() - down_at)))  # the outage itself
            server = start_server(url, tmp_path, PORT=port, **FAST)
            out, err = child.communicate(timeout=60)
            assert child.returncode == 0, err[-2000:]
            assert_exactly_once_in_order(server.url, expected)
            rows = box.rows()
            assert all(r.state == "done" for r in rows)
            assert max(r.attempts for r in rows) >= 2 and all(r.delivered_at > down_at + OUTAGE_S for r in rows)
    finally:
        server.close()


def test_eight_processes_enqueue_into_one_file_without_losing_or_duplicating_a_row(tmp_path):
    path = tmp_path / "fresh" / "outbox.db"  # created by the racing writers themselves
    shared = new_ulid()
    children = [outbox_child("enqueue", str(path), "work", f"w{n}", "40", shared) for n in range(8)]
    for child in children:
        child.stdin.write("go\n")
        child.stdin.flush()
    outputs = [child.communicate(timeout=120) for child in children]
    assert [child.returncode for child in children] == [0] * 8, [err[-500:] for _, err in outputs]
    ids = [[line.split()[1] for line in out.splitlines() if line.startswith("id ")] for out, _ in outputs]
    shared_outcomes = Counter(line.split()[1] for out, _ in outputs for line in out.splitlines() if line.startswith("shared "))
    with Outbox(path) as box:
        rows = box.rows()
    assert len(rows) == 8 * 40 + 1 and len({r.client_id for r in rows}) == len(rows)
    by_id = {r.client_id: r for r in rows}
    for n, written in enumerate(ids):
        assert len(written) == 40
        assert [by_id[cid].request["body"] for cid in written] == [f"w{n}-{i}" for i in range(40)]
        seqs = [by_id[cid].seq for cid in written]
        assert seqs == sorted(seqs)  # each writer's rows keep its order
    assert shared_outcomes == {"accepted_pending": 8}  # one row, seen as the same pending row by all eight
    assert Counter(r.client_id for r in rows)[shared] == 1


def test_a_client_killed_between_a_turn_and_its_answer_resumes_the_same_turn(tmp_path):
    from parley.client import Actions

    with serve(sqlite_url(tmp_path), tmp_path, **FAST) as server, Outbox(tmp_path / "outbox.db") as box:
        with Parley(server.url, "tok-a") as client:
            client.create_channel("alpha")
            started = client.start_session([Actions.subscribe("alpha", "start")])
        sid = started["sessionId"]
        one = box.enqueue_turn(sid, started["continuationToken"], {"actions": [Actions.append("alpha", body="one")]})
        two = box.enqueue_turn(sid, None, {"actions": [Actions.append("alpha", body="two")]})
        child = outbox_child("drain", str(box.path), server.url, "tok-a", "--hold", "after", "1")
        read_until(child, lambda seen: seen[-1] == "held")
        kill9(child)
        assert box.get(one).state == "inflight"  # the server committed turn one; the client never heard

        with Parley(server.url, "tok-a") as client:
            assert box.drain(client).delivered == [one, two]
            assert [m["body"] for p in client.read_all("alpha") for m in p["messages"]] == ["one", "two"]
            assert client.describe_session(sid)["turns"] == 3
            token = box.continuation_token(sid)
            assert client.continue_session(sid, token)["status"] == "finished"  # the chain is intact
