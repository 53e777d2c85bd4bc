"""The fast paths of the operator tools give exactly the answers of the plain ones (ADR-0044).

* ``parse_row``'s fast path (fields and data parsed apart) and the strict path
  (the whole line parsed, prefix and suffix rebuilt) agree on any line;
* an import parsed by worker processes stores the same rows, and fails on the
  same line with the same message, as the sequential import;
* ``verify`` over stream ranges in worker processes reports the same first
  break, counts and heads as one process, and so does ``journal verify``'s
  one-pass audit.
"""

from __future__ import annotations

import io

import orjson
import pytest
import sqlalchemy as sa
from hypothesis import given, settings
from hypothesis import strategies as st

from parley.journal import JournalStore, NewEvent, migrate, tools
from parley.journal.engine import make_engine
from parley.journal.store import compute_hash
from parley.journal.tools import import_chunks
from parley.journal.tools.lines import _parse_row_strictly, encode_line, parse_row
from parley.journal.verify import verify_chains
from parley.replay import verify_all
from tests.stored import event_rows

json_scalars = st.none() | st.booleans() | st.integers(-(2**53), 2**53) | st.floats(allow_nan=False, allow_infinity=False) | st.text()
json_values = st.recursive(json_scalars, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(), inner, max_size=3), max_leaves=8)
tricky_text = st.text() | st.sampled_from([',"data":', ',"recorded_at":', '","hash":"x"}', "\u2603\"\\"])


@settings(max_examples=100, deadline=None)
@given(
    sid=tricky_text.filter(bool),
    type_=tricky_text.filter(bool),
    data=st.dictionaries(tricky_text, json_values, max_size=4),
    at=st.floats(0, 2e9, allow_nan=False),
    prev=tricky_text,
)
def test_the_fast_parse_agrees_with_the_strict_one(sid, type_, data, at, prev):
    text = orjson.dumps(data)
    line = encode_line(7, sid, 3, type_, text, at, prev, compute_hash(prev, sid, 3, type_, text))
    assert parse_row(line) == _parse_row_strictly(line)
    assert parse_row(line)[4] == text.decode()
    # a duplicate key after the data: the strict path's reading, not the bytes between the markers
    dup = line.rstrip(b"\n")[:-1] + b',"data":{"x":1}}\n'
    assert parse_row(dup) == _parse_row_strictly(dup)


def build(url: str, streams: int = 24, events: int = 30) -> None:
    """Channel streams (folded by verify's audit) and ``tokens``-like streams (chain-checked only)."""
    migrate.upgrade(url)
    store = JournalStore.open(url)
    try:
        for k in range(streams):
            sid = f"channel:c{k:02d}" if k % 3 else f"other:o{k:02d}"
            batch = [NewEvent("channel_created", {"descriptor": {"channel": f"c{k:02d}", "kind": "ephemeral"}})]
            batch += [NewEvent("note", {"n": i, "text": "h\u00e9llo"}) for i in range(events - 1)]
            store.append(sid, batch, 0)
    finally:
        store.dispose()


def export_bytes(url: str) -> bytes:
    engine = make_engine(url)
    out = io.BytesIO()
    try:
        tools.export_events(engine, out, chunk=97)
    finally:
        engine.dispose()
    return out.getvalue()


def import_file(url: str, path: str, workers: int) -> tools.ImportResult:
    migrate.upgrade(url)
    store = JournalStore.open(url)
    try:
        return tools.import_events(store, path=path, workers=workers)
    finally:
        store.dispose()


@pytest.fixture
def small_ranges(monkeypatch):
    """Parallel import from the first byte, in ranges of ~20 lines."""
    monkeypatch.setattr(import_chunks, "PARALLEL_MIN_BYTES", 0)
    monkeypatch.setattr(import_chunks, "CHUNK_BYTES", 2048)


def test_a_parallel_import_stores_what_a_sequential_one_does(tmp_path, small_ranges):
    source = f"sqlite:///{tmp_path / 'source.db'}"
    build(source)
    dump = tmp_path / "dump.ndjson"
    lines = export_bytes(source).splitlines(keepends=True)
    dump.write_bytes(b"".join(lines[:100] + [b"\n", b"  \n"] + lines[100:]))  # blank lines count too
    assert len(import_chunks.split(str(dump))) > 10
    one, two = f"sqlite:///{tmp_path / 'one.db'}", f"sqlite:///{tmp_path / 'two.db'}"
    assert import_file(one, str(dump), 1) == import_file(two, str(dump), 2)
    assert event_rows(one) == event_rows(two) == event_rows(source)


@pytest.mark.parametrize(
    "damage",
    [
        lambda lines: lines[:500] + [lines[500].replace("héllo".encode(), b"hallo", 1)] + lines[501:],
        lambda lines: lines[:400] + [b"\n", b"{not json\n"] + lines[400:],
        lambda lines: lines[:300] + [lines[301], lines[300]] + lines[302:],
    ],
    ids=["tampered", "garbage", "reordered"],
)
def test_a_parallel_import_fails_on_the_same_line_with_the_same_message(tmp_path, small_ranges, damage):
    source = f"sqlite:///{tmp_path / 'source.db'}"
    build(source)
    lines = export_bytes(source).splitlines(keepends=True)
    bad = damage(lines)
    assert bad != lines
    dump = tmp_path / "bad.ndjson"
    dump.write_bytes(b"".join(bad))
    messages = []
    for workers in (1, 2):
        url = f"sqlite:///{tmp_path / f'w{workers}.db'}"
        with pytest.raises(tools.ToolError) as caught:
            import_file(url, str(dump), workers)
        messages.append(str(caught.value))
        assert event_rows(url) == []  # rolled back
    assert messages[0] == messages[1]
    assert messages[0].startswith("line ")


def tamper(url: str, stream: str, seq: int) -> None:
    engine = make_engine(url)
    try:
        with engine.begin() as conn:
            conn.execute(
                sa.text("UPDATE events SET data = replace(data, 'llo', 'lly') WHERE stream_id = :s AND seq = :q"),
                {"s": stream, "q": seq},
            )
    finally:
        engine.dispose()


def test_parallel_verify_reports_what_one_process_does(tmp_path):
    url = f"sqlite:///{tmp_path / 'j.db'}"
    build(url)
    engine = make_engine(url)
    try:
        heads1, heads2 = {}, {}
        clean = verify_chains(engine, heads=heads1, chunk=7)
        assert clean.ok and clean.events_checked == 24 * 30
        assert verify_chains(engine, heads=heads2, chunk=7, workers=2, min_parallel_events=0) == clean
        assert heads1 == heads2
        store = JournalStore(engine)
        for sid in ("channel:c14", "channel:c05", "channel:zz-gone"):  # two differences, one orphan
            store.save_snapshot(sid, 5, {"bogus": 1})
        audit1, audit2 = verify_all(engine, chunk=7), verify_all(engine, chunk=7, workers=2, min_parallel_events=0)
        assert audit1.problems == audit2.problems and audit1.heads == audit2.heads == heads1
        assert len(audit1.problems) == 3 and "zz-gone" in audit1.problems[-1]  # merged in stream order
        tamper(url, "channel:c13", 9)  # a stream in the middle of the ranges
        tamper(url, "channel:c20", 3)
        heads1, heads2 = {}, {}
        broken = verify_chains(engine, heads=heads1, chunk=7)
        assert not broken.ok and broken.broken_stream == "channel:c13" and "hash mismatch" in broken.reason
        assert verify_chains(engine, heads=heads2, chunk=7, workers=2, min_parallel_events=0) == broken
        assert heads1 == heads2
        one = verify_all(engine, chunk=7)
        two = verify_all(engine, chunk=7, workers=2, min_parallel_events=0)
        assert not one.ok and one.problems == two.problems and one.chain == two.chain == broken
        assert one.heads == two.heads
    finally:
        engine.dispose()


def _chain_rows(plan: list[tuple[str, int]], damage: list[tuple[int, str]]) -> list[tuple]:
    """``CHAIN_COLUMNS`` rows of valid chains (``plan``: stream, events), then ``damage`` applied."""
    rows, position = [], 0
    for sid, n in plan:
        prev = ""
        for seq in range(1, n + 1):
            position += 1
            data = orjson.dumps({"n": seq})
            h = compute_hash(prev, sid, seq, "note", data)
            rows.append([sid, seq, "note", data, position, prev, h])
            prev = h
    for index, how in damage:
        if rows:
            row = rows[index % len(rows)]
            if how == "seq":
                row[1] += 1
            elif how == "prev":
                row[5] = "x" + row[5]
            elif how == "data":
                row[3] = row[3] + b" "
            else:
                row[6] = "y"
    return [tuple(r) for r in rows]


@settings(max_examples=150, deadline=None)
@given(
    plan=st.lists(st.tuples(st.sampled_from(["a", "b", "c", "d"]), st.integers(1, 6)), max_size=5, unique_by=lambda p: p[0]),
    damage=st.lists(st.tuples(st.integers(0, 40), st.sampled_from(["seq", "prev", "data", "hash"])), max_size=2),
    page=st.integers(1, 9),
)
def test_a_page_checked_at_once_gives_what_row_by_row_does(plan, damage, page):
    from parley.journal.verify import ChainCheck

    rows = _chain_rows(sorted(plan), damage)
    one, paged = ChainCheck(), ChainCheck()
    for row in rows:
        if not one.feed(*row):
            break
    for k in range(0, len(rows), page):
        if not paged.feed_page(rows[k : k + page]):
            break
    assert paged.part() == one.part()
