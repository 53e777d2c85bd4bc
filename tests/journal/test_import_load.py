"""``journal import`` after ADR-0052: checked chunks joined in order, COPY text from the
workers, Postgres' unique index built after the load, SQLite through a rollback journal.

* the canonical parse gives exactly ``parse_row``'s row, the chain hash's bytes
  and a COPY line that Postgres reads back as that row;
* the first problem of a file, and its message, are the ones a line-by-line
  check finds (a reference linker written out here), whatever the chunking;
* an import killed mid-way leaves the target empty and importable again;
* after an import the schema is the migrated one (Alembic sees no difference)
  and SQLite is back in WAL mode.
"""

from __future__ import annotations

import os
import subprocess
import sys

import orjson
import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from hypothesis import given, settings
from hypothesis import strategies as st

from parley.journal import JournalStore, migrate, schema, tools
from parley.journal.engine import make_engine
from parley.journal.store import GENESIS_HASH, compute_hash
from parley.journal.tools import import_chunks
from parley.journal.tools.lines import encode_line, parse_row
from tests.journal.chains import interleaved_chain_lines
from tests.stored import event_rows

tricky_text = st.text() | st.sampled_from([',"data":', ',"recorded_at":', "a\tb\\c\rd", "\u2603\"\\", "plain-id"])


def _unescape_copy(field: bytes) -> str:
    """A COPY text-format field read back (the escapes this importer writes)."""
    out, i = [], 0
    while i < len(field):
        c = field[i : i + 1]
        if c == b"\\":
            out.append({b"\\": b"\\", b"t": b"\t", b"n": b"\n", b"r": b"\r"}[field[i + 1 : i + 2]])
            i += 2
        else:
            out.append(c)
            i += 1
    return b"".join(out).decode("utf-8")


def _copy_fields(copy: bytes) -> list[str]:
    assert copy.endswith(b"\n") and copy.count(b"\n") == 1
    return [_unescape_copy(f) for f in copy[:-1].split(b"\t")]


@settings(max_examples=150, deadline=None)
@given(
    sid=tricky_text.filter(bool),
    type_=tricky_text.filter(bool),
    data=st.dictionaries(tricky_text, tricky_text | st.integers(-(2**53), 2**53), max_size=4),
    at=st.floats(0, 2e9, allow_nan=False),
    prev=tricky_text,
)
def test_the_canonical_parse_agrees_with_parse_row(sid, type_, data, at, prev):
    text = orjson.dumps(data)
    line = encode_line(7, sid, 3, type_, text, at, prev, compute_hash(prev, sid, 3, type_, text))
    body = line.rstrip(b"\n")
    row = parse_row(line)
    for copy_text in (False, True):
        fast = import_chunks.canonical_row(body, copy_text)
        if fast is None:
            # only a string needing escapes leaves the canonical path
            assert any(b"\\" in orjson.dumps(s) or "\\" in s for s in (sid, type_, prev)) or any(
                ord(ch) < 0x20 or ch in "\"\\" for s in (sid, type_, prev) for ch in s
            )
            continue
        got, hashed, copy = fast
        assert got == row
        assert hashed.decode("utf-8") == f"{prev}\n{sid}\n3\n{type_}\n" + text.decode()
        if copy_text:
            fields = _copy_fields(copy)
            assert fields[:5] == [str(row[0]), row[1], str(row[2]), row[3], row[4]]
            assert float(fields[5]) == row[5] and fields[6:] == [row[6], row[7]]
    # the slow path's COPY line reads back as the row too
    fields = _copy_fields(import_chunks._copy_line(row))
    assert fields[1] == sid and fields[3] == type_ and fields[4] == row[4] and fields[6] == prev


def test_plain_lines_take_the_canonical_path():
    text = b'{"a":"x"}'
    line = encode_line(1, "channel:c", 1, "message", text, 1.5, GENESIS_HASH, compute_hash("", "channel:c", 1, "message", text))
    assert import_chunks.canonical_row(line.rstrip(b"\n")) is not None


# ---------------------------------------------------------------- the journal of these tests


def journal_lines(streams: int = 6, events: int = 12) -> list[bytes]:
    """Interleaved streams whose data holds every character COPY escapes, and JSON whitespace."""

    def data(i: int) -> bytes:
        return b'{"n":%d,\t"t":"a\\\\b\\tc\\"d\\u00e9 \xc3\xa9"}' % i if i % 3 else b'{"n":%d}' % i

    return interleaved_chain_lines(streams, events, data, 0.125)


def reference_error(lines: list[bytes]) -> str | None:
    """The first problem of ``lines`` as a plain line-by-line check words it."""
    heads: dict[str, tuple[int, str]] = {}
    last = 0
    for lineno, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            position, sid, seq, type_, data, _at, prev_hash, hash_ = parse_row(line, lineno)
        except tools.ToolError as e:
            return str(e)
        where = f"line {lineno} (stream {sid!r}, seq {seq})"
        if position <= last:
            return f"{where}: position {position} is not after {last}"
        last_seq, prev = heads.get(sid, (0, GENESIS_HASH))
        if seq != last_seq + 1:
            return f"{where}: seq {last_seq + 1} was expected" + (" (a partial export cannot be imported)" if last_seq == 0 else "")
        if prev_hash != prev:
            return f"{where}: prev_hash does not match the previous event's hash"
        if compute_hash(prev, sid, seq, type_, data) != hash_:
            return f"{where}: hash mismatch (the line's data is not the original bytes)"
        heads[sid] = (seq, hash_)
        last = position
    return None


def _retag(line: bytes, **fields) -> bytes:
    row = dict(zip(("position", "stream_id", "seq", "type", "data", "recorded_at", "prev_hash", "hash"), parse_row(line)))
    row.update(fields)
    return encode_line(*row.values())


DAMAGES = {
    "tampered": lambda ls: ls[:30] + [ls[30].replace(b'"n":', b'"m":', 1)] + ls[31:],
    "garbage": lambda ls: ls[:25] + [b"\n", b"{not json\n"] + ls[25:],
    "reordered": lambda ls: ls[:20] + [ls[21], ls[20]] + ls[22:],
    "gap": lambda ls: ls[:40] + ls[41:],
    "partial": lambda ls: ls[1:],
    "bad prev_hash": lambda ls: ls[:33] + [_retag(ls[33], prev_hash="f" * 64)] + ls[34:],
    "position back": lambda ls: ls[:35] + [_retag(ls[35], position=3)] + ls[36:],
    # a link problem before a hash problem in the same chunk: the link one is reported
    "link then hash": lambda ls: ls[:14] + ls[15:22] + [ls[22].replace(b'"n":', b'"m":', 1)] + ls[23:],
}


def _import(url: str, lines: list[bytes], tmp_path, *, batch: int = 5000, parallel: bool = False) -> tools.ImportResult:
    migrate.upgrade(url)
    store = JournalStore.open(url)
    try:
        if parallel:
            path = tmp_path / "dump.ndjson"
            path.write_bytes(b"".join(lines))
            return tools.import_events(store, path=str(path), workers=3)
        return tools.import_events(store, lines, batch=batch)
    finally:
        store.dispose()


def _schema_diff(url: str) -> list:
    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            return compare_metadata(MigrationContext.configure(conn), schema.metadata)
    finally:
        engine.dispose()


@pytest.fixture
def small_ranges(monkeypatch):
    monkeypatch.setattr(import_chunks, "PARALLEL_MIN_BYTES", 0)
    monkeypatch.setattr(import_chunks, "CHUNK_BYTES", 1500)


@pytest.mark.parametrize("damage", list(DAMAGES))
@pytest.mark.parametrize("how", ["batches of 7", "one batch", "workers"])
def test_the_first_problem_is_the_line_by_line_one(sqlite_url, tmp_path, small_ranges, damage, how):
    lines = journal_lines()
    bad = DAMAGES[damage](lines)
    expected = reference_error(bad)
    assert expected is not None and bad != lines
    with pytest.raises(tools.ToolError) as caught:
        _import(sqlite_url, bad, tmp_path, batch=7 if how == "batches of 7" else 5000, parallel=how == "workers")
    assert str(caught.value) == expected
    assert event_rows(sqlite_url) == []


def test_postgres_refuses_like_sqlite_and_keeps_its_schema(postgres_url, tmp_path):
    bad = DAMAGES["link then hash"](journal_lines())
    with pytest.raises(tools.ToolError) as caught:
        _import(postgres_url, bad, tmp_path, batch=7)
    assert str(caught.value) == reference_error(bad)
    assert event_rows(postgres_url) == [] and _schema_diff(postgres_url) == []


@pytest.mark.parametrize("parallel", [False, True], ids=["in process", "workers"])
def test_an_import_stores_the_lines_and_leaves_the_migrated_schema(database_url, tmp_path, small_ranges, parallel):
    lines = journal_lines()
    result = _import(database_url, lines, tmp_path, batch=7, parallel=parallel)
    assert (result.events, result.streams, result.last_position) == (72, 6, 72)
    assert event_rows(database_url) == [parse_row(line) for line in lines]  # data bytes, escapes and all
    assert _schema_diff(database_url) == []
    engine = make_engine(database_url)
    try:
        with engine.connect() as conn:
            if engine.dialect.name == "sqlite":
                assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
                assert not os.path.exists(engine.url.database + "-journal")
            else:
                (indexdef,) = conn.execute(
                    sa.text("SELECT indexdef FROM pg_indexes WHERE schemaname = current_schema() "
                            "AND indexname = 'uq_events_stream_seq'")
                ).one()  # fmt: skip
                assert indexdef.startswith("CREATE UNIQUE INDEX") and "(stream_id, seq)" in indexdef
    finally:
        engine.dispose()


_KILLED_IMPORT = """
import os, sys
from parley.journal import JournalStore
from parley.journal import tools
url, path = sys.argv[1], sys.argv[2]
store = JournalStore.open(url)
def lines():
    with open(path, "rb") as f:
        for k, line in enumerate(f):
            if k == 50:  # some batches are inserted: the process dies mid-import
                os._exit(3)
            yield line
tools.import_events(store, lines(), batch=7)
"""


def test_an_import_killed_mid_way_leaves_the_target_empty_and_importable(database_url, tmp_path):
    lines = journal_lines()
    path = tmp_path / "dump.ndjson"
    path.write_bytes(b"".join(lines))
    migrate.upgrade(database_url)
    proc = subprocess.run([sys.executable, "-c", _KILLED_IMPORT, database_url, str(path)], capture_output=True)
    assert proc.returncode == 3, proc.stderr.decode()
    assert event_rows(database_url) == []
    assert _schema_diff(database_url) == []
    result = _import(database_url, lines, tmp_path)
    assert result.events == 72 and event_rows(database_url) == [parse_row(line) for line in lines]
