"""``parley journal verify|export|import|stats|tail|replay`` against real databases."""

from __future__ import annotations

import hashlib

import io
import os
import signal
import subprocess
import sys
import time

import orjson
import pytest
import sqlalchemy as sa

from parley import replay as replaying
from parley.domain import channel
from parley.domain import session_state as ss
from parley.domain.identity import Identity
from parley.journal import tools
from parley.journal.store import compute_hash
from parley.progress import Progress

from . import assert_one_line_error, ev, migrated, open_store, run, sibling_database

SESSION = "session:ses_01TEST"
ARTIFACT = b"0123456789"
ARTIFACT_SHA = hashlib.sha256(ARTIFACT).hexdigest()


def seed(url: str) -> None:
    """A channel (messages, a claim, an artifact), a session, tokens and an odd stream."""
    with open_store(url) as store:
        msg = {"type": "note", "body": "h\u00e9llo \u2603 \U0001f600", "msg_id": "m1",
               "agent_id": "a1", "owner": "alice", "v": 1, "ts": "2025-01-01T00:00:00.000Z#0"}
        claim = {"type": "claim", "target": "job-1", "msg_id": "m2", "agent_id": "a1",
                 "owner": "alice", "v": 1, "ts": "2025-01-01T00:00:01.000Z#0"}
        store.append("channel:general", [
            ev("channel_created", {"descriptor": {"channel": "general", "kind": "ephemeral",
                                                  "created_by": "alice"}}),
            ev("message", {"message": msg, "fp": "f1"}),
            ev("message", {"message": claim, "fp": "f2",
                           "claim": {"op": "grant", "key": "job-1", "at_ms": 1000}}),
            ev("artifact_stored", {"sha256": ARTIFACT_SHA, "size": 10}),
        ], 0)  # fmt: skip
        store.put_artifact("general", ARTIFACT_SHA, ARTIFACT)
        store.append("channel:other", [
            ev("channel_created", {"descriptor": {"channel": "other", "kind": "ephemeral"}}),
        ], 0)  # fmt: skip
        ident = Identity("a1", "alice")
        store.append(SESSION, [
            ev(ss.SESSION_STARTED, ss.session_started_data("ses_01TEST", ident, handler="inbox",
                                                           ts="t0", lease_epoch=1)),
            ev(ss.TURN_COMMITTED, ss.turn_committed_data(turn=1, token_digest="d1",
                                                         subscriptions={"general": 0},
                                                         response={"ok": True}, ts="t1",
                                                         lease_epoch=1)),
            ev(ss.TURN_COMMITTED, ss.turn_committed_data(turn=2, token_digest="d2",
                                                         subscriptions={"general": 2, "other": 1},
                                                         response={"n": 2.5}, ts="t2",
                                                         lease_epoch=1)),
        ], 0)  # fmt: skip
        store.append("tokens", [ev("token_minted", {"digest": "00" * 32, "agent_id": "a1", "owner": "alice"})], 0)
        store.append("misc", [ev("x", {"nul": "a\x00b", "big": 10**18, "f": 0.1, "nested": {"z": 1, "a": []}})], 0)
        store.append("channel:general", [ev("message", {"message": {**msg, "msg_id": "m3"}, "fp": "f3"})], 4)


def session_snapshot(url: str, upto: int | None = None) -> dict:
    with open_store(url) as store:
        events = store.read_stream(SESSION)
    if upto is not None:
        events = events[:upto]
    state = ss.fold((e.type, e.data) for e in events)
    return ss.to_snapshot(state)


def channel_snapshot(url: str, stream_id: str, upto: int | None = None) -> dict:
    with open_store(url) as store:
        events = store.read_stream(stream_id)
    state = channel.ChannelState(stream_id.split(":", 1)[1])
    for e in events[:upto]:
        channel.apply(state, e.type, e.data)
    return orjson.loads(orjson.dumps(channel.to_snapshot(state)))


def raw_export(url: str, *args: str) -> bytes:
    result = run("journal", "export", "--database-url", url, *args)
    assert result.exit_code == 0, result.stderr
    return result.stdout_bytes


# --------------------------------------------------------------------------- verify


def test_verify_ok_and_json(migrated_url):
    seed(migrated_url)
    result = run("journal", "verify", "--database-url", migrated_url)
    assert result.exit_code == 0, result.stderr
    lines = result.stdout.strip().splitlines()
    assert lines[0] == "journal ok: 5 streams, 11 events verified (0 snapshots, 1 artifacts)"
    assert lines[1].startswith("checkpoint ") and len(lines[1]) == len("checkpoint ") + 64
    assert result.stderr == ""  # no progress bar when stderr is not a TTY
    result = run("journal", "verify", "--database-url", migrated_url, "--json")
    report = orjson.loads(result.stdout)
    assert report.pop("checkpoint") == lines[1].split()[1]
    assert report == {
        "ok": True, "streams": 5, "events": 11, "snapshots": 0, "artifacts": 1, "anchored_streams": None,
        "broken_stream": None, "broken_position": None, "reason": None, "problems": [],
    }  # fmt: skip


def test_verify_detects_a_flipped_byte(migrated_url):
    seed(migrated_url)
    with open_store(migrated_url) as store:
        target = store.read_stream("channel:general")[1]
        with store.engine.begin() as conn:
            raw = conn.execute(sa.text("SELECT data FROM events WHERE position = :p"), {"p": target.position}).scalar()
            flipped = raw.replace("alice", "alicf", 1)
            assert flipped != raw
            conn.execute(sa.text("UPDATE events SET data = :d WHERE position = :p"), {"d": flipped, "p": target.position})
        assert not store.verify().ok  # the store's own verify agrees
    result = run("journal", "verify", "--database-url", migrated_url)
    line = assert_one_line_error(result, "'channel:general'", f"position {target.position}", "hash mismatch")
    assert "damaged" in line


def test_verify_detects_a_broken_link_and_a_gap(migrated_url):
    seed(migrated_url)
    with open_store(migrated_url) as store:
        with store.engine.begin() as conn:
            conn.execute(sa.text("DELETE FROM events WHERE stream_id = 'channel:other'"))
            conn.execute(sa.text(f"DELETE FROM events WHERE stream_id = '{SESSION}' AND seq = 2"))
        pos = store.read_stream(SESSION)[-1].position
    assert_one_line_error(run("journal", "verify", "--database-url", migrated_url),
                          repr(SESSION), f"position {pos}", "seq 3 where 2 was expected")  # fmt: skip


def test_verify_empty_database(migrated_url):
    result = run("journal", "verify", "--database-url", migrated_url)
    assert result.exit_code == 0
    assert "0 streams, 0 events" in result.stdout


# --------------------------------------------------------------------------- export / import


def test_export_lines_embed_the_stored_text_verbatim(migrated_url):
    seed(migrated_url)
    out = raw_export(migrated_url)
    lines = out.splitlines()
    assert len(lines) == 11 and out.endswith(b"\n")
    with open_store(migrated_url) as store, store.engine.connect() as conn:
        rows = conn.execute(sa.text("SELECT position, stream_id, seq, type, data, prev_hash, hash FROM events ORDER BY position")).all()
    for line, (pos, sid, seq, type_, data, prev, h) in zip(lines, rows):
        obj = orjson.loads(line)
        assert list(obj) == ["position", "stream_id", "seq", "type", "data", "recorded_at", "prev_hash", "hash"]
        assert (obj["position"], obj["stream_id"], obj["seq"], obj["type"], obj["prev_hash"], obj["hash"]) == (pos, sid, seq, type_, prev, h)
        assert b',"data":' + data.encode() + b',"recorded_at":' in line
        assert compute_hash(prev, sid, seq, type_, data) == h
        assert tools.parse_line(line)["data"] == data
    assert "\U0001f600".encode() in out  # UTF-8 kept as is, not \u-escaped
    assert raw_export(migrated_url) == out  # byte-stable


def test_export_filters_and_output_file(migrated_url, tmp_path):
    seed(migrated_url)
    full = raw_export(migrated_url).splitlines(keepends=True)
    positions = [orjson.loads(line)["position"] for line in full]
    only = raw_export(migrated_url, "--stream", "channel:general")
    assert [orjson.loads(x)["stream_id"] for x in only.splitlines()] == ["channel:general"] * 5
    assert only == b"".join(x for x in full if b'"stream_id":"channel:general"' in x)
    window = raw_export(migrated_url, "--from-position", str(positions[2]), "--to-position", str(positions[5]))
    assert window == b"".join(full[2:6])
    assert raw_export(migrated_url, "--stream", "nope") == b""

    target = tmp_path / "out.ndjson"
    result = run("journal", "export", "--database-url", migrated_url, "-o", str(target))
    assert result.exit_code == 0
    assert target.read_bytes() == b"".join(full)
    assert not (tmp_path / "out.ndjson.partial").exists()
    assert f"exported 11 events (positions {positions[0]}..{positions[-1]})" in result.stderr


def test_export_import_export_is_byte_identical(migrated_url, tmp_path):
    seed(migrated_url)
    dump = tmp_path / "dump.ndjson"
    assert run("journal", "export", "--database-url", migrated_url, "-o", str(dump)).exit_code == 0
    with sibling_database(migrated_url, tmp_path) as other:
        migrated(other)
        result = run("journal", "import", "--database-url", other, str(dump))
        assert result.exit_code == 0, result.stderr
        assert "imported 11 events in 5 streams" in result.stdout
        assert raw_export(other) == dump.read_bytes()
        # The export carries events only, not artifact bytes: verify says so, and nothing else.
        verified = run("journal", "verify", "--database-url", other, "--json")
        assert orjson.loads(verified.stdout)["problems"] == [
            f"artifact {ARTIFACT_SHA[:12]} of general: recorded by an event but its bytes are gone"
        ]
        with open_store(other) as store:
            # the position sequence continues after the imported positions
            last = store.last_position()
            appended = store.append("channel:other", [ev("message", {"message": {"msg_id": "x"}, "fp": "f"})], 1)
            assert appended[0].position > last
            assert appended[0].prev_hash == store.read_stream("channel:other")[0].hash
            meta = orjson.loads(store.get_meta(tools.IMPORT_META_KEY))
            assert meta["events"] == 11 and meta["source"] == "dump.ndjson"
        # a second import is refused now that the database holds events
        result = run("journal", "import", "--database-url", other, str(dump))
        assert_one_line_error(result, "non-empty database")


def test_import_from_stdin(migrated_url, tmp_path):
    seed(migrated_url)
    dump = raw_export(migrated_url)
    with sibling_database(migrated_url, tmp_path) as other:
        migrated(other)
        result = run("journal", "import", "--database-url", other, "-", input=dump)
        assert result.exit_code == 0, result.stderr
        assert raw_export(other) == dump


def test_import_refuses_a_non_empty_database(migrated_url, tmp_path):
    seed(migrated_url)
    dump = tmp_path / "dump.ndjson"
    dump.write_bytes(raw_export(migrated_url))
    result = run("journal", "import", "--database-url", migrated_url, str(dump))
    assert_one_line_error(result, "refusing to import into a non-empty database (11 events)")
    with open_store(migrated_url) as store:
        assert store.count_events() == 11


@pytest.mark.parametrize(
    "damage, needle",
    [
        (lambda lines: lines[:1] + [lines[1].replace(b"alice", b"alicf", 1)] + lines[2:], "hash mismatch"),
        (lambda lines: lines[1:], "a partial export cannot be imported"),
        (lambda lines: [lines[0], lines[2], lines[1]] + lines[3:], "seq 2 was expected"),
        (lambda lines: lines[:3] + [b"{not json\n"] + lines[3:], "line 4: not valid JSON"),
        (lambda lines: lines[:2] + [lines[1]] + lines[2:], "is not after"),
    ],
    ids=["tampered", "partial", "reordered", "garbage", "duplicate"],
)
def test_import_rejects_a_bad_file_and_rolls_back(migrated_url, tmp_path, damage, needle):
    seed(migrated_url)
    lines = raw_export(migrated_url, "--stream", "channel:general").splitlines(keepends=True)
    bad = tmp_path / "bad.ndjson"
    bad.write_bytes(b"".join(damage(lines)))
    with sibling_database(migrated_url, tmp_path) as other:
        migrated(other)
        assert_one_line_error(run("journal", "import", "--database-url", other, str(bad)), needle)
        with open_store(other) as store:
            assert store.count_events() == 0
            assert store.get_meta(tools.IMPORT_META_KEY) is None


def test_import_accepts_reformatted_lines_with_the_same_data_bytes(tmp_path, migrated_url):
    """A line re-serialised by another JSON tool still imports when its data bytes are unchanged."""
    seed(migrated_url)
    line = raw_export(migrated_url, "--stream", "tokens")
    obj = orjson.loads(line)
    reordered = orjson.dumps({k: obj[k] for k in reversed(list(obj))}) + b"\n"
    row = tools.parse_line(reordered)
    assert row["hash"] == compute_hash("", "tokens", 1, "token_minted", row["data"])


def test_parse_line_refuses_smuggled_data(migrated_url):
    seed(migrated_url)
    line = raw_export(migrated_url, "--stream", "tokens")
    obj = orjson.loads(line)
    head, _, rest = line.partition(b',"data":')
    data, _, tail = rest.partition(b',"recorded_at":')
    # a duplicate "data" key: valid JSON, but the embedded text is not one object
    smuggled = head + b',"data":' + data + b',"data":' + data + b',"recorded_at":' + tail
    assert orjson.loads(smuggled)["data"] == obj["data"]
    with pytest.raises(tools.ToolError, match="not one JSON object"):
        tools.parse_line(smuggled, 3)


def test_import_needs_an_existing_file_and_schema(migrated_url, tmp_path):
    assert_one_line_error(run("journal", "import", "--database-url", migrated_url, str(tmp_path / "nope")), "no such file")
    with sibling_database(migrated_url, tmp_path) as other:
        if other.startswith("sqlite"):
            open(other.removeprefix("sqlite:///"), "wb").close()
        dump = tmp_path / "d.ndjson"
        dump.write_bytes(b"")
        assert_one_line_error(run("journal", "import", "--database-url", other, str(dump)), "parley db upgrade")


def test_cross_backend_export_import(sqlite_url, postgres_url, tmp_path):
    migrated(sqlite_url)
    seed(sqlite_url)
    dump = raw_export(sqlite_url)
    migrated(postgres_url)
    assert run("journal", "import", "--database-url", postgres_url, "-", input=dump).exit_code == 0
    assert raw_export(postgres_url) == dump


# --------------------------------------------------------------------------- stats


def test_stats(migrated_url):
    seed(migrated_url)
    result = run("journal", "stats", "--database-url", migrated_url, "--json")
    assert result.exit_code == 0, result.stderr
    info = orjson.loads(result.stdout)
    with open_store(migrated_url) as store, store.engine.connect() as conn:
        rows = conn.execute(sa.text("SELECT stream_id, data, recorded_at, position FROM events")).all()
    assert info["streams"] == 5 and info["events"] == 11 and info["snapshots"] == 0
    assert info["bytes"] == sum(len(r[1].encode()) for r in rows)
    assert info["oldest_recorded_at"] == min(r[2] for r in rows)
    assert info["newest_recorded_at"] == max(r[2] for r in rows)
    assert info["first_position"] == min(r[3] for r in rows) and info["last_position"] == max(r[3] for r in rows)
    assert info["oldest"].endswith("Z")
    largest = info["largest_streams"]
    assert [s["stream_id"] for s in largest][:2] == ["channel:general", SESSION]
    assert largest[0]["events"] == 5 and len(largest) == 5
    assert info["kinds"]["channel"] == {
        "streams": 2, "events": 6,
        "bytes": sum(len(r[1].encode()) for r in rows if r[0].startswith("channel:")),
    }  # fmt: skip

    text = run("journal", "stats", "--database-url", migrated_url)
    assert text.exit_code == 0
    assert "events     11" in text.stdout and "largest streams" in text.stdout
    assert "channel:general" in text.stdout


def test_stats_of_an_empty_journal(migrated_url):
    info = orjson.loads(run("journal", "stats", "--database-url", migrated_url, "--json").stdout)
    assert info["events"] == 0 and info["largest_streams"] == [] and info["oldest"] is None


# --------------------------------------------------------------------------- tail


def test_tail_from_position_with_max_events(migrated_url):
    seed(migrated_url)
    full = raw_export(migrated_url).splitlines(keepends=True)
    third = orjson.loads(full[2])["position"]
    result = run("journal", "tail", "--database-url", migrated_url, "--json",
                 "--from-position", str(third), "--max-events", "3")  # fmt: skip
    assert result.exit_code == 0, result.stderr
    assert result.stdout_bytes == b"".join(full[2:5])
    result = run("journal", "tail", "--database-url", migrated_url, "--from-position", "0", "--max-events", "2")
    first = [orjson.loads(x) for x in full[:2]]
    assert result.stdout.splitlines() == [f"{e['position']} {e['stream_id']} {e['seq']} {e['type']}" for e in first]


def test_tail_follows_commits_from_another_process(migrated_url):
    seed(migrated_url)
    with open_store(migrated_url) as store:
        start = store.last_position() + 1
        env = {**os.environ, "PARLEY_DATABASE_URL": migrated_url}
        proc = subprocess.Popen(
            [sys.executable, "-m", "parley", "journal", "tail", "--from-position", str(start),
             "--max-events", "3", "--poll-interval", "0.05"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env,
        )  # fmt: skip
        try:
            time.sleep(0.3)
            store.append("live", [ev("one", {})], 0)
            time.sleep(0.2)
            store.append("live", [ev("two", {}), ev("three", {})], 1)
            out, err = proc.communicate(timeout=20)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    assert proc.returncode == 0, err
    assert [line.split()[1:] for line in out.decode().splitlines()] == [
        ["live", "1", "one"], ["live", "2", "two"], ["live", "3", "three"],
    ]  # fmt: skip


def test_tail_stops_cleanly_on_ctrl_c(migrated_url):
    seed(migrated_url)
    env = {**os.environ, "PARLEY_DATABASE_URL": migrated_url}
    proc = subprocess.Popen(
        [sys.executable, "-m", "parley", "journal", "tail", "--from-position", "1"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env,
    )  # fmt: skip
    try:
        backlog = [proc.stdout.readline() for _ in range(11)]  # printed, then it polls
        assert backlog[0].split()[1:] == [b"channel:general", b"1", b"channel_created"]
        assert all(line.endswith(b"\n") for line in backlog)
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, err
    assert err == b""
    assert out == b""


# --------------------------------------------------------------------------- replay


def _put_snapshot(url: str, stream_id: str, seq: int, data: dict) -> None:
    with open_store(url) as store:
        store.save_snapshot(stream_id, seq, data)


def test_replay_clean_journal_with_matching_snapshots(migrated_url):
    seed(migrated_url)
    _put_snapshot(migrated_url, SESSION, 2, session_snapshot(migrated_url, upto=2))
    _put_snapshot(migrated_url, "channel:general", 3, channel_snapshot(migrated_url, "channel:general", upto=3))
    result = run("journal", "replay", "--database-url", migrated_url)
    assert result.exit_code == 0, (result.stdout, result.stderr)
    assert "channel  2 streams, 6 events, 1/1 snapshots match" in result.stdout
    assert "session  1 streams, 3 events, 1/1 snapshots match" in result.stdout
    report = orjson.loads(run("journal", "replay", "--database-url", migrated_url, "--json").stdout)
    assert report["ok"] is True and report["findings"] == []

    only = run("journal", "replay", "--database-url", migrated_url, "--stream", SESSION)
    assert only.exit_code == 0 and "session  1 streams, 3 events" in only.stdout
    assert "channel  0 streams" in only.stdout


def test_replay_pages_across_streams_with_a_tiny_chunk(migrated_url):
    """Pages of 2 rows split streams mid-way: every event is folded once, in order."""
    from parley.journal.engine import make_engine

    seed(migrated_url)
    engine = make_engine(migrated_url)
    steps: list[int] = []
    try:
        report = replaying.replay(engine, chunk=2, advance=steps.append)
    finally:
        engine.dispose()
    assert report.ok, report.as_dict()
    assert sum(steps) == 9 and set(steps) == {2, 1}  # 6 channel + 3 session events
    kinds = report.as_dict()["kinds"]
    assert (kinds["channel"]["streams"], kinds["channel"]["events"]) == (2, 6)
    assert (kinds["session"]["streams"], kinds["session"]["events"]) == (1, 3)


def test_replay_reports_snapshot_differences(migrated_url):
    seed(migrated_url)
    snap = session_snapshot(migrated_url)
    snap["turns"] = 7
    _put_snapshot(migrated_url, SESSION, 3, snap)
    other = channel_snapshot(migrated_url, "channel:other")
    other["archived"] = True
    _put_snapshot(migrated_url, "channel:other", 1, other)
    _put_snapshot(migrated_url, "channel:ghost", 1, other)
    general = channel_snapshot(migrated_url, "channel:general")
    _put_snapshot(migrated_url, "channel:general", 9, general)
    result = run("journal", "replay", "--database-url", migrated_url)
    assert_one_line_error(result, "replay found 4 problem(s)")
    assert f"DIFFERENCE {SESSION}: snapshot at seq 3: $.turns: snapshot 7 != replay 2" in result.stdout
    assert "DIFFERENCE channel:other: snapshot at seq 1: $.archived: snapshot true != replay false" in result.stdout
    assert "DIFFERENCE channel:general: snapshot at seq 9 is beyond the end of the stream (last seq 5)" in result.stdout
    assert "DIFFERENCE channel:ghost: a snapshot exists but the stream has no events" in result.stdout


def test_replay_reports_fold_errors(migrated_url):
    seed(migrated_url)
    with open_store(migrated_url) as store:
        store.append("session:ses_BAD", [ev(ss.TURN_COMMITTED, {"turn": 1})], 0)
        store.append("channel:bad", [ev("message", {"nope": 1})], 0)
    result = run("journal", "replay", "--database-url", migrated_url, "--json")
    assert result.exit_code == 1
    report = orjson.loads(result.stdout)
    kinds = {(f["stream_id"], f["kind"]) for f in report["findings"]}
    assert kinds == {("session:ses_BAD", "fold_error"), ("channel:bad", "fold_error")}
    assert report["kinds"]["session"]["streams"] == 2
    assert "turn_committed before session_started" in " ".join(f["detail"] for f in report["findings"])


def test_replay_refuses_other_streams(migrated_url):
    assert_one_line_error(run("journal", "replay", "--database-url", migrated_url, "--stream", "tokens"),
                          "channel:* and session:*")  # fmt: skip


# --------------------------------------------------------------------------- errors


def test_errors_are_one_line_without_secrets(tmp_path, monkeypatch):
    missing = tmp_path / "missing.db"
    assert_one_line_error(run("journal", "stats", "--database-url", f"sqlite:///{missing}"), "no SQLite database at")
    assert not missing.exists()  # never created by a typo

    unmigrated = tmp_path / "empty.db"
    unmigrated.write_bytes(b"")
    assert_one_line_error(run("journal", "verify", "--database-url", f"sqlite:///{unmigrated}"), "parley db upgrade")

    line = assert_one_line_error(run("journal", "verify", "--database-url", "mysql://u:hunter2@h/x"), "unsupported")
    assert "hunter2" not in line
    line = assert_one_line_error(
        run("journal", "export", "--database-url", "postgresql://u:hunter2@127.0.0.1:9/x"), "connection refused"
    )
    assert "hunter2" not in line

    monkeypatch.setenv("PARLEY_DATABASE_URL", f"sqlite:///{missing}")
    assert_one_line_error(run("journal", "verify"), str(missing))


# --------------------------------------------------------------------------- progress


def test_progress_is_silent_off_a_tty():
    buf = io.StringIO()
    with Progress("x", 10, stream=buf) as bar:
        bar.advance(5)
    assert buf.getvalue() == ""


def test_progress_shows_rate_and_eta_on_a_tty():
    now = [100.0]
    buf = io.StringIO()
    bar = Progress("export", 1000, stream=buf, enabled=True, clock=lambda: now[0])
    now[0] = 102.0
    bar.advance(250)
    assert bar.render() == "export [######------------------]  25% 250/1000 125/s ETA 0:06"
    bar.close()
    assert buf.getvalue().endswith("\n") and "ETA" in buf.getvalue()
    unknown = Progress("import", None, unit="B", stream=io.StringIO(), enabled=True, clock=lambda: now[0])
    now[0] = 104.0
    unknown.done = 4096
    assert unknown.render() == "import 4.00KiB 2.00KiB/s 0:02"


def test_export_workers_write_the_bytes_of_one_process(migrated_url, tmp_path, monkeypatch):
    from parley.journal.tools import export as export_tool

    seed(migrated_url)
    one, two = tmp_path / "one.ndjson", tmp_path / "two.ndjson"
    assert run("journal", "export", "--database-url", migrated_url, "--workers", "1", "-o", str(one)).exit_code == 0
    monkeypatch.setattr(export_tool, "PARALLEL_MIN_EVENTS", 0)  # 11 events: parallel all the same
    result = run("journal", "export", "--database-url", migrated_url, "--workers", "2", "-o", str(two))
    assert result.exit_code == 0 and "exported 11 events" in result.stderr
    assert two.read_bytes() == one.read_bytes() == raw_export(migrated_url)
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.endswith((".part", ".tmp"))) == []
    bad = run("journal", "export", "--database-url", migrated_url, "--workers", "0", "-o", str(two))
    assert bad.exit_code == 2 and len(bad.stderr.splitlines()) == 1 and "'--workers'" in bad.stderr  # a usage error


def test_export_auto_workers_leave_a_busy_machine_to_one_process(monkeypatch):
    from parley.journal.tools import export as export_tool

    monkeypatch.setattr(export_tool, "default_workers", lambda: 2)
    # What is idle right now decides (a 0.1 s sample of /proc/stat) ...
    for idle, expected in ((1.95, 2), (1.1, 2), (0.7, 1), (0.0, 1)):
        assert export_tool.auto_workers(lambda idle=idle: idle) == expected
    # ... and without /proc/stat, the load average.
    monkeypatch.setattr(export_tool.os, "sched_getaffinity", lambda _pid: {0, 1})
    for load, expected in ((0.2, 2), (0.9, 2), (1.3, 1), (7.0, 1)):
        monkeypatch.setattr(export_tool.os, "getloadavg", lambda load=load: (load, load, load))
        assert export_tool.auto_workers(lambda: None) == expected


def test_idle_cpus_is_the_idle_share_of_the_ticks_between_two_readings(tmp_path):
    """Two readings of a ``/proc/stat`` ``cpu`` line: the idle and iowait ticks
    over all ticks between them, times the CPUs, whatever went before."""
    from parley.journal.tools.export import cpu_times, idle_between

    stat = tmp_path / "stat"
    # user nice system idle iowait irq softirq steal (guest columns ignored)
    stat.write_text("cpu  5000 0 1000 90000 400 0 0 0 0 0\ncpu0 1 2 3 4 5 6 7 8\n")
    before = cpu_times(str(stat))
    assert before == (90_400, 96_400)
    stat.write_text("cpu  5150 0 1050 90080 420 0 0 0 0 0\n")  # 300 ticks, 100 of them idle
    after = cpu_times(str(stat))
    assert idle_between(before, after, 2) == pytest.approx(2 * 100 / 300)
    assert idle_between(after, after, 2) is None


def test_idle_cpus_samples_this_machine_and_counts_a_spinning_core_as_busy():
    """The real sample: a core this test keeps busy in a thread is not counted idle
    (a machine saturated by other jobs reads near 0, which this also accepts)."""
    import threading

    from parley.journal.tools.export import idle_cpus

    cpus = len(os.sched_getaffinity(0))
    stop = threading.Event()

    def spin() -> None:
        while not stop.is_set():
            pass

    spinner = threading.Thread(target=spin)
    spinner.start()
    try:
        busy = idle_cpus(0.2)
    finally:
        stop.set()
        spinner.join()
    assert busy is not None and 0 <= busy <= cpus - 0.5, busy

def test_export_removes_the_stale_files_of_a_killed_export_to_the_same_path(sqlite_url, tmp_path):
    """A SIGKILLed export leaves its atomic-writer ``.tmp`` and part files;
    the next export to that path removes those of processes that no longer
    run, and nothing else (a live process's files, other names)."""
    migrated(sqlite_url)
    seed(sqlite_url)
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()  # its pid runs no process now
    target = tmp_path / "out.ndjson"
    stale = [f".out.ndjson.{dead.pid}.0a1b2c3d.tmp", f".out.ndjson.{dead.pid}.0a1b2c3d.1.part",
             f".out.ndjson.{dead.pid}.0a1b2c3d.500001.part"]  # fmt: skip
    kept = [f".out.ndjson.{os.getpid()}.0a1b2c3d.tmp", f".other.ndjson.{dead.pid}.0a1b2c3d.tmp",
            f".out.ndjson.{dead.pid}.0a1b2c3d.part", "out.ndjson.tmp", f".out.ndjson.{dead.pid}.0A1B2C3D.tmp"]  # fmt: skip
    for name in stale + kept:
        (tmp_path / name).write_bytes(b"half an export")
    result = run("journal", "export", "--database-url", sqlite_url, "-o", str(target))
    assert result.exit_code == 0
    assert target.read_bytes() == raw_export(sqlite_url)
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".") or p.name.endswith(".tmp")) == sorted(kept)
    assert f"removed 3 temporary file(s) of an interrupted export next to {target}" in result.stderr
    again = run("journal", "export", "--database-url", sqlite_url, "-o", str(target))
    assert again.exit_code == 0 and "removed" not in again.stderr


def test_the_stale_file_names_are_the_ones_the_export_makes(tmp_path):
    """The names :func:`remove_stale_scratch` recognises come from the real
    makers (the CLI's scratch prefix and part files, the atomic writer)."""
    from parley import atomic_file
    from parley.cli_journal import _scratch_prefix
    from parley.journal.tools import export as export_tool

    target = tmp_path / "out.ndjson"
    made = [export_tool.part_path(_scratch_prefix(str(target)), 1234)]
    with atomic_file.atomic_writer(target) as fh:
        made += [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")]
        fh.write(b"x")
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    for name in made:
        (tmp_path / os.path.basename(name).replace(f".{os.getpid()}.", f".{dead.pid}.")).write_bytes(b"")
    assert export_tool.remove_stale_scratch(str(target)) == 2
    assert [p.name for p in tmp_path.iterdir()] == ["out.ndjson"]
