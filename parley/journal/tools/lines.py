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
_loads = orjson.loads
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


_DATA_KEY = b',"data":'
_TAIL_KEY = b',"recorded_at":'
_KEYS = ("position", "stream_id", "seq", "type", "data", "recorded_at", "prev_hash", "hash")


def parse_row(line: bytes, lineno: int = 0) -> Row:
    """One export line → an ``events`` row tuple, ``data`` being the exact embedded text.

    The embedded ``data`` bytes are the ones between the line's first
    ``,"data":`` and its last ``,"recorded_at":`` (neither can occur inside
    a JSON string of the fields around them, and nothing after ``data`` but
    those strings). The fields around them are parsed on their own (``data``
    replaced by ``0``) and must re-encode to exactly those bytes (the line's
    fixed prefix and suffix, as export writes them); the data is parsed once
    and must be one JSON object: the line is not parsed twice. Anything else
    (other key order, spaces, a wrong type, invalid JSON) takes the strict
    path, which parses the whole line,
    rebuilds its fixed prefix and suffix to find the data, falls back to
    re-encoding ``data`` with orjson for a reformatted line (the chain check
    then tells whether those bytes are the original ones), and words every
    error.
    """
    body = line.rstrip(b"\r\n")
    start = body.find(_DATA_KEY) + len(_DATA_KEY)
    end = body.rfind(_TAIL_KEY)
    if start > len(_DATA_KEY) and end > start:
        around = body[:start] + b"0" + body[end:]
        try:
            fields = _loads(around)
            data = _loads(body[start:end])
        except orjson.JSONDecodeError:
            fields = data = None
        if type(fields) is dict and type(data) is dict and tuple(fields) == _KEYS and _dumps(fields) == around:
            position, sid, seq, type_, _zero, recorded_at, prev_hash, hash_ = fields.values()
            if (
                type(position) is int and position > 0 and type(seq) is int and seq > 0
                and type(sid) is str and sid and type(type_) is str and type_
                and type(prev_hash) is str and type(hash_) is str and type(recorded_at) is float
            ):  # fmt: skip
                raw = body[start:end]
                return (position, sid, seq, type_, raw.decode("utf-8"), float(recorded_at), prev_hash, hash_)
    return _parse_row_strictly(line, lineno)


def _parse_row_strictly(line: bytes, lineno: int = 0) -> Row:
    """:func:`parse_row` by parsing the whole line: every error message comes from here."""
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


def parse_line(line: bytes, lineno: int = 0) -> dict[str, Any]:
    """:func:`parse_row` as a dict keyed by column name."""
    return dict(zip(_KEYS, parse_row(line, lineno)))
