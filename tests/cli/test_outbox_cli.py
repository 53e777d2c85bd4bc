"""``parley outbox list|requeue|abort`` on a real outbox file (the drain command: tests/reliability/test_outbox_crash.py)."""

from __future__ import annotations

import json

import pytest

from parley.client import Outbox, new_ulid
from tests.support.outbox import FAST, assert_exactly_once_in_order, fill
from tests.support.process import clean_env, run_cli, serve, sqlite_url


@pytest.fixture
def filled(tmp_path):
    path = tmp_path / "outbox.db"
    with Outbox(path) as box:
        pending = box.enqueue("work", {"body": "waiting"})
        dead = box.enqueue("work", {"body": "refused"})
        box.store.mark_inflight(dead)
        box.store.mark_dead(dead, "HTTP 404 unknown_channel: Unknown channel", "unknown_channel", 404)
        turn = box.enqueue_turn("S1", "secret-token", {"actions": []})
    return path, {"pending": pending, "dead": dead, "turn": turn}


def _cli(args, path, cwd):
    return run_cli(["outbox", *args], clean_env(PARLEY_OUTBOX=str(path)), cwd)


def test_list_filters_by_state_and_prints_json_without_secrets(filled, tmp_path):
    path, ids = filled
    everything = _cli(["list"], path, tmp_path)
    assert everything.returncode == 0 and len(everything.stdout.splitlines()) == 3
    dead = _cli(["list", "--dead"], path, tmp_path)
    assert dead.stdout.split()[:2] == [ids["dead"], "dead"] and "unknown_channel" in dead.stdout
    both = _cli(["list", "--pending", "--dead", "--json"], path, tmp_path)
    rows = [json.loads(line) for line in both.stdout.splitlines()]
    assert [(r["client_id"], r["state"]) for r in rows] == [
        (ids["pending"], "pending"), (ids["dead"], "dead"), (ids["turn"], "pending")
    ]
    assert {"created_at", "attempts", "last_error", "delivered_at"} <= set(rows[0])
    assert "secret-token" not in both.stdout and "secret" not in rows[2]
    assert _cli(["list", "--done"], path, tmp_path).stderr.strip() == "(no rows)"


def test_requeue_and_abort_and_their_refusals(filled, tmp_path):
    path, ids = filled
    refused = _cli(["requeue", ids["pending"]], path, tmp_path)
    assert refused.returncode == 1
    assert refused.stderr.strip() == (
        f"parley outbox: row {ids['pending']} is pending; only dead or aborted rows can be requeued"
    )
    not_ulid = _cli(["requeue", ids["dead"], "--new-client-id", "nope"], path, tmp_path)
    assert not_ulid.returncode == 1 and "is not a ULID" in not_ulid.stderr
    fresh = new_ulid()
    moved = _cli(["requeue", ids["dead"], "--new-client-id", fresh], path, tmp_path)
    assert (moved.returncode, moved.stdout.strip()) == (0, f"{fresh} pending")
    assert _cli(["abort", ids["pending"]], path, tmp_path).stdout.strip() == f"{ids['pending']} aborted"
    unknown = _cli(["abort", "NOPE"], path, tmp_path)
    assert unknown.returncode == 1 and unknown.stderr.strip().startswith("parley outbox: no row NOPE in the outbox")
    with Outbox(path) as box:
        states = {r.client_id: r.state for r in box.rows()}
    assert states == {ids["pending"]: "aborted", ids["dead"]: "aborted", ids["turn"]: "pending", fresh: "pending"}


def test_a_missing_path_or_a_file_that_is_not_an_outbox_is_one_line(tmp_path):
    missing = run_cli(["outbox", "list"], clean_env(), tmp_path)
    assert missing.returncode == 2 and "PARLEY_OUTBOX" in missing.stderr and "Traceback" not in missing.stderr
    junk = tmp_path / "junk.db"
    junk.write_bytes(b"this is not sqlite" * 100)
    bad = _cli(["list"], junk, tmp_path)
    assert bad.returncode == 1 and "Traceback" not in bad.stderr
    assert bad.stderr.startswith(f"parley outbox: cannot use the outbox {junk}: ") and len(bad.stderr.splitlines()) == 1


def test_the_drain_cli_delivers_and_lists(tmp_path):
    with serve(sqlite_url(tmp_path), tmp_path, **FAST) as server, Outbox(tmp_path / "outbox.db") as box:
        expected = fill(server.url, box, per_channel=2)
        bad = box.enqueue("alpha", {"body": "", "msg_id": new_ulid()})
        env = clean_env(PARLEY_OUTBOX=str(box.path), PARLEY_URL=server.url, PARLEY_TOKEN="tok-a")
        drained = run_cli(["outbox", "drain"], env, tmp_path)
        assert drained.returncode == 2, drained.stderr  # one row went dead
        assert "delivered 4, dead 1, pending 0" in drained.stderr
        assert_exactly_once_in_order(server.url, expected)
        listed = run_cli(["outbox", "list", "--dead"], env, tmp_path)
        assert listed.returncode == 0 and bad in listed.stdout and "invalid_message" in listed.stdout
        assert len(listed.stdout.splitlines()) == 1
        missing = run_cli(["outbox", "drain"], clean_env(PARLEY_OUTBOX=str(box.path)), tmp_path)
        assert missing.returncode == 1 and missing.stderr.strip() == "parley outbox: no token: pass --token or set PARLEY_TOKEN"
