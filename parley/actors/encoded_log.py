"""The JSON bytes of a channel's committed messages, each encoded once (ADR-0041).

A channel's log only grows: a message below the committed head never
changes (no redaction, no edit; a claim's ledger lives beside the log, and
archiving only stops writes), and an uncommitted one is never shown. So the
bytes a read page or a tail frame carries for message ``i`` are the same on
every request, and encoding them again for every page and every subscriber
was the read path's largest own cost. :class:`EncodedLog` keeps them, in two
forms: ``raw`` (``orjson.dumps(message)``, what ``/read`` returns, stored
messages unsanitised) and ``clean`` (the sanitised copy the SSE ``data:``
line and the WebSocket frame carry), which is the ``raw`` object itself
whenever sanitising changes nothing (always, for content written through
the write rules). Entries are filled lazily, in order, only below the
committed head the caller passes.

:class:`EncodedBudget` bounds the memory of all logs of one process
together: past its byte cap the least recently used logs are dropped whole
(they are rebuilt on their next read, at the old cost). A log belongs to one
:class:`~parley.domain.channel.ChannelState` object; when the actor replaces
its state (activation, reload) it starts a fresh log, so nothing cached can
outlive the state it was read from.

A read page of the committed prefix is the same bytes on every request too
(``/read`` from cursor ``c`` up to ``stop``), so each log also keeps the
last :data:`PAGES_KEPT` pages it built whole (:meth:`EncodedLog.page`,
ADR-0058), charged to the same budget: a repeated scan is a dictionary
lookup per page instead of a slice of the list and two joins of ~100 KB.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from typing import Any

import orjson

from ..domain.message import sanitize_message_fields

#: Default byte cap of all channels' encoded messages together (PARLEY_READ_CACHE_BYTES).
DEFAULT_CACHE_BYTES = 64 * 1024 * 1024
#: Whole read pages kept per log (least recently built first out).
PAGES_KEPT = 64


class EncodedBudget:
    """The shared byte cap of every :class:`EncodedLog`; evicts least recently used logs."""

    def __init__(self, cap_bytes: int = DEFAULT_CACHE_BYTES) -> None:
        self.cap_bytes = cap_bytes
        self.used_bytes = 0
        self.evictions = 0
        self._logs: OrderedDict[int, EncodedLog] = OrderedDict()

    def touch(self, log: EncodedLog) -> None:
        self._logs[id(log)] = log
        self._logs.move_to_end(id(log))

    def charge(self, log: EncodedLog, size: int) -> None:
        """Count ``size`` more bytes of ``log`` (just touched); evict until under the cap."""
        self.used_bytes += size
        while self.used_bytes > self.cap_bytes and self._logs:
            _, victim = self._logs.popitem(last=False)
            victim._drop()
            if victim is log:
                log._oversize = True  # it alone exceeds the cap: served uncached from now on
                break
            self.evictions += 1

    def release(self, log: EncodedLog) -> None:
        """Forget ``log`` (its actor replaced or dropped its state)."""
        if self._logs.pop(id(log), None) is not None:
            log._drop()


class EncodedLog:
    """Encoded bytes of ``messages[i]`` for the committed prefix of one state's log."""

    def __init__(self, messages: list[dict[str, Any]], budget: EncodedBudget) -> None:
        self._messages = messages
        self._budget = budget
        self._raw: list[bytes] = []
        self._clean: list[bytes] = []
        self._bytes = 0
        self._oversize = False
        self._pages: OrderedDict[tuple[int, int], bytes] = OrderedDict()

    @property
    def messages(self) -> list[dict[str, Any]]:
        return self._messages

    @property
    def cached(self) -> int:
        """How many messages have their bytes kept (for tests and statistics)."""
        return len(self._raw)

    def raw(self, start: int, stop: int) -> list[bytes]:
        """``orjson.dumps`` of ``messages[start:stop]``; ``stop`` must not pass the committed head."""
        self._fill(stop)
        if len(self._raw) >= stop:
            return self._raw[start:stop]
        return [orjson.dumps(m) for m in self._messages[start:stop]]  # over the budget: uncached

    def page(self, start: int, stop: int, build: Callable[[list[bytes], int], bytes]) -> bytes:
        """``build(raw(start, stop), stop)``, kept for the next request of the same page.

        ``build`` must depend only on its arguments (the page's bytes are fixed
        by ``start`` and ``stop`` below the committed head); a page over the
        budget, or of a log served uncached, is built every time.
        """
        key = (start, stop)
        body = self._pages.get(key)
        if body is not None:
            self._budget.touch(self)
            return body
        parts = self.raw(start, stop)
        body = build(parts, stop)
        if len(self._raw) >= stop and not self._oversize:
            self._pages[key] = body
            added = len(body)
            if len(self._pages) > PAGES_KEPT:
                _, old = self._pages.popitem(last=False)
                added -= len(old)
            self._bytes += added
            self._budget.charge(self, added)
        return body

    def clean(self, start: int, stop: int) -> list[bytes]:
        """The sanitised JSON (SSE ``data:`` / WebSocket ``message``) of ``messages[start:stop]``."""
        self._fill(stop)
        if len(self._clean) >= stop:
            return self._clean[start:stop]
        return [_clean_bytes(m, orjson.dumps(m)) for m in self._messages[start:stop]]

    def _fill(self, stop: int) -> None:
        budget = self._budget
        if budget.cap_bytes <= 0 or self._oversize:
            return
        budget.touch(self)
        have = len(self._raw)
        if have >= stop:
            return
        added = 0
        for message in self._messages[have:stop]:
            raw = orjson.dumps(message)
            clean = _clean_bytes(message, raw)
            self._raw.append(raw)
            self._clean.append(clean)
            added += len(raw) + (0 if clean is raw else len(clean))
        self._bytes += added
        budget.charge(self, added)

    def _drop(self) -> None:
        self._budget.used_bytes -= self._bytes
        self._bytes = 0
        self._raw = []
        self._clean = []
        self._pages = OrderedDict()


def _clean_bytes(message: dict[str, Any], raw: bytes) -> bytes:
    clean = sanitize_message_fields(message)
    return raw if clean == message else orjson.dumps(clean)
