"""Seatbelts: per-agent post rate, per-owner create rate and the dup/loop guard.

Pure and clock-free (every method takes ``now_ms``) so the channel actor can
drive it from its own injectable clock and tests never sleep. Semantics follow
Caucus's ``seatbelt.ts`` exactly (contracts/channels.md §3 "Seatbelts"):

* sliding-window logs per ``channel + "\\0" + agent_id``, per ``agent_id``
  across all channels (global) and per channel-creating ``owner``;
* pruning drops stamps ``<= now - window``; a scope trips when
  ``len >= max``; the retry hint is ``oldest + window - now`` rounded up;
* rate is checked before dup (an over-cap duplicate reports
  ``rate_limited``) and nothing is recorded when a check raises;
* a lazy sweep, at most once per window and driven only from mutators,
  forgets entries idle for a whole window (so an identical re-post after
  ~60-120 s of quiet is accepted), and each map is an LRU capped at
  ``max_tracked`` so memory stays bounded whatever agents do.

The state is deliberately in-memory and not journaled: Caucus loses it on
restart too, and a budget is advisory back-pressure, not a durable fact.
With several processes on Postgres, the rate and create windows are also
kept in the database and checked with each append (``charges`` and
``adopt``, ADR-0025); this class stays the one place that decides.
"""

from __future__ import annotations

import bisect
from collections import OrderedDict
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from parley.errors import DuplicatePost, RateLimited

__all__ = [
    "DEFAULT_GLOBAL_RATE_MULTIPLIER",
    "DEFAULT_MAX_CHANNEL_CREATES_PER_MINUTE",
    "DEFAULT_MAX_POSTS_PER_MINUTE",
    "DEFAULT_MAX_TRACKED",
    "SEATBELT_WINDOW_MS",
    "Seatbelt",
]

DEFAULT_MAX_POSTS_PER_MINUTE = 30
DEFAULT_GLOBAL_RATE_MULTIPLIER = 4
DEFAULT_MAX_CHANNEL_CREATES_PER_MINUTE = 10
SEATBELT_WINDOW_MS = 60_000
DEFAULT_MAX_TRACKED = 4096


@dataclass
class _Track:
    """One sliding-window log; ``dup_key`` is used by the channel map only."""

    stamps: list[int] = field(default_factory=list)
    last_ms: int = 0
    dup_key: str | None = None


def _ceil_s(ms: int) -> int:
    return -(-ms // 1000)


def _positive_int(name: str, value: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return value


class Seatbelt:
    """Rate and duplicate guard for one backbone (all channels share it)."""

    def __init__(
        self,
        *,
        max_posts_per_minute: int = DEFAULT_MAX_POSTS_PER_MINUTE,
        global_max_posts_per_minute: int | None = None,
        max_creates_per_minute: int = DEFAULT_MAX_CHANNEL_CREATES_PER_MINUTE,
        window_ms: int = SEATBELT_WINDOW_MS,
        max_tracked: int = DEFAULT_MAX_TRACKED,
    ) -> None:
        self.max_posts = _positive_int("max_posts_per_minute", max_posts_per_minute)
        if global_max_posts_per_minute is None:
            global_max_posts_per_minute = DEFAULT_GLOBAL_RATE_MULTIPLIER * self.max_posts
        self.global_max_posts = _positive_int(
            "global_max_posts_per_minute", global_max_posts_per_minute
        )
        self.max_creates = _positive_int("max_creates_per_minute", max_creates_per_minute)
        self.window_ms = _positive_int("window_ms", window_ms)
        self.max_tracked = _positive_int("max_tracked", max_tracked)
        self._channel: OrderedDict[str, _Track] = OrderedDict()
        self._global: OrderedDict[str, _Track] = OrderedDict()
        self._create: OrderedDict[str, _Track] = OrderedDict()
        self._last_sweep_ms: int | None = None
        #: While not None, every record made is logged here so it can be undone.
        self._undo: list[tuple] | None = None
        self._sweeps = 0
        self._swept = 0
        self._lru_evicted = 0

    # -- checks (never mutate) ------------------------------------------------

    def check_rate(self, channel: str, agent_id: str, now_ms: int) -> None:
        """Raise :class:`RateLimited` (channel scope, then global); record nothing."""
        track = self._channel.get(_channel_key(channel, agent_id))
        retry = self._over(track, self.max_posts, now_ms)
        if retry is not None:
            raise RateLimited(
                f"Rate limit exceeded: at most {self.max_posts} posts/min per agent. "
                f"Wait ~{_ceil_s(retry)}s before posting again, or batch your updates.",
                retry_after=retry / 1000,
            )
        retry = self._over(self._global.get(agent_id), self.global_max_posts, now_ms)
        if retry is not None:
            raise RateLimited(
                f"Rate limit exceeded: at most {self.global_max_posts} posts/min per agent "
                f"across all channels. Wait ~{_ceil_s(retry)}s before posting again, "
                "or batch your updates.",
                retry_after=retry / 1000,
            )

    def check_dup(self, channel: str, agent_id: str, dup_key: str) -> None:
        """Raise :class:`DuplicatePost` if ``dup_key`` repeats the previous post (N=1)."""
        track = self._channel.get(_channel_key(channel, agent_id))
        if track is not None and track.dup_key == dup_key:
            raise DuplicatePost()

    # -- mutators -------------------------------------------------------------

    def admit_post(self, channel: str, agent_id: str, dup_key: str, now_ms: int) -> None:
        """Rate (channel, global), then dup, then record both; nothing recorded on raise."""
        self._maybe_sweep(now_ms)
        self.check_rate(channel, agent_id, now_ms)
        self.check_dup(channel, agent_id, dup_key)
        key = _channel_key(channel, agent_id)
        track = self._record(self._channel, key, now_ms)
        if self._undo is not None:
            self._undo.append(("dup", key, track.dup_key, dup_key))
        track.dup_key = dup_key
        self._record(self._global, agent_id, now_ms)

    def record_rate(self, channel: str, agent_id: str, now_ms: int) -> None:
        """Charge one post to both windows without touching the dup baseline (claims)."""
        self._maybe_sweep(now_ms)
        self._record(self._channel, _channel_key(channel, agent_id), now_ms)
        self._record(self._global, agent_id, now_ms)

    def admit_create(self, owner: str, now_ms: int) -> None:
        """Check and record one channel create for ``owner`` in one step."""
        self._maybe_sweep(now_ms)
        retry = self._over(self._create.get(owner), self.max_creates, now_ms)
        if retry is not None:
            raise RateLimited(
                f"Rate limit exceeded: at most {self.max_creates} channel creates/min per owner. "
                f"Wait ~{_ceil_s(retry)}s before creating another channel.",
                retry_after=retry / 1000,
            )
        self._record(self._create, owner, now_ms)

    # -- undo (a decision whose journal commit failed) ---------------------------

    @contextmanager
    def undo_log(self) -> Iterator[list[tuple]]:
        """Log every record made inside the block, so it can be undone.

        The channel actor decides a batch synchronously, records the posts,
        and only then commits them; if the commit fails (503, or a lost
        race that is decided again), the posts never happened and must not
        count against the budget or become the dup baseline, or the client's
        retry of the very same message would be refused as a duplicate.
        """
        self._undo = log = []
        try:
            yield log
        finally:
            self._undo = None

    def undo(self, log: list[tuple]) -> None:
        """Take back the records in ``log`` (newest first)."""
        tables = {"channel": self._channel, "global": self._global, "create": self._create}
        for entry in reversed(log):
            if entry[0] == "dup":
                _, key, previous, dup_key = entry
                track = self._channel.get(key)
                if track is not None and track.dup_key == dup_key:
                    track.dup_key = previous
            else:
                _, table, key, now_ms = entry
                track = tables[table].get(key)
                if track is not None and now_ms in track.stamps:
                    track.stamps.remove(now_ms)

    # -- windows shared through the database (ADR-0025) ----------------------------

    def charges(self, log: list[tuple]) -> list[tuple[str, str, int, tuple[int, ...]]]:
        """The stamps recorded in ``log`` as ``(scope, key, cap, stamps)``, one per window."""
        caps = {"channel": self.max_posts, "global": self.global_max_posts, "create": self.max_creates}
        grouped: dict[tuple[str, str], list[int]] = {}
        for entry in log:
            if entry[0] == "stamp":
                _, table, key, now_ms = entry
                grouped.setdefault((table, key), []).append(now_ms)
        return [(scope, key, caps[scope], tuple(stamps)) for (scope, key), stamps in grouped.items()]

    def adopt(self, scope: str, key: str, stamps: list[int]) -> None:
        """Replace one window's stamps with the shared ones (every process's posts)."""
        table = {"channel": self._channel, "global": self._global, "create": self._create}[scope]
        track = table.get(key)
        if track is None:
            track = table[key] = _Track()
        track.stamps = sorted(stamps)
        if stamps:
            track.last_ms = max(track.last_ms, track.stamps[-1])

    def statistics(self) -> dict[str, int]:
        """Map sizes and eviction counters, for ``/metrics``."""
        return {
            "channel_windows": len(self._channel),
            "global_windows": len(self._global),
            "create_windows": len(self._create),
            "dup_baselines": sum(1 for t in self._channel.values() if t.dup_key is not None),
            "sweeps": self._sweeps,
            "swept_entries": self._swept,
            "lru_evictions": self._lru_evicted,
        }

    # -- internals ------------------------------------------------------------

    def _first_live(self, track: _Track, now_ms: int) -> int:
        """Index of the oldest stamp still in the window (``track.stamps`` is kept sorted).

        Sorted rather than in arrival order, so a backwards clock cannot hide
        a stamp from the pruning, and a stamp in the "future" still counts.
        A binary search: a bulk writer with raised caps holds tens of
        thousands of stamps, and rebuilding that list on every check was a
        third of the server's CPU under pipelined ingestion.
        """
        return bisect.bisect_right(track.stamps, now_ms - self.window_ms)

    def _over(self, track: _Track | None, cap: int, now_ms: int) -> int | None:
        """Milliseconds to wait if the window is full, else ``None``."""
        if track is None:
            return None if cap > 0 else 0
        first = self._first_live(track, now_ms)
        if len(track.stamps) - first < cap:
            return None
        return track.stamps[first] + self.window_ms - now_ms

    def _record(self, table: OrderedDict[str, _Track], key: str, now_ms: int) -> _Track:
        track = table.get(key)
        if track is None:
            track = table[key] = _Track(last_ms=now_ms)
            while len(table) > self.max_tracked:
                table.popitem(last=False)
                self._lru_evicted += 1
        else:
            table.move_to_end(key)
        stamps = track.stamps
        del stamps[: self._first_live(track, now_ms)]
        if not stamps or stamps[-1] <= now_ms:
            stamps.append(now_ms)
        else:
            bisect.insort(stamps, now_ms)
        if self._undo is not None:
            name = "channel" if table is self._channel else "global" if table is self._global else "create"
            self._undo.append(("stamp", name, key, now_ms))
        track.last_ms = max(track.last_ms, now_ms)
        return track

    def _maybe_sweep(self, now_ms: int) -> None:
        last = self._last_sweep_ms
        if last is None or now_ms < last:
            # First use, or the clock went backwards: re-anchor, sweep later.
            self._last_sweep_ms = now_ms
            return
        if now_ms - last < self.window_ms:
            return
        self._last_sweep_ms = now_ms
        self._sweeps += 1
        for table in (self._channel, self._global, self._create):
            idle = [k for k, t in table.items() if self._is_idle(t, now_ms)]
            for key in idle:
                del table[key]
            self._swept += len(idle)

    def _is_idle(self, track: _Track, now_ms: int) -> bool:
        return now_ms - track.last_ms >= self.window_ms and self._first_live(track, now_ms) == len(track.stamps)


def _channel_key(channel: str, agent_id: str) -> str:
    return channel + "\0" + agent_id
