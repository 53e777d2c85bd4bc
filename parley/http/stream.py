"""The SSE log tail ``GET /channels/:c/stream[?since=N]`` (channels.md §3, D7).

Frames are ``id: <cursor>`` + ``data: <sanitised JSON>``; the backlog comes
first, then every message the moment its append commits (the reader waits
on the channel's commit signal, no polling; the frames of one commit batch go
out as one body chunk, ADR-0042, built once for every tail that sends the same
page and written straight to an idle connection's socket, ADR-0054). ``Last-Event-ID`` resumes like
``since``. A ``: keep-alive`` comment goes out every 15 s. A tail holds one
stream slot (per identity, anonymous ones in their own pool) and is dropped
when its client stops reading (ADR-0022).
"""

from __future__ import annotations

import re
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from urllib.parse import parse_qs

import trio
from quart import Response

from ..actors.streams import StreamSlot
from ..domain.identity import Identity
from ..domain.message import check_cursor_in_log
from ..errors import InvalidRequest
from . import admission
from .auth import bearer, require_identity
from .revocation import TokenWatch

_CURSOR = re.compile(r"^\d+$")
KEEP_ALIVE = b": keep-alive\n\n"
PAGE = 500
SAFE_MAX = 2**53 - 1


def _since(request) -> int | None:
    query = parse_qs(request.scope.get("query_string", b"").decode("latin-1"), keep_blank_values=True)
    values = query.get("since")
    raw = values[0] if values else request.headers.get("last-event-id")
    if raw is None:
        return None
    if not _CURSOR.match(raw) or int(raw) > SAFE_MAX:
        raise InvalidRequest("since must be a non-negative integer cursor")
    return int(raw)


def sse_frames(first_cursor: int, encoded: list[bytes]) -> bytes:
    """The SSE frames of a page whose first message ends at ``first_cursor``, as ONE chunk."""
    return b"".join([b"id: %d\ndata: %s\n\n" % (cursor, data) for cursor, data in enumerate(encoded, first_cursor)])


def sse_chunk(data: bytes) -> bytes:
    """``data`` as one HTTP/1.1 chunk, byte for byte what h11 writes for it."""
    return b"%x\r\n%s\r\n" % (len(data), data)


class PageMemo:
    """The bytes a page goes out as, built once for all the tails that send it (ADR-0054).

    After a commit every live tail of the channel sends the same page: the
    same messages (the very ``bytes`` objects of the channel's encoded log,
    ADR-0041) from the same cursor. The first tail builds the page's bytes;
    the others find them here. An entry is keyed by the page's first cursor,
    its length and the identity of its first and last message bytes, and
    holds those two objects, so an id is never reused while its entry lives;
    a log rebuilt after an eviction has new objects, hence new entries.
    """

    def __init__(self, size: int = 64) -> None:
        self.size = size
        self.hits = 0
        self._entries: OrderedDict[tuple, tuple[bytes, bytes, bytes]] = OrderedDict()

    def get(self, kind: str, first_cursor: int, encoded: list[bytes], build: Callable[[int, list[bytes]], bytes]) -> bytes:
        first, last = encoded[0], encoded[-1]
        key = (kind, first_cursor, len(encoded), id(first), id(last))
        entry = self._entries.get(key)
        if entry is not None and entry[0] is first and entry[1] is last:
            self.hits += 1
            return entry[2]
        data = build(first_cursor, encoded)
        self._entries[key] = (first, last, data)
        if len(self._entries) > self.size:
            self._entries.popitem(last=False)
        return data


#: One memo for the process: its keys name the message objects, so tails of
#: different apps (tests) never share an entry.
PAGES = PageMemo()
KEEP_ALIVE_CHUNK = sse_chunk(KEEP_ALIVE)


def _sse_page_chunk(first_cursor: int, encoded: list[bytes]) -> bytes:
    return sse_chunk(sse_frames(first_cursor, encoded))


async def tail(backbone, channel: str, cursor: int) -> AsyncIterator[tuple[int, list[bytes] | None]]:
    """Yield ``(cursor_before, encoded)`` forever: backlog, then live commits.

    ``encoded`` is every committed message after ``cursor_before`` (up to a
    page), as the sanitised JSON bytes a frame carries, so a commit batch of
    N messages reaches a subscriber as one write of N frames, not N writes
    (ADR-0042). Yields ``(cursor, None)`` when a keep-alive is due: after
    each of the backbone's heartbeat ticks (one timer for all tails, not a
    timeout per wait).
    """
    signals = backbone.signals
    beats = signals.beats
    while not backbone.shutting_down:
        wake = signals.event(channel)
        encoded, head = await backbone.read_frames_from(channel, cursor, PAGE)
        if encoded:
            yield cursor, encoded
            cursor += len(encoded)
            if cursor < head:
                continue
            # Caught up with the head of that read: a commit since then set
            # ``wake`` (taken before the read), so wait on it without reading again.
        await wake.wait()
        if signals.beats != beats:
            beats = signals.beats
            yield cursor, None


def tail_identity(backbone, headers):
    """Who a tail counts against: the bearer's identity, ``None`` (anonymous) under
    open reads; a tail with a bad token under ``read_auth=token`` is 401."""
    header = headers.get("authorization")
    if backbone.settings.read_auth:
        return require_identity(backbone.tokens, header)
    return backbone.tokens.resolve(bearer(header))


def bound_tail_connection(settings):
    """A tail's connection: a small kernel send buffer and a short write deadline,
    so a client that stops reading is dropped (it resumes with ``Last-Event-ID``
    or ``?since=``) instead of holding its slot forever (ADR-0022)."""
    connection = admission.current()
    if connection is not None:
        connection.limit_send_buffer(settings.tail_send_buffer_bytes)
        connection.write_timeout = settings.tail_write_timeout_s
    return connection


@dataclass(frozen=True, slots=True)
class TailOpening:
    """A tail that passed the open checks: who, which channel, from where, its slot."""

    identity: Identity | None
    slug: str
    start: int
    slot: StreamSlot


def open_tail(backbone, request, channel: str) -> TailOpening:
    """The open checks every tail (SSE and WebSocket) makes, in the contract's
    order: bearer → ``since`` shape → channel → cursor in ``[0, head]`` → a
    stream slot (taken last, so a refused open holds none)."""
    identity = tail_identity(backbone, request.headers)
    since = _since(request)
    slug = backbone.check_channel(channel)
    head = backbone.directory.head(slug)
    start = head if since is None else check_cursor_in_log(since, head)
    return TailOpening(identity, slug, start, backbone.streams.acquire(identity))


async def open_stream(ctx, channel: str) -> Response:
    request, backbone = ctx.request, ctx.backbone
    opening = open_tail(backbone, request, channel)
    identity, slug, start, slot = opening.identity, opening.slug, opening.start, opening.slot
    slot.transport = bound_tail_connection(backbone.settings)
    token = bearer(request.headers.get("authorization"))
    watch = TokenWatch(backbone.tokens, token if identity is not None else None)
    # Over HTTP/1.1 h11 frames this body in chunks; the tail writes those
    # chunks itself when it can (ADR-0054). HTTP/1.0 bodies are close-delimited.
    direct = slot.transport if request.http_version == "1.1" else None

    async def body() -> AsyncIterator[bytes]:
        try:
            yield KEEP_ALIVE  # also sends the head, through Hypercorn
            async for cursor, encoded in tail(backbone, slug, start):
                if watch.revoked:
                    return  # ends at the next page or keep-alive (ADR-0022)
                if direct is None:
                    yield KEEP_ALIVE if encoded is None else sse_frames(cursor + 1, encoded)
                    continue
                if encoded is None:
                    chunk = KEEP_ALIVE_CHUNK
                else:
                    chunk = PAGES.get("sse", cursor + 1, encoded, _sse_page_chunk)
                sent = direct.write_now(chunk)
                if sent is None:  # the connection is busy or gone: Hypercorn's own path
                    yield KEEP_ALIVE if encoded is None else sse_frames(cursor + 1, encoded)
                elif sent < len(chunk):
                    try:
                        await direct.write_rest(chunk[sent:])
                    except (trio.BrokenResourceError, trio.ClosedResourceError):
                        return
        finally:
            slot.release()

    response = Response(body(), status=200)
    response.headers["content-type"] = "text/event-stream; charset=utf-8"
    response.headers["cache-control"] = "no-cache, no-transform"
    response.headers["connection"] = "keep-alive"
    response.headers["x-accel-buffering"] = "no"
    response.timeout = None
    return response
