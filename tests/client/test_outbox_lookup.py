"""The §4.5.1 lookup table on the client: one test per (row state × fingerprint match) cell.

Rows are put in each state through the outbox's own store on a real SQLite
file (no server is needed to decide an enqueue); the fingerprint unit tests
pin which fields count.
"""

from __future__ import annotations

import pytest

from parley.client import Outbox, OutboxConflict, new_ulid
from parley.client._outbox_rules import fingerprint

SAME = {"body": "the request"}
OTHER = {"body": "a different request"}


@pytest.fixture
def box(tmp_path):
    with Outbox(tmp_path / "outbox.db") as outbox:
        yield outbox


def _row_in(box: Outbox, state: str) -> str:
    cid = box.enqueue("work", {**SAME, "msg_id": new_ulid()})
    store = box.store
    if state in ("inflight", "done", "dead"):
        store.mark_inflight(cid)
    if state == "done":
        store.mark_done(cid, 7, {"cursor": 7, "replayed": False})
    if state == "dead":
        store.mark_dead(cid, "HTTP 400 invalid_message: nope", "invalid_message", 400)
    if state == "aborted":
        box.abort(cid)
    assert box.get(cid).state == state
    return cid


def test_a_new_client_id_is_accepted_pending(box):
    cid = new_ulid()
    accepted = box.accept("work", {**SAME, "msg_id": cid})
    assert (accepted.client_id, accepted.outcome, accepted.row.state) == (cid, "accepted_pending", "pending")


def test_pending_same_fingerprint_returns_the_pending_row(box):
    cid = _row_in(box, "pending")
    accepted = box.accept("work", {**SAME, "msg_id": cid})
    assert (accepted.outcome, accepted.client_id) == ("accepted_pending", cid)
    assert len(box.rows()) == 1


def test_inflight_same_fingerprint_returns_the_inflight_row(box):
    cid = _row_in(box, "inflight")
    assert box.accept("work", {**SAME, "msg_id": cid}).outcome == "accepted_inflight"
    assert len(box.rows()) == 1


def test_done_same_fingerprint_returns_the_delivered_outcome(box):
    cid = _row_in(box, "done")
    accepted = box.accept("work", {**SAME, "msg_id": cid})
    assert (accepted.outcome, accepted.cursor) == ("accepted_done", 7)


def test_dead_same_fingerprint_is_a_conflict_carrying_the_wire_error(box):
    cid = _row_in(box, "dead")
    with pytest.raises(OutboxConflict) as excinfo:
        box.accept("work", {**SAME, "msg_id": cid})
    assert excinfo.value.reason == "outbox_dead_fingerprint_match"
    assert "invalid_message: nope" in excinfo.value.message and "requeue" in excinfo.value.message


def test_aborted_same_fingerprint_is_a_conflict(box):
    cid = _row_in(box, "aborted")
    with pytest.raises(OutboxConflict) as excinfo:
        box.accept("work", {**SAME, "msg_id": cid})
    assert excinfo.value.reason == "outbox_aborted_fingerprint_match"


@pytest.mark.parametrize("state", ["pending", "inflight", "done", "dead", "aborted"])
def test_a_different_fingerprint_is_a_conflict_naming_the_fingerprint_prefix(box, state):
    cid = _row_in(box, state)
    before = box.get(cid)
    with pytest.raises(OutboxConflict) as excinfo:
        box.accept("work", {**OTHER, "msg_id": cid})
    error = excinfo.value
    offered = fingerprint("append", "channel:work", {"type": "note", **OTHER})
    assert (error.reason, error.status, error.code) == (f"outbox_{state}_fingerprint_mismatch", 409, "outbox_conflict")
    assert error.fingerprint_prefix == offered[:16] and offered[:16] in error.message
    assert box.get(cid) == before  # the stored row is untouched


def test_the_same_id_on_another_channel_is_a_different_request(box):
    cid = _row_in(box, "pending")
    with pytest.raises(OutboxConflict):
        box.accept("elsewhere", {**SAME, "msg_id": cid})


def test_fingerprint_ignores_the_id_and_the_fields_the_server_stamps():
    base = fingerprint("append", "channel:work", {"type": "note", "body": "x"})
    stamped = {"type": "note", "body": "x", "msg_id": new_ulid(), "v": 1, "ts": "now", "agent_id": "a", "owner": "o"}
    assert fingerprint("append", "channel:work", stamped) == base
    assert fingerprint("append", "channel:work", {"type": "note", "body": "x", "to": ["bob"]}) != base
    assert fingerprint("append", "channel:work", {"type": "finding", "body": "x"}) != base
    assert fingerprint("append", "channel:other", {"type": "note", "body": "x"}) != base


def test_type_defaults_to_note_before_fingerprinting(box):
    cid = box.enqueue("work", {"body": "x", "msg_id": new_ulid()})
    assert box.accept("work", {"type": "note", "body": "x", "msg_id": cid}).outcome == "accepted_pending"
