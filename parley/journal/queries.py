"""Read models the server needs at start, answered by one query each.

The channel directory must not replay every channel to learn which exist and
how long they are: the first event of each ``channel:*`` stream is its
descriptor, and its head is the count of its ``message`` events.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import orjson
import sqlalchemy as sa

from . import migrate, schema
from .stream_ids import CHANNEL_PREFIX, SESSION_PREFIX, session_stream

_E = schema.events


def channel_index(engine) -> list[tuple[str, dict[str, Any], int, bool, int]]:
    """``(stream_id, first event data, head, archived, last seq)`` in creation order.

    Two queries over the partial index ``ix_events_nonmessage`` (migration
    0002); neither reads a message event:

    * the ``channel_created`` events, each with its stream's last ``seq`` (a
      correlated ``max(seq)``: one probe of ``UNIQUE(stream_id, seq)`` per
      channel);
    * per channel stream and type, the count of its events that are not
      messages (``claim_lapsed``, ``artifact_stored``, ``channel_archived``…).

    ``head`` is then last seq minus those counts: a stream's seqs run 1..last
    without gaps and its head is its number of ``message`` events. Before
    0002 this was four full scans of ``events`` (3.2 s on a 1,000,000-event
    SQLite journal, 12 ms now).
    """
    inner = _E.alias("last")
    last_seq = (
        sa.select(sa.func.max(inner.c.seq)).where(inner.c.stream_id == _E.c.stream_id).scalar_subquery()
    )
    with engine.connect() as conn:
        firsts = conn.execute(
            sa.select(_E.c.stream_id, _E.c.data, last_seq)
            .where(schema.NOT_MESSAGE, _E.c.type == "channel_created", _E.c.seq == 1)
            .order_by(_E.c.position)
        ).all()
        counts: dict[str, dict[str, int]] = {}
        for stream, type_, n in conn.execute(
            sa.select(_E.c.stream_id, _E.c.type, sa.func.count())
            .where(schema.NOT_MESSAGE, has_prefix(_E.c.stream_id, CHANNEL_PREFIX))
            .group_by(_E.c.stream_id, _E.c.type)
        ):
            counts.setdefault(stream, {})[type_] = n
    out = []
    for stream, data, last in firsts:
        mine = counts.get(stream, {})
        last = last or 1
        out.append((stream, orjson.loads(data), last - sum(mine.values()), "channel_archived" in mine, last))
    return out


def latest_subscriptions(engine, session_ids: list[str], *, chunk: int = 500) -> dict[str, dict[str, int]]:
    """Each given session's cursors (``subscriptions``) after its latest committed turn.

    An open session's last event is a ``turn_committed``: one probe of
    ``UNIQUE(stream_id, seq)`` per session (the ``/metrics`` lag, ADR-0016).
    """
    last = _E.alias("last")
    last_seq = sa.select(sa.func.max(last.c.seq)).where(last.c.stream_id == _E.c.stream_id).scalar_subquery()
    out: dict[str, dict[str, int]] = {}
    with engine.connect() as conn:
        for start in range(0, len(session_ids), chunk):
            streams = [session_stream(sid) for sid in session_ids[start : start + chunk]]
            for stream, data in conn.execute(
                sa.select(_E.c.stream_id, _E.c.data).where(
                    _E.c.stream_id.in_(streams), _E.c.seq == last_seq, _E.c.type == "turn_committed"
                )
            ):
                out[stream[len(SESSION_PREFIX) :]] = dict(orjson.loads(data).get("subscriptions") or {})
    return out


def open_sessions(engine, started_type: str, closed_type: str) -> dict[str, tuple[str, str]]:
    """Every open session's id and identity ``(agent_id, owner)``.

    Both queries carry ``schema.NOT_MESSAGE`` so SQLite reads them from the
    partial index ``ix_events_nonmessage`` instead of scanning every message
    (720 ms at start-up on a 1,000,000-event journal).
    """
    owners: dict[str, tuple[str, str]] = {}
    with engine.connect() as conn:
        closed = set(
            conn.execute(sa.select(_E.c.stream_id).where(schema.NOT_MESSAGE, _E.c.type == closed_type)).scalars()
        )
        for stream, data in conn.execute(
            sa.select(_E.c.stream_id, _E.c.data).where(schema.NOT_MESSAGE, _E.c.type == started_type)
        ).all():
            if stream in closed:
                continue
            started = orjson.loads(data)
            owners[started["session_id"]] = (started["agent_id"], started["owner"])
    return owners


def total_artifact_bytes(engine) -> int:
    with engine.connect() as conn:
        total = conn.execute(sa.select(sa.func.coalesce(sa.func.sum(schema.artifacts.c.size), 0))).scalar()
    return int(total or 0)


def readiness(engine) -> str | None:
    """``None`` when the database answers and is at the Alembic head, else why not."""
    try:
        if not migrate.is_at_head(engine):
            return "database schema is not at the current revision; run `parley db upgrade`"
    except Exception as exc:  # any failure to answer means not ready
        return f"database unavailable ({type(exc).__name__})"
    return None


_FOLD_STREAM = (
    sa.select(_E.c.type, _E.c.data)
    .where(_E.c.stream_id == sa.bindparam("stream_id"), _E.c.seq > sa.bindparam("after_seq"))
    .order_by(_E.c.seq)
)
_compiled: dict[tuple[str, str], Any] = {}


def _driver_sql(engine, name: str, stmt) -> tuple[str, Any]:
    """``(sql text, compiled)`` of ``stmt`` for ``engine``'s dialect, compiled once."""
    key = (engine.dialect.name, name)
    compiled = _compiled.get(key)
    if compiled is None:
        compiled = _compiled[key] = stmt.compile(dialect=engine.dialect)
    return str(compiled), compiled


def _driver_params(compiled, values: dict[str, Any]) -> Any:
    params = compiled.construct_params(values)
    return [params[k] for k in compiled.positiontup] if compiled.positional else params


def fold_stream(
    engine, stream_id: str, after_seq: int, apply: Callable[[str, dict[str, Any]], Any], *, chunk: int = 1000
) -> int:
    """Feed each event of ``stream_id`` after ``after_seq`` to ``apply(type, data)``
    in seq order; return how many there were.

    The activation read of an actor (it runs in a reader thread, and so does
    ``apply``: the state it builds is not shared yet). Only ``type`` and
    ``data`` are selected and decoded with orjson straight from a DBAPI
    cursor: no SQLAlchemy Row, no ``StoredEvent``, no hash columns per event.
    A 10,000-message channel interleaved with other traffic: 35 ms instead of
    95 ms through ``JournalStore.read_stream`` and a fold.
    """
    sql, compiled = _driver_sql(engine, "fold_stream", _FOLD_STREAM)
    loads = orjson.loads
    n = 0
    with engine.connect() as conn:
        cursor = conn.connection.driver_connection.cursor()
        try:
            cursor.execute(sql, _driver_params(compiled, {"stream_id": stream_id, "after_seq": after_seq}))
            while rows := cursor.fetchmany(chunk):
                for type_, data in rows:
                    apply(type_, loads(data))
                n += len(rows)
        finally:
            cursor.close()
    return n


#: ``PRAGMA mmap_size`` of the SQLite connection that pages through a whole
#: journal in :func:`iter_stream_rows` (set back to 0 when it is done). Reads in
#: ``(stream_id, seq)`` order jump between table pages; through the memory map
#: each jump is a memory access instead of a ``pread`` into SQLite's page cache.
SQLITE_SCAN_MMAP = 1 << 30


def has_prefix(column: Any, prefix: str) -> Any:
    """``column`` starts with ``prefix``, case-sensitively on every backend.

    ``startswith`` compiles to ``LIKE 'prefix%'``, which ignores ASCII case on
    SQLite: ``Channel:x`` (say, from ``journal import``) matched ``channel:``
    and crashed replay. The ``substr`` equality makes it exact; the ``LIKE``
    stays for the index.
    """
    return sa.and_(column.startswith(prefix, autoescape=True), sa.func.substr(column, 1, len(prefix)) == prefix)


def iter_stream_rows(
    engine,
    *,
    prefix: str | None = None,
    where: Any = None,
    chunk: int = 10_000,
) -> Iterator[tuple[str, int, str, str]]:
    """``(stream_id, seq, type, data text)`` of every stream (whose id starts with
    ``prefix``, and/or matching the SQLAlchemy condition ``where``) in
    ``(stream_id, seq)`` order: each stream's events consecutive, ready for a fold.

    * Keyset pages on the row value ``(stream_id, seq) > (?, ?)``, which SQLite
      and Postgres both answer with a range scan of ``UNIQUE(stream_id, seq)``,
      so a page costs the same wherever it starts. (``a > x OR (a = x AND b >
      y)`` is not a range: SQLite walks the index from its start for every
      page, quadratic in the journal size.)
    * Each page is its own short read transaction, so a long replay never pins
      a snapshot (no WAL growth on SQLite, no long transaction on Postgres).
    * One dedicated connection and a DBAPI cursor: rows come back as plain
      tuples (SQLAlchemy's Row wrapping costs about 1 µs per row here).
    * SQLite: the connection reads through a memory map (:data:`SQLITE_SCAN_MMAP`).
      Postgres: the next page is fetched in a helper thread while the caller
      folds the current one (the wait for the server runs without the GIL).
      Not on SQLite: its cursor re-takes the GIL for every row, so a reader
      thread would only contend with the fold.
    """
    if prefix is not None:
        condition = has_prefix(_E.c.stream_id, prefix)
        where = condition if where is None else sa.and_(condition, where)
    return iter_stream_range(engine, where=where, chunk=chunk)


def stream_heads(engine) -> list[tuple[str, int]]:
    """``(stream_id, last seq)`` of every stream, in ``stream_id`` order as the
    database sorts it (the order of :func:`iter_stream_rows`).

    A stream's seqs run 1..last without gaps, so its last seq is its event
    count: what a parallel replay needs to cut the streams into ranges of
    similar size. A loose index scan (a recursive CTE stepping to the next
    ``stream_id`` with ``min(stream_id) > previous``, then one ``max(seq)``
    probe per stream) of ``UNIQUE(stream_id, seq)``: two index seeks per
    stream, no event row and no ``data`` read. 6 ms for the 1,000 streams of a
    1,000,000-event SQLite journal, where ``GROUP BY stream_id`` walks the
    whole index (130 ms, 200-300 ms with a ``LIKE`` filter).
    """
    nxt, last = _E.alias("nxt"), _E.alias("last")
    walk = sa.select(sa.select(sa.func.min(_E.c.stream_id)).scalar_subquery().label("sid")).cte(
        "stream_walk", recursive=True
    )
    walk = walk.union_all(
        sa.select(sa.select(sa.func.min(nxt.c.stream_id)).where(nxt.c.stream_id > walk.c.sid).scalar_subquery())
        .where(walk.c.sid.is_not(None))
    )
    last_seq = sa.select(sa.func.max(last.c.seq)).where(last.c.stream_id == walk.c.sid).scalar_subquery()
    stmt = sa.select(walk.c.sid, last_seq).where(walk.c.sid.is_not(None)).order_by(walk.c.sid)
    with engine.connect() as conn:
        return [(sid, int(n or 0)) for sid, n in conn.execute(stmt)]


def iter_stream_range(
    engine,
    *,
    start: str | None = None,
    stop: str | None = None,
    where: Any = None,
    chunk: int = 10_000,
    columns: tuple[Any, ...] | None = None,
) -> Iterator[tuple[Any, ...]]:
    """The rows of :func:`iter_stream_pages`, one at a time."""
    for rows in iter_stream_pages(engine, start=start, stop=stop, where=where, chunk=chunk, columns=columns):
        yield from rows


def iter_stream_pages(
    engine,
    *,
    start: str | None = None,
    stop: str | None = None,
    where: Any = None,
    chunk: int = 10_000,
    columns: tuple[Any, ...] | None = None,
    binary: bool = False,
) -> Iterator[list[tuple[Any, ...]]]:
    """Pages (lists of at most ``chunk`` rows) of :func:`iter_stream_rows` over the streams with ``start <= stream_id < stop``
    (either side open when ``None``): one slice of a parallel replay, and with
    both open, the whole of :func:`iter_stream_rows`.

    The lower bound is not a ``stream_id >= start`` condition but where the
    keyset starts, ``(stream_id, seq) > (start, MIN_SEQ)``: with both in the
    statement SQLite seeks with the plain bound on every page, which is the
    start of the slice, not the last row of the previous page (quadratic in
    the slice's size). With one row-value lower bound and ``stream_id <
    stop`` each page is a range scan ``((stream_id, seq) > (?, ?) AND
    stream_id < ?)`` on SQLite and Postgres alike.

    ``columns`` (default: stream_id, seq, type, data) must start with
    ``stream_id, seq``, the keyset (``journal verify`` adds the hashes);
    ``binary``: Postgres results in the binary format (:func:`keyset_pages`).
    """
    cols = columns or (_E.c.stream_id, _E.c.seq, _E.c.type, _E.c.data)
    base = sa.select(*cols).order_by(_E.c.stream_id, _E.c.seq).limit(chunk)
    if stop is not None:
        base = base.where(_E.c.stream_id < sa.bindparam("stop", stop, type_=sa.Text()))
    if where is not None:
        base = base.where(where)
    after = sa.tuple_(_E.c.stream_id, _E.c.seq) > sa.tuple_(
        sa.bindparam("after_stream", type_=sa.Text()), sa.bindparam("after_seq", type_=sa.Integer())
    )
    first, following = (stmt.compile(dialect=engine.dialect) for stmt in (base, base.where(after)))
    min_seq = -(2**31)  # below any seq (they start at 1), within a 32-bit INTEGER

    def page(key: tuple[str, int] | None) -> tuple[Any, dict[str, Any]]:
        if key is None:
            return first, {}
        return following, {"after_stream": key[0], "after_seq": key[1]}

    key0 = None if start is None else (start, min_seq)
    return keyset_pages(engine, page, lambda row: (row[0], row[1]), key0, chunk, name="scan", binary=binary)


def keyset_pages(
    engine,
    page: Callable[[Any], tuple[Any, dict[str, Any]]],
    next_key: Callable[[tuple], Any],
    key: Any,
    chunk: int,
    *,
    name: str = "pages",
    binary: bool = False,
) -> Iterator[list[tuple]]:
    """Pages of at most ``chunk`` rows of a keyset walk, read with a raw DBAPI cursor.

    ``page(key)`` gives the compiled statement (``LIMIT chunk``) and its
    parameters for the rows after ``key``; ``next_key(last row)`` the key of
    the next page; the walk starts at ``key`` and ends after a short page. The
    one pager of every whole-journal reader (replay, verify, export):

    * one dedicated connection and a DBAPI cursor: plain tuples, no SQLAlchemy Row;
    * each page is its own short read transaction (nothing pinned: no WAL
      growth on SQLite, no long transaction on Postgres);
    * SQLite reads through a memory map (:data:`SQLITE_SCAN_MMAP`, set back to
      0 at the end); on Postgres the next page is fetched in a helper thread
      while the caller works on this one (the wait for the server runs
      without the GIL). Not on SQLite: its cursor holds the GIL while it steps,
      so a reader thread would only contend with the caller.

    ``binary`` (Postgres) asks for results in the binary format: a ``bytea``
    column then arrives as its bytes, not hex text to decode.
    """
    from concurrent.futures import ThreadPoolExecutor

    sqlite = engine.dialect.name == "sqlite"
    with engine.connect() as conn:
        dbapi = conn.connection.driver_connection
        cursor = dbapi.cursor()

        def fetch(key: Any) -> list:
            compiled, values = page(key)
            if binary and not sqlite:
                cursor.execute(str(compiled), _driver_params(compiled, values), binary=True)
            else:
                cursor.execute(str(compiled), _driver_params(compiled, values))
            rows = cursor.fetchall()
            if not sqlite:
                dbapi.rollback()  # end this page's read transaction
            return rows

        if sqlite:
            cursor.execute(f"PRAGMA mmap_size={SQLITE_SCAN_MMAP}")
        try:
            if sqlite:
                while rows := fetch(key):
                    yield rows
                    if len(rows) < chunk:
                        return
                    key = next_key(rows[-1])
            else:
                with ThreadPoolExecutor(1, thread_name_prefix=f"parley-{name}") as pool:
                    pending = pool.submit(fetch, key)
                    while rows := pending.result():
                        more = len(rows) == chunk
                        if more:
                            pending = pool.submit(fetch, next_key(rows[-1]))
                        yield rows
                        if not more:
                            return
        finally:
            if sqlite:
                cursor.execute("PRAGMA mmap_size=0")
            cursor.close()
