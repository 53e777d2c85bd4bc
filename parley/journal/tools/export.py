"""``parley journal export``: events in position order as NDJSON lines (:mod:`.lines`).

Speed (ADR-0044): keyset pages over the primary key ``position`` (a range
scan: SQLite's rowid, Postgres's primary key index), each page its own short
read transaction, read with a raw DBAPI cursor (plain tuples, no SQLAlchemy
Row; on SQLite ``data`` comes as its stored bytes) and written as one buffer
per page. On Postgres the next page is fetched in a helper thread while this
one is encoded (the wait for the server runs without the GIL).
"""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, BinaryIO

import orjson
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from .. import schema
from ..queries import SQLITE_SCAN_MMAP, _driver_params
from .lines import _LINE, _quoted, quoted
from .opening import Advance, count_events, no_progress, range_conditions

_E = schema.events

#: Rows per page: big enough that a page's query costs nothing per row,
#: small enough that memory stays flat (a few MB of text).
PAGE_ROWS = 20_000


@dataclass(frozen=True, slots=True)
class ExportResult:
    events: int
    first_position: int | None
    last_position: int | None


def export_count(
    engine: Engine, *, stream: str | None = None, from_position: int | None = None, to_position: int | None = None
) -> int:
    return count_events(engine, *range_conditions(stream, from_position, to_position))


def event_columns(engine: Engine) -> tuple[Any, ...]:
    """The ``events`` columns; on SQLite ``data`` as the stored UTF-8 bytes
    (``CAST(data AS BLOB)``: no decoding to ``str`` to encode it again)."""
    if engine.dialect.name != "sqlite":
        return schema.EVENT_COLUMNS
    return tuple(sa.cast(c, sa.LargeBinary).label("data") if c.name == "data" else c for c in schema.EVENT_COLUMNS)


def raw_pages(engine: Engine, conditions: list[Any], chunk: int = PAGE_ROWS) -> Iterator[list[tuple]]:
    """Pages of event rows (:func:`event_columns`) in position order."""
    stmt = (
        sa.select(*event_columns(engine))
        .where(_E.c.position > sa.bindparam("after", type_=sa.BigInteger()), *conditions)
        .order_by(_E.c.position)
        .limit(chunk)
    )
    compiled = stmt.compile(dialect=engine.dialect)
    sql = str(compiled)
    sqlite = engine.dialect.name == "sqlite"
    with engine.connect() as conn:
        dbapi = conn.connection.driver_connection
        cursor = dbapi.cursor()

        def fetch(after: int) -> list[tuple]:
            cursor.execute(sql, _driver_params(compiled, {"after": after}))
            rows = cursor.fetchall()
            if not sqlite:
                dbapi.rollback()  # end this page's read transaction
            return rows

        if sqlite:  # table pages through a memory map, not a pread each
            cursor.execute(f"PRAGMA mmap_size={SQLITE_SCAN_MMAP}")
        try:
            if sqlite:
                after = 0
                while rows := fetch(after):
                    yield rows
                    if len(rows) < chunk:
                        return
                    after = rows[-1][0]
            else:  # the next page is fetched while the caller encodes this one
                with ThreadPoolExecutor(1, thread_name_prefix="parley-export") as pool:
                    pending = pool.submit(fetch, 0)
                    while rows := pending.result():
                        more = len(rows) == chunk
                        if more:
                            pending = pool.submit(fetch, rows[-1][0])
                        yield rows
                        if not more:
                            return
        finally:
            if sqlite:
                cursor.execute("PRAGMA mmap_size=0")
            cursor.close()


def encode_page(rows: list[tuple]) -> bytes:
    """The export lines of ``rows`` as one buffer (``data`` as bytes or text)."""
    dumps = orjson.dumps
    line = _LINE
    known = _quoted.get
    if rows and type(rows[0][4]) is not bytes:
        rows = [(p, s, q, t, d.encode("utf-8"), a, ph, h) for p, s, q, t, d, a, ph, h in rows]
    return b"".join(
        [
            line % (pos, known(sid) or quoted(sid), seq, known(type_) or quoted(type_), data,
                    dumps(float(at)), dumps(prev), dumps(h))
            for pos, sid, seq, type_, data, at, prev, h in rows
        ]
    )  # fmt: skip


def export_events(
    engine: Engine,
    out: BinaryIO,
    *,
    stream: str | None = None,
    from_position: int | None = None,
    to_position: int | None = None,
    advance: Advance = no_progress,
    chunk: int = PAGE_ROWS,
) -> ExportResult:
    """Write matching events (positions inclusive) to ``out`` as NDJSON bytes."""
    n = 0
    first = last = None
    conditions = range_conditions(stream, from_position, to_position)
    for rows in raw_pages(engine, conditions, chunk):
        out.write(encode_page(rows))
        if first is None:
            first = rows[0][0]
        last = rows[-1][0]
        n += len(rows)
        advance(len(rows))
    advance(0)
    return ExportResult(n, first, last)
