"""Operator tools over the journal: verify, export, import, stats, tail, replay.

Synchronous and click-free, so the ``parley journal …`` commands
(:mod:`parley.cli_journal`) are thin shells and tests can call these directly.
They work on a stopped server's database and are safe next to a running one
(reads only, except :func:`import_events`, which needs an empty database).

Export format (NDJSON)
----------------------
One event per line, keys in this order, no spaces::

    {"position":7,"stream_id":"channel:x","seq":2,"type":"message","data":<DATA>,
     "recorded_at":1700000000.25,"prev_hash":"…","hash":"…"}

``<DATA>`` is the stored ``data`` column text embedded verbatim (never
decoded and re-encoded), so the chain hashes of an export can be checked
against the bytes in the file, and export → import → export is
byte-identical. The other values are encoded by orjson, whose output is
deterministic. :func:`parse_line` recovers ``<DATA>`` exactly by rebuilding
the fixed prefix and suffix around it.

Errors a user can act on are raised as :class:`ToolError`, whose one-line
message is safe to print (it never contains the database URL).
"""

from __future__ import annotations

import heapq
import os
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any, BinaryIO

import orjson
import sqlalchemy as sa
from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import Connection, Engine

from . import migrate, queries, schema
from ..database_url import sqlite_path
from .engine import is_postgres, make_engine, normalise_url, write_engine
from .store import GENESIS_HASH, WRITE_LOCK_KEY, JournalStore, compute_hash, set_meta, unavailable
from .types import VerifyReport

__all__ = [
    "ExportResult",
    "ImportResult",
    "ReplayReport",
    "ToolError",
    "encode_line",
    "export_events",
    "follow",
    "import_events",
    "journal_stats",
    "open_store",
    "parse_line",
    "replay",
    "replay_ranges",
    "verify",
]

_E = schema.events
_RAW_COLUMNS = schema.EVENT_COLUMNS
#: Meta key recording the last import (a JSON object).
IMPORT_META_KEY = "journal_import"

Advance = Callable[[int], None]


def _no_progress(_n: int) -> None:
    pass


class ToolError(Exception):
    """A failure the operator can act on; the message is one safe line."""


# --------------------------------------------------------------------------- opening


def open_store(url: str, *, require_schema: bool = True) -> JournalStore:
    """A :class:`JournalStore` on ``url``, refusing a missing SQLite file or an unmigrated DB.

    A SQLite file that does not exist is an error rather than silently created
    (a typo in ``--database-url`` must not yield an empty "healthy" journal).
    """
    try:
        normalised = normalise_url(url)
    except ValueError as e:
        raise ToolError(str(e)) from None
    if normalised.startswith("sqlite"):
        path = sqlite_path(normalised) or ""
        if not os.path.exists(path):
            raise ToolError(
                f"no SQLite database at {path}; fix --database-url, or create one with `parley db upgrade`"
            )
    try:
        store = JournalStore(make_engine(url))
    except Exception as e:  # noqa: BLE001 - bad URL parts, missing driver, ...
        raise ToolError(f"cannot open the database: {type(e).__name__}") from None
    if require_schema:
        try:
            revision = migrate.current(store.engine)
        except sa_exc.SQLAlchemyError as e:
            store.dispose()
            raise ToolError(str(unavailable(e))) from None
        if revision is None:
            store.dispose()
            raise ToolError("the database has no parley schema; run 'parley db upgrade' first")
    return store


# --------------------------------------------------------------------------- raw reads


def _raw_rows(
    engine: Engine,
    *,
    stream: str | None = None,
    from_position: int | None = None,
    to_position: int | None = None,
    chunk: int = 5000,
) -> Iterator[sa.Row]:
    """Events in position order (keyset-paginated), ``data`` as stored text."""
    after = (from_position - 1) if from_position is not None else 0
    while True:
        stmt = sa.select(*_RAW_COLUMNS).where(_E.c.position > after)
        if stream is not None:
            stmt = stmt.where(_E.c.stream_id == stream)
        if to_position is not None:
            stmt = stmt.where(_E.c.position <= to_position)
        stmt = stmt.order_by(_E.c.position).limit(chunk)
        with engine.connect() as conn:
            rows = conn.execute(stmt).all()
        yield from rows
        if len(rows) < chunk:
            return
        after = rows[-1][0]


def _count(engine: Engine, *conditions: Any) -> int:
    with engine.connect() as conn:
        stmt = sa.select(sa.func.count()).select_from(_E)
        if conditions:
            stmt = stmt.where(*conditions)
        return conn.execute(stmt).scalar_one()


def _range_conditions(stream: str | None, from_position: int | None, to_position: int | None) -> list:
    conds = []
    if stream is not None:
        conds.append(_E.c.stream_id == stream)
    if from_position is not None:
        conds.append(_E.c.position >= from_position)
    if to_position is not None:
        conds.append(_E.c.position <= to_position)
    return conds


# --------------------------------------------------------------------------- verify


def verify(engine: Engine, *, advance: Advance = _no_progress, chunk: int = 5000) -> VerifyReport:
    """Recompute every hash chain (:meth:`JournalStore.verify`), reporting progress."""
    return JournalStore(engine).verify(chunk, advance)


def count_events(engine: Engine) -> int:
    return _count(engine)


# --------------------------------------------------------------------------- export


def _json(value: Any) -> bytes:
    return orjson.dumps(value)


def _head(position: int, stream_id: str, seq: int, type_: str) -> bytes:
    return b"".join(
        (
            b'{"position":', str(position).encode(),
            b',"stream_id":', _json(stream_id),
            b',"seq":', str(seq).encode(),
            b',"type":', _json(type_),
            b',"data":',
        )
    )  # fmt: skip


def _tail(recorded_at: float, prev_hash: str, hash_: str) -> bytes:
    return b"".join(
        (
            b',"recorded_at":', _json(float(recorded_at)),
            b',"prev_hash":', _json(prev_hash),
            b',"hash":', _json(hash_),
            b"}",
        )
    )  # fmt: skip


def encode_line(
    position: int,
    stream_id: str,
    seq: int,
    type_: str,
    data_text: str | bytes,
    recorded_at: float,
    prev_hash: str,
    hash_: str,
) -> bytes:
    """One export line (with its ``\\n``); ``data_text`` is embedded verbatim."""
    data = data_text.encode("utf-8") if isinstance(data_text, str) else data_text
    return _head(position, stream_id, seq, type_) + data + _tail(recorded_at, prev_hash, hash_) + b"\n"


@dataclass(frozen=True, slots=True)
class ExportResult:
    events: int
    first_position: int | None
    last_position: int | None


def export_count(
    engine: Engine, *, stream: str | None = None, from_position: int | None = None, to_position: int | None = None
) -> int:
    return _count(engine, *_range_conditions(stream, from_position, to_position))


def export_events(
    engine: Engine,
    out: BinaryIO,
    *,
    stream: str | None = None,
    from_position: int | None = None,
    to_position: int | None = None,
    advance: Advance = _no_progress,
    chunk: int = 5000,
) -> ExportResult:
    """Write matching events (positions inclusive) to ``out`` as NDJSON bytes."""
    n = 0
    first = last = None
    pending = 0
    for row in _raw_rows(
        engine, stream=stream, from_position=from_position, to_position=to_position, chunk=chunk
    ):
        out.write(encode_line(*row))
        if first is None:
            first = row[0]
        last = row[0]
        n += 1
        pending += 1
        if pending >= 1000:
            advance(pending)
            pending = 0
    advance(pending)
    return ExportResult(n, first, last)


# --------------------------------------------------------------------------- import


def parse_line(line: bytes, lineno: int = 0) -> dict[str, Any]:
    """One export line → an ``events`` row dict, ``data`` being the exact embedded text.

    The embedded ``data`` bytes are recovered by rebuilding the line's fixed
    prefix and suffix from the parsed values; a line that was reformatted
    (other key order, spaces) falls back to re-encoding ``data`` with orjson,
    and the chain check then tells whether those bytes are the original ones.
    """
    where = f"line {lineno}" if lineno else "line"
    line = line.rstrip(b"\r\n")
    try:
        obj = orjson.loads(line)
    except orjson.JSONDecodeError as e:
        raise ToolError(f"{where}: not valid JSON ({e.msg})") from None
    if not isinstance(obj, dict):
        raise ToolError(f"{where}: expected a JSON object")
    try:
        position, sid, seq, type_ = obj["position"], obj["stream_id"], obj["seq"], obj["type"]
        data, recorded_at = obj["data"], obj["recorded_at"]
        prev_hash, hash_ = obj["prev_hash"], obj["hash"]
    except KeyError as e:
        raise ToolError(f"{where}: missing field {e.args[0]!r}") from None
    ints_ok = all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in (position, seq))
    strs_ok = all(isinstance(v, str) for v in (sid, type_, prev_hash, hash_)) and sid and type_
    number_ok = isinstance(recorded_at, (int, float)) and not isinstance(recorded_at, bool)
    if not (ints_ok and strs_ok and number_ok):
        raise ToolError(f"{where}: a field has the wrong type")
    if not isinstance(data, dict):
        raise ToolError(f"{where}: data must be a JSON object")
    recorded_at = float(recorded_at)
    head = _head(position, sid, seq, type_)
    tail = _tail(recorded_at, prev_hash, hash_)
    if line.startswith(head) and line.endswith(tail) and len(line) > len(head) + len(tail):
        raw = line[len(head) : len(line) - len(tail)]
        try:
            embedded = orjson.loads(raw)
        except orjson.JSONDecodeError:
            embedded = None
        if not isinstance(embedded, dict):
            raise ToolError(f"{where}: the embedded data is not one JSON object")
    else:
        raw = orjson.dumps(data)
    return {
        "position": position,
        "stream_id": sid,
        "seq": seq,
        "type": type_,
        "data": raw.decode("utf-8"),
        "recorded_at": recorded_at,
        "prev_hash": prev_hash,
        "hash": hash_,
    }


@dataclass(frozen=True, slots=True)
class ImportResult:
    events: int
    streams: int
    last_position: int | None


def _lock_for_write(conn: Connection) -> None:
    if is_postgres(conn.engine):
        conn.execute(sa.text("SELECT pg_advisory_xact_lock(:k)"), {"k": WRITE_LOCK_KEY})


def _refuse_non_empty(conn: Connection) -> None:
    events = conn.execute(sa.select(sa.func.count()).select_from(_E)).scalar_one()
    snapshots = conn.execute(sa.select(sa.func.count()).select_from(schema.snapshots)).scalar_one()
    if events or snapshots:
        what = f"{events} events" if events else f"{snapshots} snapshots"
        raise ToolError(
            f"refusing to import into a non-empty database ({what}); "
            "import needs an empty database migrated with 'parley db upgrade'"
        )


def import_events(
    store: JournalStore,
    lines: Iterable[bytes],
    *,
    advance: Advance = _no_progress,
    batch: int = 1000,
    source: str | None = None,
) -> ImportResult:
    """Load an export into an EMPTY database, in one transaction.

    Positions, ``seq``, hashes and ``data`` bytes are kept exactly. Every
    line is checked while loading: positions strictly increase, each stream
    starts at ``seq`` 1 and continues without gaps, ``prev_hash`` links to the
    previous event and ``hash`` matches the recomputed one. Any failure rolls
    the whole import back. ``advance`` receives the byte length of each line.
    """
    heads: dict[str, tuple[int, str]] = {}
    last_position = 0
    count = 0
    with write_engine(store.engine).connect() as conn, conn.begin():
        _lock_for_write(conn)
        _refuse_non_empty(conn)
        rows: list[dict[str, Any]] = []
        consumed = 0
        for lineno, line in enumerate(lines, start=1):
            consumed += len(line)
            if not line.strip():
                continue
            row = parse_line(line, lineno)
            where = f"line {lineno} (stream {row['stream_id']!r}, seq {row['seq']})"
            if row["position"] <= last_position:
                raise ToolError(f"{where}: position {row['position']} is not after {last_position}")
            seq, prev = heads.get(row["stream_id"], (0, GENESIS_HASH))
            if row["seq"] != seq + 1:
                hint = " (a partial export cannot be imported)" if seq == 0 else ""
                raise ToolError(f"{where}: seq {seq + 1} was expected{hint}")
            if row["prev_hash"] != prev:
                raise ToolError(f"{where}: prev_hash does not match the previous event's hash")
            digest = compute_hash(prev, row["stream_id"], row["seq"], row["type"], row["data"])
            if digest != row["hash"]:
                raise ToolError(f"{where}: hash mismatch (the line's data is not the original bytes)")
            heads[row["stream_id"]] = (row["seq"], digest)
            last_position = row["position"]
            rows.append(row)
            count += 1
            if len(rows) >= batch:
                conn.execute(_E.insert(), rows)
                rows = []
                advance(consumed)
                consumed = 0
        if rows:
            conn.execute(_E.insert(), rows)
        advance(consumed)
        if count and is_postgres(conn.engine):
            # explicit positions do not move the BIGSERIAL sequence: do it here
            conn.execute(
                sa.text("SELECT setval(pg_get_serial_sequence('events', 'position'), :p)"),
                {"p": last_position},
            )
        info = {"events": count, "streams": len(heads), "last_position": last_position or None}
        if source:
            info["source"] = source
        info["at"] = time.time()
        set_meta(conn, IMPORT_META_KEY, orjson.dumps(info).decode())
    store.forget_heads()
    return ImportResult(count, len(heads), last_position or None)


# --------------------------------------------------------------------------- stats


def _kind(stream_id: str) -> str:
    return stream_id.split(":", 1)[0] if ":" in stream_id else stream_id


def journal_stats(engine: Engine, *, top: int = 10) -> dict[str, Any]:
    """Counts, sizes and time range of the journal (one pass over per-stream aggregates).

    ``bytes`` is the UTF-8 size of the stored ``data`` texts.
    """
    if is_postgres(engine):
        size = sa.func.octet_length(_E.c.data)
    else:
        size = sa.func.length(sa.cast(_E.c.data, sa.LargeBinary))
    per_stream = (
        sa.select(
            _E.c.stream_id,
            sa.func.count(),
            sa.func.coalesce(sa.func.sum(size), 0),
            sa.func.max(_E.c.seq),
        )
        .group_by(_E.c.stream_id)
    )
    totals = sa.select(
        sa.func.min(_E.c.recorded_at),
        sa.func.max(_E.c.recorded_at),
        sa.func.min(_E.c.position),
        sa.func.max(_E.c.position),
    )
    streams = events = total_bytes = 0
    kinds: dict[str, dict[str, int]] = {}
    largest: list[tuple[int, int, str]] = []
    with engine.connect() as conn:
        for sid, n, nbytes, _last in conn.execute(per_stream):
            n, nbytes = int(n), int(nbytes)
            streams += 1
            events += n
            total_bytes += nbytes
            k = kinds.setdefault(_kind(sid), {"streams": 0, "events": 0, "bytes": 0})
            k["streams"] += 1
            k["events"] += n
            k["bytes"] += nbytes
            item = (n, nbytes, sid)
            if len(largest) < top:
                heapq.heappush(largest, item)
            else:
                heapq.heappushpop(largest, item)
        oldest, newest, first_pos, last_pos = conn.execute(totals).one()
        snapshots = conn.execute(sa.select(sa.func.count()).select_from(schema.snapshots)).scalar_one()
    largest.sort(key=lambda t: (-t[0], -t[1], t[2]))
    return {
        "streams": streams,
        "events": events,
        "bytes": total_bytes,
        "snapshots": int(snapshots),
        "first_position": first_pos,
        "last_position": last_pos,
        "oldest_recorded_at": oldest,
        "newest_recorded_at": newest,
        "kinds": dict(sorted(kinds.items())),
        "largest_streams": [{"stream_id": s, "events": n, "bytes": b} for n, b, s in largest],
    }


# --------------------------------------------------------------------------- tail


def follow(
    engine: Engine,
    after_position: int,
    *,
    poll_interval: float = 0.25,
    max_events: int | None = None,
    batch: int = 1000,
    sleep: Callable[[float], None] = time.sleep,
) -> Iterator[sa.Row]:
    """Yield raw event rows after ``after_position`` as they commit, forever (or ``max_events``).

    Polls; positions are assigned in commit order by the writer (advisory lock
    on Postgres, the single SQLite writer), so a position-based tail does not
    skip a late commit.
    """
    seen = 0
    after = after_position
    while max_events is None or seen < max_events:
        limit = batch if max_events is None else min(batch, max_events - seen)
        stmt = sa.select(*_RAW_COLUMNS).where(_E.c.position > after).order_by(_E.c.position).limit(limit)
        with engine.connect() as conn:
            rows = conn.execute(stmt).all()
        for row in rows:
            yield row
            after = row[0]
            seen += 1
        if len(rows) < limit:
            sleep(poll_interval)


def last_position(engine: Engine) -> int:
    with engine.connect() as conn:
        return conn.execute(sa.select(sa.func.max(_E.c.position))).scalar() or 0


# --------------------------------------------------------------------------- replay

REPLAY_KINDS = ("channel", "session")


@dataclass(slots=True)
class KindCounts:
    streams: int = 0
    events: int = 0
    snapshots_compared: int = 0
    snapshots_matching: int = 0


@dataclass(frozen=True, slots=True)
class Finding:
    stream_id: str
    #: "difference" (state vs snapshot) or "fold_error".
    kind: str
    detail: str


@dataclass(slots=True)
class ReplayReport:
    kinds: dict[str, KindCounts] = field(default_factory=lambda: {k: KindCounts() for k in REPLAY_KINDS})
    findings: list[Finding] = field(default_factory=list)

    @property
    def problems(self) -> list[Finding]:
        return list(self.findings)

    @property
    def ok(self) -> bool:
        return not self.findings

    def as_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "kinds": {
                k: {
                    "streams": c.streams,
                    "events": c.events,
                    "snapshots_compared": c.snapshots_compared,
                    "snapshots_matching": c.snapshots_matching,
                }
                for k, c in self.kinds.items()
            },
            "findings": [{"stream_id": f.stream_id, "kind": f.kind, "detail": f.detail} for f in self.findings],
        }


def _normalise(value: Any) -> Any:
    """JSON round trip: tuples → lists, dataclasses → dicts, as a snapshot would hold."""
    return orjson.loads(orjson.dumps(value, option=orjson.OPT_NON_STR_KEYS))


def _short(value: Any, limit: int = 80) -> str:
    try:
        text = orjson.dumps(value).decode()
    except TypeError:
        text = repr(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def first_difference(expected: Any, actual: Any, path: str = "$") -> str | None:
    """Where two JSON-like values first differ (``None`` if equal)."""
    if isinstance(expected, dict) and isinstance(actual, dict):
        for key in list(expected) + [k for k in actual if k not in expected]:
            if key not in actual:
                return f"{path}.{key}: missing from the replayed state"
            if key not in expected:
                return f"{path}.{key}: missing from the snapshot"
            found = first_difference(expected[key], actual[key], f"{path}.{key}")
            if found:
                return found
        return None
    if isinstance(expected, list) and isinstance(actual, list):
        for i, (a, b) in enumerate(zip(expected, actual)):
            found = first_difference(a, b, f"{path}[{i}]")
            if found:
                return found
        if len(expected) != len(actual):
            return f"{path}: snapshot has {len(expected)} items, replay has {len(actual)}"
        return None
    if expected == actual and type(expected) is type(actual):
        return None
    numbers = (int, float)
    if (
        expected == actual
        and isinstance(expected, numbers) and not isinstance(expected, bool)
        and isinstance(actual, numbers) and not isinstance(actual, bool)
    ):
        return None
    return f"{path}: snapshot {_short(expected)} != replay {_short(actual)}"


class _StreamFold:
    """Folds one ``channel:*`` or ``session:*`` stream; compares with its snapshot."""

    def __init__(self, report: ReplayReport, stream_id: str, snapshot: tuple[int, str] | None) -> None:
        from ..domain import channel, session_state

        self.report = report
        self.stream_id = stream_id
        self.kind = _kind(stream_id)
        self.snapshot = snapshot
        self.reached = False
        self.failed = False
        self.last_seq = 0
        counts = report.kinds[self.kind]
        counts.streams += 1
        self.counts = counts
        self._channel, self._session = channel, session_state
        if self.kind == "channel":
            self._state: Any = channel.ChannelState(stream_id.split(":", 1)[1])
            self._apply = self._apply_channel
        else:
            self._state = None
            self._apply = self._apply_session
        if snapshot is not None and snapshot[0] == 0:
            self._compare()

    def _apply_channel(self, type_: str, data: dict[str, Any]) -> None:
        self._channel.apply(self._state, type_, data)

    def _apply_session(self, type_: str, data: dict[str, Any]) -> None:
        self._state = self._session.apply(self._state, type_, data)

    def _find(self, kind: str, detail: str) -> None:
        self.report.findings.append(Finding(self.stream_id, kind, detail))

    def feed(self, seq: int, type_: str, data_text: str) -> None:
        self.counts.events += 1
        if self.failed:
            return
        try:
            if seq != self.last_seq + 1:
                raise ValueError(f"seq {seq} where {self.last_seq + 1} was expected")
            self._apply(type_, orjson.loads(data_text))
        except Exception as e:  # noqa: BLE001 - any failure of the fold is a finding
            first = (str(e).strip().splitlines() or [""])[0][:200]
            self._find("fold_error", f"seq {seq} ({type_}): {type(e).__name__}: {first}")
            self.failed = True
            return
        self.last_seq = seq
        if self.snapshot is not None and seq == self.snapshot[0]:
            self._compare()

    def _compare(self) -> None:
        assert self.snapshot is not None
        self.reached = True
        self.counts.snapshots_compared += 1
        snap_seq, snap_text = self.snapshot
        where = f"snapshot at seq {snap_seq}"
        try:
            stored = orjson.loads(snap_text)
        except orjson.JSONDecodeError:
            self._find("difference", f"{where}: snapshot data is not valid JSON")
            return
        if self._state is None:
            self._find("difference", f"{where}: no state at that seq")
            return
        module = self._session if self.kind == "session" else self._channel
        try:
            rebuilt = _normalise(module.to_snapshot(self._state))
        except Exception as e:  # noqa: BLE001 - reported, never a crash
            self._find("fold_error", f"{where}: cannot serialise the replayed state: {type(e).__name__}")
            return
        diff = first_difference(stored, rebuilt)
        if diff is None:
            self.counts.snapshots_matching += 1
        else:
            self._find("difference", f"{where}: {diff}")

    def finish(self) -> None:
        if self.failed or self.snapshot is None or self.reached:
            return
        self._find(
            "difference",
            f"snapshot at seq {self.snapshot[0]} is beyond the end of the stream (last seq {self.last_seq})",
        )


def _replay_filter(stream: str | None) -> Any:
    if stream is not None:
        return _E.c.stream_id == stream
    return sa.or_(*(queries.has_prefix(_E.c.stream_id, f"{k}:") for k in REPLAY_KINDS))


def replay_count(engine: Engine, stream: str | None = None) -> int:
    return _count(engine, _replay_filter(stream))


#: ``replay(workers=N)`` stays in one process below this many events (~0.3 s
#: of folding): a worker is a fresh interpreter (``spawn``) that spends ~0.7 s
#: of CPU importing parley, SQLAlchemy and the driver before it folds
#: anything, so it could not help, and starting it is not free.
PARALLEL_MIN_EVENTS = 50_000
#: Ranges per worker process: more, smaller ranges than processes, handed out
#: from a queue, so that a worker that started late or drew heavier streams
#: does not hold up the end.
RANGES_PER_WORKER = 4
_REPLAY_PREFIXES = tuple(f"{k}:" for k in REPLAY_KINDS)


def default_workers() -> int:
    """Worker processes for a full replay: the usable CPUs, at most 4."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cpus = os.cpu_count() or 1
    return max(1, min(cpus, 4))


def _snapshot_filter(stream: str | None) -> Any:
    s = schema.snapshots
    if stream is not None:
        return s.c.stream_id == stream
    return sa.or_(*(queries.has_prefix(s.c.stream_id, f"{k}:") for k in REPLAY_KINDS))


def _bounds(column: Any, lo: str | None, hi: str | None) -> list[Any]:
    """``lo <= column < hi`` (either side open when ``None``)."""
    conds = []
    if lo is not None:
        conds.append(column >= lo)
    if hi is not None:
        conds.append(column < hi)
    return conds


def _snapshot_seqs(engine: Engine, *conditions: Any) -> dict[str, int]:
    s = schema.snapshots
    with engine.connect() as conn:
        return dict(conn.execute(sa.select(s.c.stream_id, s.c.seq).where(*conditions)).all())


def _fold_streams(
    engine: Engine,
    report: ReplayReport,
    rows: Iterable[tuple[str, int, str, str]],
    snap_seqs: dict[str, int],
    advance: Advance,
    chunk: int,
) -> list[str]:
    """Fold ``rows`` (``(stream_id, seq, type, data)`` in stream, seq order) into
    ``report``; the stream ids seen, in order."""
    s = schema.snapshots

    def load_snapshot(sid: str) -> tuple[int, str] | None:
        if sid not in snap_seqs:
            return None
        with engine.connect() as conn:
            row = conn.execute(sa.select(s.c.seq, s.c.data).where(s.c.stream_id == sid)).first()
        return (row[0], row[1]) if row is not None else None

    seen: list[str] = []
    current: _StreamFold | None = None
    pending = 0
    for sid, seq, type_, data in rows:
        if current is None or current.stream_id != sid:
            if current is not None:
                current.finish()
            seen.append(sid)
            current = _StreamFold(report, sid, load_snapshot(sid))
        current.feed(seq, type_, data)
        pending += 1
        if pending == chunk:
            advance(pending)
            pending = 0
    if pending:
        advance(pending)
    if current is not None:
        current.finish()
    return seen


def replay_ranges(engine: Engine, parts: int, *, min_events: int = 0) -> list[tuple[str | None, str | None]]:
    """Cut the streams into at most ``parts`` contiguous ``stream_id`` ranges
    ``[lo, hi)`` (``None`` = open) of similar ``channel:*``/``session:*`` event counts.

    The ranges cover every possible stream id, so a stream the plan did not
    see (created meanwhile) still falls in exactly one range. One range
    (everything) when those streams hold fewer than ``min_events`` events.
    Streams are never split: one huge stream is one range's worth.
    """
    heads = queries.stream_heads(engine)
    weights = [(sid, n if sid.startswith(_REPLAY_PREFIXES) else 0) for sid, n in heads]
    total = sum(n for _sid, n in weights)
    if parts <= 1 or total < max(min_events, 1):
        return [(None, None)]
    cuts: list[str] = []
    before = 0  # events of the streams before ``sid``
    k = 1
    for sid, n in weights:
        if n and before >= total * k / parts:
            cuts.append(sid)
            while before >= total * k / parts:
                k += 1
        before += n
    edges: list[str | None] = [None, *cuts, None]
    return list(zip(edges[:-1], edges[1:]))


def replay(
    engine: Engine,
    *,
    stream: str | None = None,
    advance: Advance = _no_progress,
    chunk: int = 5000,
    workers: int = 1,
    min_parallel_events: int = PARALLEL_MIN_EVENTS,
    local_worker: bool = True,
) -> ReplayReport:
    """Fold every ``channel:*``/``session:*`` stream (or just ``stream``) with the domain fold.

    Each stream's state at its snapshot's ``seq`` is compared with the stored
    snapshot (table ``snapshots``). Fold errors and differences are findings;
    the report is ``ok`` when there are none.

    ``workers > 1`` (a full replay of at least ``min_parallel_events``
    events): the streams are cut into contiguous ``stream_id`` ranges
    (:func:`replay_ranges`) folded by that many ``spawn``-ed processes, each on
    its own engine opened from ``engine.url``; their partial reports are
    merged in range order, so the report is the one a single process makes.
    This process is one of the ``workers`` unless ``local_worker`` is false
    (then all are spawned: tests use it to be sure the children fold). A
    failing worker raises :class:`ToolError` or
    :class:`~parley.journal.errors.JournalUnavailable` with one safe line.
    The caller's ``__main__`` must be safe to import (the ``if __name__ ==
    "__main__"`` idiom), as for any ``spawn``.
    """
    report = ReplayReport()
    if stream is not None and (":" not in stream or _kind(stream) not in REPLAY_KINDS):
        raise ToolError(f"replay folds channel:* and session:* streams only, not {stream!r}")
    snap_seqs = _snapshot_seqs(engine, _snapshot_filter(stream))
    ranges = [(None, None)]
    if stream is None and workers > 1:
        ranges = replay_ranges(engine, workers * RANGES_PER_WORKER, min_events=min_parallel_events)
    if len(ranges) == 1:
        # Keyset pages over UNIQUE(stream_id, seq) (queries.iter_stream_rows): a
        # range scan per page, where an OR-form keyset made SQLite walk the index
        # from its start for every page (quadratic in the journal size).
        rows = queries.iter_stream_rows(engine, where=_replay_filter(stream), chunk=chunk)
        seen = set(_fold_streams(engine, report, rows, snap_seqs, advance, chunk))
    else:
        seen = set()
        parts = _replay_parallel(engine, ranges, workers, advance, chunk, local=local_worker)
        for kinds, findings, part_seen in parts:
            for kind, (n_streams, n_events, compared, matching) in kinds.items():
                c = report.kinds[kind]
                c.streams += n_streams
                c.events += n_events
                c.snapshots_compared += compared
                c.snapshots_matching += matching
            report.findings.extend(Finding(*f) for f in findings)
            seen.update(part_seen)
    for sid in sorted(set(snap_seqs) - seen):
        report.findings.append(Finding(sid, "difference", "a snapshot exists but the stream has no events"))
    return report


# ------------------------------------------------------------- replay: worker processes

#: What a worker sends back for one range: counts per kind (streams, events,
#: snapshots compared, snapshots matching), findings as tuples, streams seen.
_Part = tuple[dict[str, tuple[int, int, int, int]], list[tuple[str, str, str]], list[str]]


def _fold_range(engine: Engine, lo: str | None, hi: str | None, advance: Advance, chunk: int) -> _Part:
    report = ReplayReport()
    snap_seqs = _snapshot_seqs(engine, _snapshot_filter(None), *_bounds(schema.snapshots.c.stream_id, lo, hi))
    # not iter_stream_rows with the bounds in ``where``: see iter_stream_range
    rows = queries.iter_stream_range(engine, start=lo, stop=hi, where=_replay_filter(None), chunk=chunk)
    seen = _fold_streams(engine, report, rows, snap_seqs, advance, chunk)
    kinds = {
        k: (c.streams, c.events, c.snapshots_compared, c.snapshots_matching) for k, c in report.kinds.items()
    }
    return kinds, [(f.stream_id, f.kind, f.detail) for f in report.findings], seen


def _failure(exc: BaseException) -> tuple[str, str]:
    """``(kind, one safe line)`` of a worker's failure."""
    from .errors import JournalUnavailable

    if isinstance(exc, ToolError):
        return "tool", str(exc)
    if isinstance(exc, (sa_exc.SQLAlchemyError, JournalUnavailable)):
        return "unavailable", str(unavailable(exc))
    first = (str(exc).strip().splitlines() or [""])[0][:200]
    return "tool", f"internal error: {type(exc).__name__}: {first}"


def _replay_worker(url: str, tasks: Any, results: Any, chunk: int) -> None:
    """Body of a worker process: fold the ranges taken from ``tasks`` until ``None``.

    Sends ``("progress", n)``, ``("done", index, part)`` or, once,
    ``("error", kind, message)`` on ``results``. Ctrl-C is the parent's to
    handle (it terminates the workers): a worker ignores SIGINT rather than
    print a traceback of its own.
    """
    import signal

    signal.signal(signal.SIGINT, signal.SIG_IGN)
    engine = None
    try:
        engine = make_engine(url)

        def advance(n: int) -> None:
            results.put(("progress", n))

        while (task := tasks.get()) is not None:
            index, lo, hi = task
            results.put(("done", index, _fold_range(engine, lo, hi, advance, chunk)))
    except BaseException as e:  # noqa: BLE001 - reported to the parent as one line
        results.put(("error", *_failure(e)))
    finally:
        if engine is not None:
            engine.dispose()


def _replay_parallel(
    engine: Engine,
    ranges: list[tuple[str | None, str | None]],
    workers: int,
    advance: Advance,
    chunk: int,
    *,
    local: bool = True,
) -> list[_Part]:
    """Fold ``ranges`` in ``workers`` processes: this one (``local``) and
    ``workers - 1`` spawned ones, all taking ranges from one queue. The parts
    in range order.

    This process folds too: its imports are done and its engine is open,
    where a spawned worker first spends ~0.7 s of CPU importing parley (the
    ranges it does not take meanwhile are this process's).
    """
    import multiprocessing
    import queue

    from .errors import JournalUnavailable

    # The URL with its password goes to the children through the spawn pipe
    # (pickled process arguments), never on a command line or into a message.
    url = engine.url.render_as_string(hide_password=False)
    ctx = multiprocessing.get_context("spawn")
    tasks = ctx.Queue()
    results = ctx.Queue()
    n_children = max(1, min(workers, len(ranges)) - (1 if local else 0))
    for index, (lo, hi) in enumerate(ranges):
        tasks.put((index, lo, hi))
    for _ in range(n_children + 1):
        tasks.put(None)
    procs = [
        ctx.Process(target=_replay_worker, args=(url, tasks, results, chunk), name=f"parley-replay-{i}", daemon=True)
        for i in range(n_children)
    ]
    parts: list[_Part | None] = [None] * len(ranges)
    remaining = [len(ranges)]

    def handle(msg: tuple) -> None:
        if msg[0] == "progress":
            advance(msg[1])
        elif msg[0] == "done":
            parts[msg[1]] = msg[2]
            remaining[0] -= 1
        else:
            _tag, kind, message = msg
            if kind == "unavailable":
                raise JournalUnavailable(message)
            raise ToolError(message)

    def drain() -> None:
        while True:
            try:
                msg = results.get_nowait()
            except queue.Empty:
                return
            handle(msg)

    def own_advance(n: int) -> None:
        advance(n)
        drain()

    def check_children() -> None:
        """Raise if a worker ended without reporting (killed: OOM, a signal)."""
        dead = [p.exitcode for p in procs if p.exitcode is not None]
        if not (any(code != 0 for code in dead) or (remaining[0] and len(dead) == len(procs))):
            return
        # its last words (an error) may still be in flight: look once more
        try:
            handle(results.get(timeout=1.0))
        except queue.Empty:
            pass
        if remaining[0]:
            code = next((c for c in dead if c != 0), 0)
            raise ToolError(f"a replay worker process ended unexpectedly (exit code {code})")

    def next_task() -> tuple[int, str | None, str | None] | None:
        while True:
            try:  # with a timeout: a child killed inside get() would hold the queue's lock
                return tasks.get(timeout=1.0)
            except queue.Empty:
                check_children()

    try:
        for p in procs:
            p.start()
        while local and (task := next_task()) is not None:
            index, lo, hi = task
            parts[index] = _fold_range(engine, lo, hi, own_advance, chunk)
            remaining[0] -= 1
        while remaining[0]:
            try:
                handle(results.get(timeout=0.5))
            except queue.Empty:
                check_children()
    finally:
        for p in procs:
            if p.pid is None:  # never started
                continue
            # every part is in (or we are failing): a child still alive is
            # starting up or exiting, with nothing left to report
            if p.is_alive():
                p.terminate()
            p.join(timeout=10)
            if p.is_alive():
                p.kill()
                p.join()
        tasks.cancel_join_thread()  # sentinels a terminated child did not take
        tasks.close()
        results.close()
    return [p for p in parts if p is not None]
