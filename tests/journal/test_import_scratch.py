"""``journal import`` on SQLite with workers (ADR-0059): the workers write checked ranges
into scratch SQLite files that the import ATTACHes and copies from.

* the scratch directory is gone after an import that succeeds, one that fails on
  a bad line, and one whose progress callback raises (as Ctrl-C would);
* the progress callback receives the file's bytes (the workers' count, polled);
* the import holds the target's write lock from the start of its transaction
  (a plain BEGIN, not BEGIN IMMEDIATE, which would lock the scratch files too);
* no room for the scratch files is one clear error line;
* with another connection open (the WAL kept) the scratch path works the same;
* a range longer than a piece is checked across its pieces as one run;
* an import killed mid-way (SIGKILL-like ``os._exit``) leaves the target empty
  and importable, its workers end on their own; what it leaves is its scratch
  directory.
"""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import tempfile

import pytest

from parley.journal import JournalStore, migrate, tools
from parley.journal.tools import import_chunks
from parley.journal.tools.lines import parse_row
from tests.journal.chains import interleaved_chain_lines
from tests.stored import event_rows


def _lines(streams: int = 5, events: int = 40) -> list[bytes]:
    return interleaved_chain_lines(streams, events, lambda i: b'{"n":%d,"text":"caf\xc3\xa9 \\t %s"}' % (i, b"x" * (i % 7)), 0.25)


@pytest.fixture
def scratch_root(tmp_path, monkeypatch):
    """Parallel import of small files, in pieces of ~10 lines; the scratch directory under tmp_path."""
    monkeypatch.setattr(import_chunks, "PARALLEL_MIN_BYTES", 0)
    monkeypatch.setattr(import_chunks, "CHUNK_BYTES", 1200)
    root = tmp_path / "tmp"
    root.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(root))
    return root


def _import(url: str, path, advance=None) -> tools.ImportResult:
    migrate.upgrade(url)
    store = JournalStore.open(url)
    try:
        kwargs = {"advance": advance} if advance else {}
        return tools.import_events(store, path=str(path), workers=2, **kwargs)
    finally:
        store.dispose()


def test_the_rows_arrive_the_progress_adds_up_and_the_scratch_files_go(sqlite_url, tmp_path, scratch_root):
    lines = _lines()
    path = tmp_path / "dump.ndjson"
    path.write_bytes(b"".join(lines))
    steps: list[int] = []
    result = _import(sqlite_url, path, steps.append)
    assert (result.events, result.streams, result.last_position) == (200, 5, 200)
    assert event_rows(sqlite_url) == [parse_row(line) for line in lines]
    assert sum(steps) == os.path.getsize(path) and all(n > 0 for n in steps)
    assert os.listdir(scratch_root) == []


def test_a_range_is_one_run_across_its_pieces(tmp_path, monkeypatch):
    monkeypatch.setattr(import_chunks, "CHUNK_BYTES", 700)
    lines = _lines(streams=2, events=10)
    lines[13] = lines[13].replace(b'"n":6', b'"n":9', 1)  # its hash no longer matches
    path = tmp_path / "dump.ndjson"
    path.write_bytes(b"".join(lines))
    scratch = tmp_path / "s.db"
    db = sqlite3.connect(scratch)
    db.execute(import_chunks.SCRATCH_TABLE)
    db.close()
    chunk = import_chunks.check_into_scratch(str(path), 0, os.path.getsize(path), str(scratch))
    assert chunk.count == 13 and chunk.error is not None and chunk.error.line == 13
    assert [e[2] for e in chunk.entries] == ["channel:s0", "channel:s1"]  # each stream's first row only
    with sqlite3.connect(scratch) as db:
        assert db.execute("SELECT position FROM events ORDER BY position").fetchall() == [(p,) for p in range(1, 14)]


def test_a_bad_line_rolls_back_and_the_scratch_files_go(sqlite_url, tmp_path, scratch_root):
    lines = _lines()
    lines[150] = b"{not json\n"
    path = tmp_path / "dump.ndjson"
    path.write_bytes(b"".join(lines))
    with pytest.raises(tools.ToolError) as caught:
        _import(sqlite_url, path)
    assert str(caught.value).startswith("line 151: not valid JSON")
    assert event_rows(sqlite_url) == [] and os.listdir(scratch_root) == []


def test_an_interrupted_import_rolls_back_and_the_scratch_files_go(sqlite_url, tmp_path, scratch_root):
    path = tmp_path / "dump.ndjson"
    path.write_bytes(b"".join(_lines()))

    def interrupt(_n: int) -> None:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        _import(sqlite_url, path, interrupt)
    assert event_rows(sqlite_url) == [] and os.listdir(scratch_root) == []
    assert _import(sqlite_url, path).events == 200  # and the target is importable


def test_the_import_holds_the_targets_write_lock(sqlite_url, tmp_path, scratch_root):
    path = tmp_path / "dump.ndjson"
    path.write_bytes(b"".join(_lines()))
    refused: list[str] = []

    def try_to_write(_n: int) -> None:
        if refused:
            return
        other = sqlite3.connect(sqlite_url.removeprefix("sqlite:///"), isolation_level=None, timeout=0)
        try:
            other.execute("BEGIN IMMEDIATE")
            other.execute("ROLLBACK")
            refused.append("no")
        except sqlite3.OperationalError as e:
            refused.append(str(e))
        finally:
            other.close()

    assert _import(sqlite_url, path, try_to_write).events == 200
    assert refused == ["database is locked"]


_KILLED = """
import os, sys
from parley.journal import JournalStore, tools
from parley.journal.tools import import_chunks
import_chunks.PARALLEL_MIN_BYTES = 0
import_chunks.CHUNK_BYTES = 1200
store = JournalStore.open(sys.argv[1])
def die(_n):
    os._exit(3)  # as SIGKILL would: no cleanup runs
tools.import_events(store, path=sys.argv[2], workers=2, advance=die)
"""


def test_an_import_killed_mid_way_leaves_the_target_empty_and_its_scratch_directory(sqlite_url, tmp_path):
    lines = _lines()
    path = tmp_path / "dump.ndjson"
    path.write_bytes(b"".join(lines))
    migrate.upgrade(sqlite_url)
    root = tmp_path / "tmp"
    root.mkdir()
    env = {**os.environ, "TMPDIR": str(root)}
    # the workers hold the output pipes: run() returns once they too have ended
    proc = subprocess.run([sys.executable, "-c", _KILLED, sqlite_url, str(path)], capture_output=True, env=env, timeout=60)
    assert proc.returncode == 3, proc.stderr.decode()
    assert event_rows(sqlite_url) == []
    assert [name.startswith("parley-import-") for name in os.listdir(root)] == [True]
    store = JournalStore.open(sqlite_url)
    try:
        assert tools.import_events(store, path=str(path)).events == 200
    finally:
        store.dispose()


def test_no_scratch_directory_is_one_clear_error(sqlite_url, tmp_path, scratch_root, monkeypatch):
    path = tmp_path / "dump.ndjson"
    path.write_bytes(b"".join(_lines()))
    missing = tmp_path / "missing"
    monkeypatch.setattr(tempfile, "tempdir", str(missing))
    with pytest.raises(tools.ToolError) as caught:
        _import(sqlite_url, path)
    assert str(caught.value).startswith(f"cannot write the import's scratch files in {missing} (")
    assert str(caught.value).endswith("set TMPDIR to a directory with about the file's size free")
    assert event_rows(sqlite_url) == []


def test_with_another_connection_open_the_import_goes_through_the_wal(sqlite_url, tmp_path, scratch_root):
    lines = _lines()
    path = tmp_path / "dump.ndjson"
    path.write_bytes(b"".join(lines))
    migrate.upgrade(sqlite_url)
    other = sqlite3.connect(sqlite_url.removeprefix("sqlite:///"), isolation_level=None)
    try:
        other.execute("SELECT count(*) FROM events").fetchone()  # the file open in WAL mode, no lock held
        assert _import(sqlite_url, path).events == 200
        assert other.execute("PRAGMA journal_mode").fetchone() == ("wal",)
        assert other.execute("SELECT count(*) FROM events").fetchone() == (200,)
    finally:
        other.close()
    assert event_rows(sqlite_url) == [parse_row(line) for line in lines] and os.listdir(scratch_root) == []
