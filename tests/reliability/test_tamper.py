"""Tampering outside the event chain (issue 20, item 5; ADR-0023), against real servers.

The attacker writes the database directly (one SQL statement from this test)
while the server is stopped. Each test shows what a real ``parley serve``
then serves and what ``parley journal verify`` reports.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
import sqlalchemy as sa

from parley.journal.engine import make_engine
from parley.journal.store import compute_hash
from tests.support.messages import ulid
from tests.support.process import clean_env, database, run_cli, serve

pytestmark = pytest.mark.reliability

BACKENDS = ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]
BLOB = b"the real artifact\n" * 20
SHA = hashlib.sha256(BLOB).hexdigest()


def sql(url: str, statement: str, **params) -> int:
    """The attack: one statement straight into the database; rows touched."""
    engine = make_engine(url)
    try:
        with engine.begin() as conn:
            return conn.execute(sa.text(statement), params).rowcount
    finally:
        engine.dispose()


def scalar(url: str, statement: str, **params):
    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            return conn.execute(sa.text(statement), params).scalar()
    finally:
        engine.dispose()


def verify(url: str, cwd: Path, *args: str):
    return run_cli(["journal", "verify", "--database-url", url, *args], clean_env(), cwd)


def damaged(result) -> str:
    """A failed verify: exit 1, one stderr line (the first problem); the whole report."""
    assert result.returncode == 1, result.stdout + result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert result.stderr.startswith("parley: ")
    return result.stdout + result.stderr


def seed(url: str, cwd: Path) -> None:
    """A channel with two messages and an artifact; a clean stop saves its snapshot."""
    with serve(url, cwd) as server, server.client("tok-a") as a:
        assert a.post("/channels", json={"channel": "ops"}).status_code == 201
        for body in ("deploy at noon", "all clear"):
            assert a.post("/channels/ops/append", json={"type": "note", "body": body, "msg_id": ulid()}).status_code == 201
        assert a.put(f"/channels/ops/artifacts/{SHA}", content=BLOB).status_code == 201
        assert a.post("/channels", json={"channel": "other"}).status_code == 201
        assert server.terminate() == 0
    assert scalar(url, "SELECT count(*) FROM snapshots WHERE stream_id = 'channel:ops'") == 1


@pytest.mark.parametrize("kind", BACKENDS)
def test_a_forged_snapshot_is_refused_by_the_server_and_found_by_verify(kind, tmp_path):
    with database(kind, tmp_path) as url:
        seed(url, tmp_path)
        assert verify(url, tmp_path).returncode == 0
        # One UPDATE: the first message now says something else, from someone else.
        touched = sql(
            url,
            "UPDATE snapshots SET data = replace(replace(data, 'deploy at noon', 'wire the funds'), "
            "'\"owner\":\"alice\"', '\"owner\":\"mallory\"') WHERE stream_id = 'channel:ops'",
        )
        assert touched == 1
        result = verify(url, tmp_path)
        assert result.returncode == 1
        assert "snapshot of 'channel:ops'" in damaged(result)
        with serve(url, tmp_path) as server, server.client("tok-a") as a:
            messages = a.post("/channels/ops/read", json={"cursor": 0}).json()["messages"]
            assert [(m["body"], m["owner"]) for m in messages] == [("deploy at noon", "alice"), ("all clear", "alice")]
            metrics = a.get("/metrics").text
            assert 'parley_integrity_failures_total{kind="snapshot"} 1.0' in metrics
            assert server.terminate() == 0
        assert "refusing the snapshot of channel:ops: its digest does not match its data" in server.stderr()


@pytest.mark.parametrize("kind", BACKENDS)
def test_a_session_snapshot_handed_to_another_owner_is_refused(kind, tmp_path):
    with database(kind, tmp_path) as url:
        with serve(url, tmp_path) as server, server.client("tok-a") as a:
            sid = a.post("/v1/session", json={}).json()["sessionId"]
            assert server.terminate() == 0
        stream = f"session:{sid}"
        assert scalar(url, "SELECT count(*) FROM snapshots WHERE stream_id = :s", s=stream) == 1
        sql(
            url,
            "UPDATE snapshots SET data = replace(replace(data, '\"owner\":\"alice\"', '\"owner\":\"bob\"'), "
            "'\"agent_id\":\"sess-a\"', '\"agent_id\":\"sess-b\"') WHERE stream_id = :s",
            s=stream,
        )
        assert f"snapshot of '{stream}'" in damaged(verify(url, tmp_path))
        with serve(url, tmp_path) as server, server.client("tok-a") as a, server.client("tok-b") as b:
            assert b.get(f"/v1/session/{sid}").status_code == 404
            assert a.get(f"/v1/session/{sid}").status_code == 200


@pytest.mark.parametrize("kind", BACKENDS)
def test_a_forged_snapshot_with_a_recomputed_digest_is_found_by_verify(kind, tmp_path):
    """The keyless digest is recomputable; folding the events is what catches this one."""
    with database(kind, tmp_path) as url:
        seed(url, tmp_path)
        data = scalar(url, "SELECT data FROM snapshots WHERE stream_id = 'channel:ops'")
        event_hash = scalar(url, "SELECT event_hash FROM snapshots WHERE stream_id = 'channel:ops'")
        forged = data.replace("deploy at noon", "wire the funds")
        digest = hashlib.sha256(f"{event_hash}\n{forged}".encode()).hexdigest()
        sql(url, "UPDATE snapshots SET data = :d, digest = :g WHERE stream_id = 'channel:ops'", d=forged, g=digest)
        result = verify(url, tmp_path)
        assert result.returncode == 1
        assert "snapshot of 'channel:ops': snapshot at seq" in damaged(result)


@pytest.mark.parametrize("kind", BACKENDS)
def test_replaced_artifact_bytes_are_not_served_and_verify_finds_them(kind, tmp_path):
    with database(kind, tmp_path) as url:
        seed(url, tmp_path)
        forged = b"malware" * 10
        engine = make_engine(url)
        try:
            with engine.begin() as conn:
                conn.execute(sa.text("UPDATE artifacts SET data = :d WHERE sha256 = :s"), {"d": forged, "s": SHA})
        finally:
            engine.dispose()
        result = verify(url, tmp_path)
        assert result.returncode == 1
        assert f"artifact {SHA[:12]} of ops: bytes do not match the sha256" in damaged(result)
        with serve(url, tmp_path) as server, server.client("tok-a") as a:
            got = a.get(f"/channels/ops/artifacts/{SHA}")
            assert got.status_code == 500
            assert forged not in got.content
            assert got.json()["error"]["code"] == "internal_error"
            assert 'parley_integrity_failures_total{kind="artifact"} 1.0' in a.get("/metrics").text


@pytest.mark.parametrize("kind", BACKENDS)
def test_an_anchor_finds_deleted_tails_and_deleted_streams(kind, tmp_path):
    with database(kind, tmp_path) as url:
        seed(url, tmp_path)
        anchor = tmp_path / "anchor.json"
        clean = verify(url, tmp_path, "--anchor-out", str(anchor))
        assert clean.returncode == 0, clean.stderr
        doc = json.loads(anchor.read_text())
        assert clean.stdout.splitlines()[-1] == f"checkpoint {doc['checkpoint']}"
        assert verify(url, tmp_path, "--anchor", str(anchor)).returncode == 0
        # Events appended after the anchor are fine: chains only grow.
        with serve(url, tmp_path) as server, server.client("tok-a") as a:
            assert a.post("/channels/other/append", json={"type": "note", "body": "later", "msg_id": ulid()}).status_code == 201
        assert verify(url, tmp_path, "--anchor", str(anchor)).returncode == 0

        # 1. Delete the tail of channel:ops (and its snapshot, as a careful attacker would).
        last = scalar(url, "SELECT max(seq) FROM events WHERE stream_id = 'channel:ops'")
        sql(url, "DELETE FROM events WHERE stream_id = 'channel:ops' AND seq = :s", s=last)
        sql(url, "DELETE FROM snapshots")
        sql(url, "DELETE FROM artifacts")
        assert verify(url, tmp_path).returncode == 0  # every chain left is valid: nothing to see without an anchor
        result = verify(url, tmp_path, "--anchor", str(anchor))
        assert result.returncode == 1
        assert f"stream 'channel:ops': truncated to seq {last - 1}" in damaged(result)

        # 2. Delete a whole stream.
        sql(url, "DELETE FROM events WHERE stream_id = 'channel:other'")
        result = verify(url, tmp_path, "--anchor", str(anchor))
        report = damaged(result)
        assert "stream 'channel:other': deleted (the anchor has it at seq 1)" in report
        assert f"stream 'channel:ops': truncated to seq {last - 1}" in report


@pytest.mark.parametrize("kind", BACKENDS)
def test_an_anchor_finds_a_consistently_rewritten_chain(kind, tmp_path):
    with database(kind, tmp_path) as url:
        seed(url, tmp_path)
        anchor = tmp_path / "anchor.json"
        assert verify(url, tmp_path, "--anchor-out", str(anchor)).returncode == 0
        sql(url, "DELETE FROM snapshots WHERE stream_id = 'channel:ops'")
        rewrite_chain(url, "channel:ops", lambda data: data.replace("deploy at noon", "wire the funds"))
        assert verify(url, tmp_path).returncode == 0  # consistent: undetectable without the anchor
        result = verify(url, tmp_path, "--anchor", str(anchor))
        assert result.returncode == 1
        assert "stream 'channel:ops': rewritten" in damaged(result)
        # and an anchor file edited to match is refused as such
        doc = json.loads(anchor.read_text())
        doc["streams"]["channel:ops"][1] = "0" * 64
        anchor.write_text(json.dumps(doc))
        edited = verify(url, tmp_path, "--anchor", str(anchor))
        assert edited.returncode == 1
        assert "checkpoint does not match its streams" in damaged(edited)


def rewrite_chain(url: str, stream_id: str, edit) -> None:
    """Edit every event of a stream and recompute its hashes: a chain valid on its own."""
    engine = make_engine(url)
    try:
        with engine.begin() as conn:
            rows = conn.execute(
                sa.text("SELECT position, seq, type, data FROM events WHERE stream_id = :s ORDER BY seq"),
                {"s": stream_id},
            ).all()
            prev = ""
            for position, seq, type_, data in rows:
                data = edit(data)
                h = compute_hash(prev, stream_id, seq, type_, data)
                conn.execute(
                    sa.text("UPDATE events SET data = :d, prev_hash = :p, hash = :h WHERE position = :pos"),
                    {"d": data, "p": prev, "h": h, "pos": position},
                )
                prev = h
    finally:
        engine.dispose()
