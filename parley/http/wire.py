"""Wire helpers: path parsing, bounded body reading, JSON and error responses.

Everything here follows channels.md §4.1: the query string is dropped, empty
segments are ignored, each segment is strictly percent-decoded (a bad escape
is ``400 invalid_request``), bodies over the cap are ``413`` and close the
connection, and a non-empty body that is not JSON is ``400 invalid_json``.
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import unquote_to_bytes

import orjson
import trio
from quart import Response

from ..domain.text import fragment
from ..errors import InvalidJson, InvalidRequest, ParleyError, PayloadTooLarge, RequestTimeout

JSON_TYPE = "application/json; charset=utf-8"
_BAD_ESCAPE = re.compile(r"%(?![0-9A-Fa-f]{2})")


def split_path(raw_path: bytes) -> list[str]:
    """Split and ``decodeURIComponent`` each non-empty segment."""
    path = raw_path.split(b"?", 1)[0].decode("latin-1")
    segments = []
    for segment in path.split("/"):
        if segment == "":
            continue
        if _BAD_ESCAPE.search(segment):
            raise _malformed(segment)
        try:
            segments.append(unquote_to_bytes(segment).decode("utf-8"))
        except UnicodeDecodeError:
            raise _malformed(segment) from None
    return segments


def _malformed(segment: str) -> InvalidRequest:
    return InvalidRequest(f"malformed percent-encoding in path: {fragment(segment)}")


async def read_body(
    request, limit: int, error: type[ParleyError] | ParleyError = PayloadTooLarge, *, timeout: float | None = None
) -> bytes:
    """Buffer the request body, refusing as soon as it grows past ``limit`` bytes.

    The whole body must arrive within ``timeout`` seconds of the request's
    start (``408 request_timeout``, connection closed). Quart's own
    ``BODY_TIMEOUT`` only guards ``get_data()``, not iterating
    ``request.body``, so a stalled body used to hold its connection forever.
    """
    length = request.headers.get("content-length")
    if length is not None and length.isdigit() and int(length) > limit:
        raise error if isinstance(error, ParleyError) else error()
    chunks: list[bytes] = []
    size = 0
    deadline = request.scope.get(REQUEST_STARTED, trio.current_time()) + (timeout if timeout is not None else float("inf"))
    with trio.move_on_at(deadline) as scope:
        async for chunk in request.body:
            size += len(chunk)
            if size > limit:
                raise error if isinstance(error, ParleyError) else error()
            chunks.append(chunk)
    if scope.cancelled_caught:
        raise RequestTimeout()
    request.scope[BODY_READ] = True
    return b"".join(chunks)


#: ``trio.current_time()`` when the request's handler started (its body deadline counts from there).
REQUEST_STARTED = "parley.request_started"


#: Set in the request scope once :func:`read_body` has consumed the whole body.
BODY_READ = "parley.body_read"


def unread_body(request) -> bool:
    """True when the request announced a body that was not read to its end.

    Answering such a request early (401 or 413 before the body, a route that
    never reads one) must close the connection: Hypercorn cannot reuse it with
    body bytes still in flight, and its own attempt to close runs in the
    already-cancelled request scope, which left the connection hanging.
    """
    if request.scope.get(BODY_READ):
        return False
    length = request.headers.get("content-length")
    if length is not None:
        return length.strip() not in ("", "0")
    return "transfer-encoding" in request.headers


#: Deepest nesting accepted in a request body or frame. orjson parses up to
#: 1024 levels but serialises only ~254, and the fingerprints re-serialise
#: what was parsed: a body nested 255-1024 deep was a 500 and an actor restart.
#: Nothing in the wire format nests more than a few levels.
MAX_JSON_DEPTH = 128


def loads_bounded(raw: bytes | str) -> Any:
    """``orjson.loads`` that also refuses (``JSONDecodeError``) nesting deeper than :data:`MAX_JSON_DEPTH`."""
    value = orjson.loads(raw)
    data = raw.encode("utf-8", "surrogatepass") if isinstance(raw, str) else raw
    if data.count(b"[") + data.count(b"{") > MAX_JSON_DEPTH and _too_deep(value, MAX_JSON_DEPTH):
        raise orjson.JSONDecodeError("JSON nested too deeply", "", 0)
    return value


def _too_deep(value: Any, limit: int) -> bool:
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        children = item.values() if isinstance(item, dict) else item
        if depth > limit:
            return True
        stack.extend((c, depth + 1) for c in children if isinstance(c, (dict, list)))
    return False


def parse_json(raw: bytes) -> Any:
    """``None`` for an empty body (treated as absent), else the parsed value.

    Only a zero-length body is absent: whitespace is a non-empty body that
    ``JSON.parse`` rejects, so it is ``invalid_json`` (§4.1). So is a body
    nested deeper than :data:`MAX_JSON_DEPTH`.
    """
    if raw == b"":
        return None
    try:
        return loads_bounded(raw)
    except orjson.JSONDecodeError:
        raise InvalidJson() from None


def json_response(status: int, body: Any, headers: dict[str, str] | None = None) -> Response:
    payload = body if isinstance(body, bytes) else orjson.dumps(body)
    response = Response(payload, status=status, content_type=JSON_TYPE)
    if headers:
        for name, value in headers.items():
            response.headers[name] = value
    return response


def error_response(error: ParleyError) -> Response:
    return json_response(error.status, error.envelope(), error_headers(error))


def error_headers(error: ParleyError) -> dict[str, str]:
    """The headers an error's envelope carries besides the content type and length."""
    headers = {}
    retry_after = error.retry_after_header()
    if retry_after is not None:
        headers["Retry-After"] = retry_after
    return headers


def require_object(body: Any) -> dict[str, Any]:
    if not isinstance(body, dict):
        raise InvalidRequest("request body must be a JSON object")
    return body
