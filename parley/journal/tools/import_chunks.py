"""Checking a run of export lines for ``journal import``: parse, hash, link within the run.

A line's parse and its hash recomputation depend on that line alone, and the
links between lines (positions increase, each stream's ``seq`` and
``prev_hash`` follow on) depend only on the lines before them. So a file is
cut into byte ranges at line starts and each range is checked by a worker
process on its own (ADR-0044, ADR-0052): every line parsed and hash-checked,
every link *inside* the range checked, and what the range needs from the
ranges before it written down: the position and line of its first row, and
the first ``(seq, prev_hash)`` of each stream that appears in it. The
importing process joins the ranges in file order with those few values
(:meth:`.importer._Linker.join`) instead of linking every row, and inserts
the range's payload: one ``COPY`` text-format buffer for Postgres, made here
from the line's own bytes; on SQLite the worker writes the range's rows into a
scratch SQLite file the importer copies from (:func:`check_into_scratch`,
ADR-0059), and a sequential import's batches are rows as tuples.

A worker stops at its range's first problem and says what and where; the
importer raises exactly the error a one-line-at-a-time check would raise for
the file's first problem (a join problem at an earlier line wins), after the
lines before it. The same code checks the batches of a sequential import
(stdin, small files), in the importing process.
"""

from __future__ import annotations

import hashlib
import os
import re
import sqlite3
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import orjson

from ..store import compute_hash
from .lines import Row, parse_row
from .opening import ToolError

#: Bytes per range: about 7,000 lines of the benchmark journal.
CHUNK_BYTES = 4 << 20
#: Files smaller than this are imported in one process: a spawned worker
#: first spends ~0.7 s of CPU importing parley.
PARALLEL_MIN_BYTES = 32 << 20

_sha256 = hashlib.sha256
_loads = orjson.loads
_dumps = orjson.dumps
# A JSON string that needs no unescaping: its bytes are the string's UTF-8.
_PLAIN = rb'"([^"\\\x00-\x1f]*)"'
#: The line exactly as export writes it when its strings need no escaping
#: (every real line): the groups are the fields' own bytes.
_CANONICAL = re.compile(
    rb'\{"position":([1-9][0-9]{0,17}),"stream_id":' + _PLAIN.replace(b"*", b"+")
    + rb',"seq":([1-9][0-9]{0,17}),"type":' + _PLAIN.replace(b"*", b"+")
    + rb',"data":(\{.*\}),"recorded_at":([-+.0-9eE]{1,40}),"prev_hash":' + _PLAIN
    + rb',"hash":' + _PLAIN + rb"\}",
    re.S,
)  # fmt: skip
_fullmatch = _CANONICAL.fullmatch


@dataclass(slots=True)
class LinkError:
    """The first problem found inside a range: a row's index, its line's index, and what."""

    row: int
    line: int
    stream_id: str
    seq: int
    #: The message after ``line N (stream …, seq …): ``.
    text: str


@dataclass(slots=True)
class Chunk:
    """What checking one range (or batch) of lines found."""

    #: Lines in the range (blank ones included: they count for line numbers).
    lines: int
    #: Bytes of the range.
    size: int
    #: Rows that passed every check inside the range, in order.
    count: int = 0
    #: The insert payload of those rows: tuples (SQLite) or COPY text (Postgres).
    payload: list[Row] | bytes = field(default_factory=list)
    #: ``(line index, stream_id, seq, position)`` of the range's first parsed row.
    first: tuple[int, str, int, int] | None = None
    #: Position of the last row that passed.
    last_position: int = 0
    #: ``(row index, line index, stream_id, seq, prev_hash)`` of each stream's
    #: first row in the range, in order: the links to the ranges before.
    entries: list[tuple[int, int, str, int, str]] = field(default_factory=list)
    #: ``stream_id -> (seq, hash)`` of each stream's last row that passed.
    tails: dict[str, tuple[int, str]] = field(default_factory=dict)
    #: The first problem inside the range (linking or hash), if any.
    error: LinkError | None = None
    #: Index (0-based, in the range) and bytes of the first line that does not parse.
    bad_line: tuple[int, bytes] | None = None


def split(path: str, chunk_bytes: int | None = None) -> list[tuple[int, int]]:
    """``[start, end)`` byte ranges of ``path`` covering it, each starting at a line start."""
    chunk_bytes = chunk_bytes or CHUNK_BYTES
    size = os.path.getsize(path)
    bounds = [0]
    with open(path, "rb") as f:
        while bounds[-1] + chunk_bytes < size:
            f.seek(bounds[-1] + chunk_bytes)
            f.readline()  # to the next line start
            at = f.tell()
            if at >= size:
                break
            bounds.append(at)
    bounds.append(size)
    return list(zip(bounds[:-1], bounds[1:]))


def check_chunk(path: str, start: int, end: int, copy_text: bool = False) -> Chunk:
    """Check the lines of ``path[start:end]`` (a worker's job); see :func:`check_lines`."""
    with open(path, "rb") as f:
        f.seek(start)
        data = f.read(end - start)
    lines = data.split(b"\n")
    if lines and lines[-1] == b"":
        lines.pop()  # the range ends with a newline: no line after it
    return check_lines(lines, len(data), copy_text)


#: The scratch table a worker writes a range's checked rows into (SQLite,
#: ADR-0059): the ``events`` columns with no index, ``position`` its rowid, so
#: the importer reads them back in position order without sorting.
SCRATCH_TABLE = (
    "CREATE TABLE events (position INTEGER PRIMARY KEY, stream_id TEXT, seq INTEGER, type TEXT,"
    " data TEXT, recorded_at REAL, prev_hash TEXT, hash TEXT)"
)
_SCRATCH_INSERT = "INSERT INTO events VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
#: Set by the importer when it gives up: a worker stops after its current piece.
_stop: Any = None
#: Bytes checked by the pool's workers, shared with the importer (its progress).
_checked: Any = None


def init_worker(importer: int, stop: Any = None, checked: Any = None) -> None:
    """Pool initializer: the importer's stop event and progress counter (a
    spawned process gets them only this way), and a watch on the importer: a
    pool's worker would otherwise wait for work forever once the importer is
    killed (SIGKILL runs no cleanup)."""
    global _stop, _checked
    _stop, _checked = stop, checked
    # the importer's pid from the importer: it may have died before this runs
    threading.Thread(target=_exit_with, args=(importer,), daemon=True, name="import-parent-watch").start()


def _exit_with(parent: int) -> None:
    while os.getppid() == parent:
        time.sleep(PARENT_CHECK_S)
    os._exit(1)


#: How often a worker checks that its importer still runs.
PARENT_CHECK_S = 0.5


def _pieces(path: str, start: int, end: int) -> Iterator[bytes]:
    """``path[start:end]`` in pieces of about :data:`CHUNK_BYTES`, each ending at a line end
    (but the last, when the file does not end with one)."""
    carry = b""
    with open(path, "rb") as f:
        f.seek(start)
        left = end - start
        while left > 0:
            block = f.read(min(CHUNK_BYTES, left))
            if not block:
                break
            left -= len(block)
            data = carry + block if carry else block
            cut = data.rfind(b"\n") + 1 if left > 0 else len(data)
            carry = data[cut:]
            if cut:
                yield data[:cut]
    if carry:
        yield carry


def check_into_scratch(path: str, start: int, end: int, scratch: str) -> Chunk:
    """Check the lines of ``path[start:end]`` and write the rows that pass into
    the empty ``events`` table of the SQLite file ``scratch`` (a worker's job on
    SQLite, ADR-0059): the importer then copies them with one ``INSERT … SELECT``
    instead of receiving them pickled. The range is read and written in pieces
    (memory stays a piece's worth); the file is written without a journal or
    syncs, being thrown away after the import. The Chunk's payload is empty."""
    chunk = Chunk(0, 0)
    db = sqlite3.connect(scratch, isolation_level=None)
    try:
        db.execute("PRAGMA journal_mode=OFF")
        db.execute("PRAGMA synchronous=OFF")
        db.execute("BEGIN")
        for piece in _pieces(path, start, end):
            lines = piece.split(b"\n")
            if lines[-1] == b"":
                lines.pop()  # the piece ends with a newline: no line after it
            check_lines(lines, len(piece), False, chunk)
            rows = chunk.payload
            assert isinstance(rows, list)
            db.executemany(_SCRATCH_INSERT, rows)
            chunk.payload = []
            if _checked is not None:
                with _checked.get_lock():
                    _checked.value += len(piece)
            if chunk.error is not None or chunk.bad_line is not None or (_stop is not None and _stop.is_set()):
                break
        db.execute("COMMIT")
    finally:
        db.close()
    return chunk


def _copy_field(text: str) -> bytes:
    """A text value in COPY's text format (backslash, tab, newline, CR escaped)."""
    b = text.encode("utf-8")
    if b"\\" in b or b"\t" in b or b"\n" in b or b"\r" in b:
        b = b.replace(b"\\", b"\\\\").replace(b"\t", b"\\t").replace(b"\n", b"\\n").replace(b"\r", b"\\r")
    return b


def _copy_line(row: Row) -> bytes:
    position, sid, seq, type_, text, at, prev_hash, hash_ = row
    return b"%d\t%s\t%d\t%s\t%s\t%s\t%s\t%s\n" % (
        position, _copy_field(sid), seq, _copy_field(type_), _copy_field(text),
        repr(float(at)).encode("ascii"), _copy_field(prev_hash), _copy_field(hash_),
    )  # fmt: skip


def canonical_row(body: bytes, copy_text: bool = False) -> tuple[Row, bytes, bytes] | None:
    """``body`` (a line without its end) as export writes it, with plain strings:
    ``(row, the bytes the hash covers, the row's COPY text line or b"")``; else None.

    The row is exactly :func:`.lines.parse_row`'s (test
    ``test_the_canonical_parse_agrees_with_parse_row``): the numbers are
    canonical (no sign, no leading zero; ``recorded_at`` re-encodes to its own
    text), the strings hold no quote, backslash or control character (so their
    bytes are their UTF-8), and the data is one JSON object.
    """
    m = _fullmatch(body)
    if m is None:
        return None
    pos_b, sid_b, seq_b, type_b, data_b, at_b, prev_b, hash_b = m.groups()
    try:
        at = float(at_b)
        if _dumps(at) != at_b or type(_loads(data_b)) is not dict:
            return None
        sid, type_, data = sid_b.decode("utf-8"), type_b.decode("utf-8"), data_b.decode("utf-8")
        prev_hash, hash_ = prev_b.decode("utf-8"), hash_b.decode("utf-8")
    except (ValueError, orjson.JSONDecodeError):  # UnicodeDecodeError is a ValueError
        return None
    row = (int(pos_b), sid, int(seq_b), type_, data, at, prev_hash, hash_)
    hashed = b"%s\n%s\n%s\n%s\n%s" % (prev_b, sid_b, seq_b, type_b, data_b)
    if not copy_text:
        return row, hashed, b""
    if b"\\" in data_b or b"\t" in data_b or b"\r" in data_b:
        data_b = data_b.replace(b"\\", b"\\\\").replace(b"\t", b"\\t").replace(b"\r", b"\\r")
    copy = b"%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n" % (pos_b, sid_b, seq_b, type_b, data_b, at_b, prev_b, hash_b)
    return row, hashed, copy


def check_lines(lines: list[bytes], size: int, copy_text: bool = False, chunk: Chunk | None = None) -> Chunk:
    """Parse, hash-check and link ``lines`` (each without or with its line end).

    Stops at the first line that does not parse (``bad_line``) or the first
    row that fails a check inside the run (``error``); the payload holds the
    rows before it, as COPY text when ``copy_text`` else as tuples. With
    ``chunk`` (one that found no problem), ``lines`` follow on its lines: the
    checks and indexes continue, and the payload is these lines' rows only.
    """
    if chunk is None:
        chunk = Chunk(0, 0)
    base = chunk.lines
    chunk.lines += len(lines)
    chunk.size += size
    rows: list[Row] = []
    copies: list[bytes] = []
    entries = chunk.entries
    tails = chunk.tails
    last_position = chunk.last_position
    n = chunk.count
    for i, line in enumerate(lines, base):
        body = line.rstrip(b"\r\n")
        fast = canonical_row(body, copy_text)
        if fast is None:
            if not line.strip():
                continue
            try:
                row = parse_row(line)
            except ToolError:
                chunk.bad_line = (i, line)
                break
            hashed = None
            copy = _copy_line(row) if copy_text else b""
        else:
            row, hashed, copy = fast
        position, sid, seq, type_, text, _at, prev_hash, hash_ = row
        if n == 0:
            chunk.first = (i, sid, seq, position)
        elif position <= last_position:
            chunk.error = LinkError(n, i, sid, seq, f"position {position} is not after {last_position}")
            break
        tail = tails.get(sid)
        if tail is None:
            entries.append((n, i, sid, seq, prev_hash))
        else:
            last_seq, prev = tail
            if seq != last_seq + 1:
                chunk.error = LinkError(n, i, sid, seq, f"seq {last_seq + 1} was expected")
                break
            if prev_hash != prev:
                chunk.error = LinkError(n, i, sid, seq, "prev_hash does not match the previous event's hash")
                break
        ok = (
            compute_hash(prev_hash, sid, seq, type_, text) == hash_ if hashed is None
            else _sha256(hashed).hexdigest() == hash_
        )  # fmt: skip
        if not ok:
            chunk.error = LinkError(n, i, sid, seq, "hash mismatch (the line's data is not the original bytes)")
            break
        tails[sid] = (seq, hash_)
        last_position = position
        if copy_text:
            copies.append(copy)
        else:
            rows.append(row)
        n += 1
    chunk.count = n
    chunk.last_position = last_position
    chunk.payload = b"".join(copies) if copy_text else rows
    return chunk
