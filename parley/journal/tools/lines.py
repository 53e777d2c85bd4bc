"""The NDJSON line of ``parley journal export`` (and ``tail --json``), and its parser.

One event per line, keys in this order, no spaces::

    {"position":7,"stream_id":"channel:x","seq":2,"type":"message","data":<DATA>,
     "recorded_at":1700000000.25,"prev_hash":"…","hash":"…"}

``<DATA>`` is the stored ``data`` column text embedded verbatim (never
decoded and re-encoded), so the chain hashes of an export can be checked
against the bytes in the file, and export → import → export is
byte-identical. The other values are encoded as orjson encodes them (its
output is deterministic). :func:`parse_line` recovers ``<DATA>`` exactly by
rebuilding the fixed prefix and suffix around it.

Speed (ADR-0044): a line is one ``bytes %`` format. Stream ids and types repeat,
so their JSON strings are cached; a hash that is plain ASCII letters and
digits (every real one) needs no escaping and is quoted directly.
"""

from __future__ import annotations

from typing import Any

import orjson

from .opening import ToolError

_dumps = orjson.dumps
_HEAD = b'{"position":%d,"stream_id":%s,"seq":%d,"type":%s,"data":'
_TAIL = b',"recorded_at":%s,"prev_hash":%s,"hash":%s}'
_LINE = _HEAD + b"%s" + _TAIL + b"\n"
_CACHE_LIMIT = 100_000
_quoted: dict[str, bytes] = {}


def quoted(text: str) -> bytes:
    """``text`` as a JSON string, cached (stream ids and event types repeat)."""
    q = _quoted.get(text)
    if q is None:
        if len(_quoted) >= _CACHE_LIMIT:
            _quoted.clear()
        q = _quoted[text] = _dumps(text)
    return q


def quoted_hash(value: str) -> bytes:
    """A hash as a JSON string: ASCII letters and digits need no escaping."""
    if value.isascii() and value.isalnum():
        return b'"%s"' % value.encode("ascii")
    return _dumps(value)


def head(position: int, stream_id: str, seq: int, type_: str) -> bytes:
    return _HEAD % (position, quoted(stream_id), seq, quoted(type_))


def tail(recorded_at: float, prev_hash: str, hash_: str) -> bytes:
    return _TAIL % (_dumps(float(recorded_at)), quoted_hash(prev_hash), quoted_hash(hash_))


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
    return _LINE % (
        position, quoted(stream_id), seq, quoted(type_), data,
        _dumps(float(recorded_at)), quoted_hash(prev_hash), quoted_hash(hash_),
    )  # fmt: skip


#: An event row from a line: position, stream_id, seq, type, data text,
#: recorded_at, prev_hash, hash (the ``events`` columns, in that order).
Row = tuple[int, str, int, str, str, float, str, str]


def parse_row(line: bytes, lineno: int = 0) -> Row:
    """One export line → an ``events`` row tuple, ``data`` being the exact embedded text.

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
    h = head(position, sid, seq, type_)
    t = tail(recorded_at, prev_hash, hash_)
    if line.startswith(h) and line.endswith(t) and len(line) > len(h) + len(t):
        raw = line[len(h) : len(line) - len(t)]
        # orjson's own encoding of the parsed object is one JSON object: the
        # usual case, decided without parsing the data a second time
        if raw != _dumps(data):
            try:
                embedded = orjson.loads(raw)
            except orjson.JSONDecodeError:
                embedded = None
            if not isinstance(embedded, dict):
                raise ToolError(f"{where}: the embedded data is not one JSON object")
    else:
        raw = _dumps(data)
    return (position, sid, seq, type_, raw.decode("utf-8"), recorded_at, prev_hash, hash_)


_KEYS = ("position", "stream_id", "seq", "type", "data", "recorded_at", "prev_hash", "hash")


def parse_line(line: bytes, lineno: int = 0) -> dict[str, Any]:
    """:func:`parse_row` as a dict keyed by column name."""
    return dict(zip(_KEYS, parse_row(line, lineno)))
