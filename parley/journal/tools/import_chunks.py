"""Parsing and hash-checking an export file's lines in worker processes, for ``journal import``.

A line's parse (:func:`.lines.parse_row`) and its hash recomputation depend on
that line alone; only the links between lines (positions increase, each
stream's ``seq`` and ``prev_hash`` follow on) need them in order. So a file is
cut into byte ranges at line starts, each range parsed and hash-checked by a
worker, and the importing process takes the ranges' rows in file order,
links them and inserts them (ADR-0044). A worker stops at its range's first
bad line and says where; the importer re-raises exactly the error the
sequential import gives for it, after the lines before it.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from ..store import compute_hash
from .lines import Row, parse_row
from .opening import ToolError

#: Bytes per range: about 10,000 lines of the benchmark journal.
CHUNK_BYTES = 4 << 20
#: Files smaller than this are imported in one process: a spawned worker
#: first spends ~0.7 s of CPU importing parley.
PARALLEL_MIN_BYTES = 32 << 20


@dataclass(slots=True)
class Chunk:
    """What a worker found in one byte range."""

    #: Lines in the range (blank ones included: they count for line numbers).
    lines: int
    #: Bytes of the range.
    size: int
    #: Parsed rows, in order, up to and including a row whose hash is wrong.
    rows: list[Row]
    #: Line index (0-based, in the range) of each row; None when it is the row's index.
    line_index: list[int] | None
    #: Index in ``rows`` of the row whose hash does not match, if any.
    bad_hash: int | None = None
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


def check_chunk(path: str, start: int, end: int) -> Chunk:
    """Parse and hash-check the lines of ``path[start:end]`` (a worker's job)."""
    with open(path, "rb") as f:
        f.seek(start)
        data = f.read(end - start)
    lines = data.split(b"\n")
    if lines and lines[-1] == b"":
        lines.pop()  # the range ends with a newline: no line after it
    rows: list[Row] = []
    index: list[int] = []
    dense = True
    chunk = Chunk(len(lines), len(data), rows, None)
    for i, line in enumerate(lines):
        if not line.strip():
            dense = False
            continue
        try:
            row = parse_row(line)
        except ToolError:
            chunk.bad_line = (i, line)
            break
        rows.append(row)
        index.append(i)
        position, sid, seq, type_, text, _at, prev_hash, hash_ = row
        if compute_hash(prev_hash, sid, seq, type_, text) != hash_:
            chunk.bad_hash = len(rows) - 1
            break
    chunk.line_index = None if dense else index
    return chunk
