"""``journal export`` writes exactly the line of :func:`encode_line` for every stored row, on both backends.

The export reads ``data`` as bytes (SQLite ``CAST AS BLOB``, Postgres
``convert_to`` in the binary result format) and writes its pages from a
helper thread (ADR-0060); the bytes must stay those of the reference
encoder whatever the row holds: non-ASCII text, quotes, backslashes,
control characters in ids, types and data, data text that is not orjson's
own formatting, integral, tiny and huge doubles, hashes that need escaping.
"""

from __future__ import annotations

import io
import os

import pytest
import sqlalchemy as sa

from parley.journal import schema, tools
from parley.journal.engine import make_engine
from parley.journal.tools.lines import encode_line, parse_row

AWKWARD_TEXT = ["channel:x", "caf\u00e9 \u2603 \U0001f600", 'q"uote', "back\\slash", "tab\tnl\nesc\x1b del\x7f", "\u2028\u2029"]
AWKWARD_DATA = [
    "{}",
    '{"a": 1, "b" : [1, 2]}',  # spaces: not orjson's formatting, kept verbatim
    '{"t":"h\\u00e9llo \\"q\\" \\\\ \\n \\u0001","u":"\u00e9\u2603\U0001f600"}',
    '{"n":1e300,"f":-0.0,"big":18446744073709551615}',
]
AWKWARD_FLOATS = [0.0, -0.0, 1.0, 1700000000.0, 1780000000.001, 1764700000.1234567, 5e-324, 1e-7, 0.0001,
                  123456789012345.6, 1e15, 1e16, 1.7976931348623157e308, -2.5, 1 / 3]  # fmt: skip


def rows() -> list[tuple]:
    out = []
    position = 0
    for k, at in enumerate(AWKWARD_FLOATS):
        for j, text in enumerate(AWKWARD_TEXT):
            position += 1
            data = AWKWARD_DATA[(k + j) % len(AWKWARD_DATA)]
            hash_ = "ab" * 32 if j % 2 else f"h{text}"
            out.append((position, f"s:{text}", k + 1, f"t{text}", data, at, f"p{text}" if k else "", hash_))
    return out


@pytest.fixture
def awkward_engine(migrated_url):
    engine = make_engine(migrated_url)
    names = [c.name for c in schema.EVENT_COLUMNS]
    with engine.begin() as conn:
        conn.execute(schema.events.insert(), [dict(zip(names, r)) for r in rows()])
    try:
        yield engine
    finally:
        engine.dispose()


def reference(engine) -> bytes:
    """The lines of the stored rows as the reference encoder writes them, from a plain SQLAlchemy read."""
    with engine.connect() as conn:
        stored = conn.execute(sa.select(*schema.EVENT_COLUMNS).order_by(schema.events.c.position)).all()
    return b"".join(encode_line(*r) for r in stored)


@pytest.mark.parametrize("chunk", [1, 7, 1000])
def test_the_export_bytes_are_the_reference_encoders_for_awkward_rows(awkward_engine, chunk):
    out = io.BytesIO()
    result = tools.export_events(awkward_engine, out, chunk=chunk)
    expected = reference(awkward_engine)
    assert out.getvalue() == expected
    assert result.events == len(rows())
    # and the lines read back to the rows inserted (data verbatim)
    assert [parse_row(line) for line in expected.splitlines()] == [r[:5] + (float(r[5]),) + r[6:] for r in rows()]


def test_a_parallel_export_of_awkward_rows_has_the_same_bytes(awkward_engine, tmp_path):
    target = tmp_path / "out.ndjson"
    with open(target, "wb") as fh:
        tools.export_events(awkward_engine, fh, chunk=5, workers=2, scratch=str(tmp_path / ".out.x."), min_parallel_events=0)
    assert target.read_bytes() == reference(awkward_engine)


def test_a_failed_page_write_raises_its_error_from_the_export(migrated_url):
    """The pages are written by a helper thread (Postgres) or in this one
    (SQLite); a write that fails (here a pipe whose reader is gone) fails the
    export with its own error either way."""
    engine = make_engine(migrated_url)
    names = [c.name for c in schema.EVENT_COLUMNS]
    with engine.begin() as conn:
        conn.execute(schema.events.insert(), [dict(zip(names, r)) for r in rows()])
    read_end, write_end = os.pipe()
    os.close(read_end)
    try:
        with open(write_end, "wb", buffering=0) as out, pytest.raises(BrokenPipeError):
            tools.export_events(engine, out, chunk=3)
    finally:
        engine.dispose()


def test_verify_reads_data_as_bytes_and_accepts_every_awkward_chain(migrated_url):
    """``journal verify`` hashes ``data`` as the bytes it reads (Postgres:
    ``convert_to`` in the binary format): non-ASCII, escapes and control
    characters hash as the appender hashed them, and a changed byte does not."""
    from parley.journal import JournalStore, NewEvent
    from parley.journal.verify import verify_chains

    store = JournalStore.open(migrated_url)
    try:
        for k, text in enumerate(AWKWARD_TEXT):
            store.append(f"s:{text}", [NewEvent(f"t{text}", {"text": text, "k": k, "u": "\u00e9\U0001f600"})], 0)
            store.append(f"s:{text}", [NewEvent("second", {"f": 1 / 3})], 1)
        assert verify_chains(store.engine, chunk=3).ok
        with store.engine.begin() as conn:
            conn.execute(
                schema.events.update()
                .where(schema.events.c.position == 5)
                .values(data=sa.func.replace(schema.events.c.data, "\u00e9", "e"))
            )
        report = verify_chains(store.engine, chunk=3)
        assert not report.ok and report.broken_position == 5
    finally:
        store.dispose()
