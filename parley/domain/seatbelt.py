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

Decisions and records are apart (ADR-0037): a batch decides against a
:class:`PendingCharges` sheet, and the windows change only when the commit
has succeeded (:meth:`Seatbelt.charge`); a failed commit just drops the sheet.
"""

from __future__ import annotations

import bisect
from collections import OrderedDict
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from parley.errors import DuplicatePost, RateLimited

from . import caps

__all__ = [
    "DEFAULT_GLOBAL_RATE_MULTIPLIER",
    "DEFAULT_MAX_CHANNEL_CREATES_PER_MINUTE",
    "DEFAULT_MAX_POSTS_PER_MINUTE",
    "DEFAULT_MAX_TRACKED",
    "SEATBELT_WINDOW_MS",
    "PendingCharges",
    "Seatbelt",
    "SeatbeltStatistics",
]

DEFAULT_MAX_POSTS_PER_MINUTE = caps.MAX_POSTS_PER_MINUTE
DEFAULT_GLOBAL_RATE_MULTIPLIER = caps.GLOBAL_RATE_MULTIPLIER
DEFAULT_MAX_CHANNEL_CREATES_PER_MINUTE = caps.MAX_CHANNEL_CREATES_PER_MINUTE
SEATBELT_WINDOW_MS = 60_000
DEFAULT_MAX_TRACKED = 4096


@dataclass(frozen=True, slots=True)
class SeatbeltStatistics:
    """What :meth:`Seatbelt.statistics` reports (levels, then monotonic counts).

    ``channel_windows`` / ``global_windows`` / ``create_windows``: tracked
    sliding windows per scope; ``dup_baselines``: channel windows holding a
    previous post to compare with; ``pending_sheets``: batches decided but not
    yet committed; ``sweeps`` / ``swept_entries``: idle-window sweeps and the
    windows they forgot; ``lru_evictions``: windows dropped by the size cap.
    """

    channel_windows: int
    global_windows: int
    create_windows: int
    dup_baselines: int
    pending_sheets: int
    sweeps: int
    swept_entries: int
    lru_evictions: int


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
        self._tables = {"channel": self._channel, "global": self._global, "create": self._create}
        #: Sheets of decisions whose commit is still under way (see :meth:`pending`).
        self._open: list[PendingCharges] = []
        self._sweeps = 0
        self._swept = 0
        self._lru_evicted = 0

    # -- checks (never mutate) ------------------------------------------------

    def check_rate(self, channel: str, agent_id: str, now_ms: int) -> None:
        """Raise :class:`RateLimited` (channel scope, then global); charge nothing."""
        PendingCharges(self).check_rate(channel, agent_id, now_ms)

    def check_dup(self, channel: str, agent_id: str, dup_key: str) -> None:
        """Raise :class:`DuplicatePost` if ``dup_key`` repeats the previous post (N=1)."""
        PendingCharges(self).check_dup(channel, agent_id, dup_key)

    # -- one-shot decisions (tests, and any caller without a commit to wait for) --

    def admit_post(self, channel: str, agent_id: str, dup_key: str, now_ms: int) -> None:
        """Rate (channel, global), then dup, then charge both; nothing charged on raise."""
        with self.pending() as charges:
            charges.admit_post(channel, agent_id, dup_key, now_ms)
            self.charge(charges)

    def record_rate(self, channel: str, agent_id: str, now_ms: int) -> None:
        """Charge one post to both windows without touching the dup baseline (claims)."""
        with self.pending() as charges:
            charges.record_rate(channel, agent_id, now_ms)
            self.charge(charges)

    def admit_create(self, owner: str, now_ms: int) -> None:
        """Check and charge one channel create for ``owner`` in one step."""
        with self.pending() as charges:
            charges.admit_create(owner, now_ms)
            self.charge(charges)

    # -- decide now, charge after the commit ---------------------------------------

    @contextmanager
    def pending(self) -> Iterator[PendingCharges]:
        """A sheet of charges for decisions that have not committed yet.

        The channel actor decides a whole batch against the windows plus the
        sheet, commits, and only then charges it (:meth:`charge`). A commit that
        fails (503, a lost race decided again) leaves the block without
        charging, so its posts never count against the budget or become the
        dup baseline: nothing has to be undone. While the block is open,
        the sheet's stamps count for every other decider too (two channel
        actors deciding one agent's global window at the same time).
        """
        charges = PendingCharges(self)
        self._open.append(charges)
        try:
            yield charges
        finally:
            self._open.remove(charges)

    def charge(self, charges: PendingCharges) -> None:
        """Record what ``charges`` decided, in decision order (after its commit)."""
        tables = self._tables
        for entry in charges.log:
            if entry[0] == "stamp":
                _, scope, key, now_ms = entry
                self._record(tables[scope], key, now_ms)
            else:
                _, key, dup_key = entry
                track = self._channel.get(key)
                if track is not None:
                    track.dup_key = dup_key
        charges.log = []
        charges.stamps.clear()
        charges.dups.clear()

    # -- windows shared through the database (ADR-0025) ----------------------------

    def adopt(self, scope: str, key: str, stamps: list[int]) -> None:
        """Replace one window's stamps with the shared ones (every process's posts)."""
        table = self._tables[scope]
        track = table.get(key)
        if track is None:
            track = table[key] = _Track()
        track.stamps = sorted(stamps)
        if stamps:
            track.last_ms = max(track.last_ms, track.stamps[-1])

    def statistics(self) -> SeatbeltStatistics:
        """Map sizes, open sheets and eviction counters, for ``/metrics``."""
        return SeatbeltStatistics(
            channel_windows=len(self._channel),
            global_windows=len(self._global),
            create_windows=len(self._create),
            dup_baselines=sum(1 for t in self._channel.values() if t.dup_key is not None),
            pending_sheets=len(self._open),
            sweeps=self._sweeps,
            swept_entries=self._swept,
            lru_evictions=self._lru_evicted,
        )

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

    def _over(self, scope: str, key: str, cap: int, now_ms: int) -> int | None:
        """Milliseconds to wait if the window of ``key`` is full, else ``None``.

        Counts the recorded stamps and those of every open sheet. Recording a
        stamp prunes the window to ``stamp - window``, so a sheet's newest
        stamp is a horizon too: a clock that steps back within a batch sees
        the window that deciding one by one would have left.
        """
        window = (scope, key)
        horizon = now_ms - self.window_ms
        for sheet in self._open:
            noted = sheet.stamps.get(window)
            if noted and noted[-1] - self.window_ms > horizon:
                horizon = noted[-1] - self.window_ms
        live = 0
        oldest: int | None = None
        track = self._tables[scope].get(key)
        if track is not None:
            stamps = track.stamps
            first = bisect.bisect_right(stamps, horizon)
            if first < len(stamps):
                live = len(stamps) - first
                oldest = stamps[first]
        for sheet in self._open:
            noted = sheet.stamps.get(window)
            if noted:
                first = bisect.bisect_right(noted, horizon)
                if first < len(noted):
                    live += len(noted) - first
                    oldest = noted[first] if oldest is None else min(oldest, noted[first])
        if live < cap or oldest is None:
            return None
        return oldest + self.window_ms - now_ms

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


class PendingCharges:
    """The seatbelt decisions of one batch, not yet recorded (:meth:`Seatbelt.pending`).

    It offers the same decisions as :class:`Seatbelt`, each seeing the
    recorded windows plus every open sheet's stamps (so the surplus of a
    batch of N posts over the cap is refused), and keeps what it would
    record in ``log`` until the commit lets :meth:`Seatbelt.charge` apply it.
    """

    def __init__(self, belt: Seatbelt) -> None:
        self.belt = belt
        #: ``("stamp", scope, key, now_ms)`` and ``("dup", channel_key, dup_key)``, in order.
        self.log: list[tuple] = []
        #: The noted stamps per ``(scope, key)`` window, sorted.
        self.stamps: dict[tuple[str, str], list[int]] = {}
        self.dups: dict[str, str] = {}

    def check_rate(self, channel: str, agent_id: str, now_ms: int) -> None:
        """Raise :class:`RateLimited` (channel scope, then global); charge nothing."""
        belt = self.belt
        retry = belt._over("channel", _channel_key(channel, agent_id), belt.max_posts, now_ms)
        if retry is not None:
            raise RateLimited(
                f"Rate limit exceeded: at most {belt.max_posts} posts/min per agent. "
                f"Wait ~{_ceil_s(retry)}s before posting again, or batch your updates.",
                retry_after=retry / 1000,
            )
        retry = belt._over("global", agent_id, belt.global_max_posts, now_ms)
        if retry is not None:
            raise RateLimited(
                f"Rate limit exceeded: at most {belt.global_max_posts} posts/min per agent "
                f"across all channels. Wait ~{_ceil_s(retry)}s before posting again, "
                "or batch your updates.",
                retry_after=retry / 1000,
            )

    def check_dup(self, channel: str, agent_id: str, dup_key: str) -> None:
        """Raise :class:`DuplicatePost` if ``dup_key`` repeats the previous post (N=1).

        The previous post is this sheet's last one, else the recorded one: a
        channel's posts are decided by its one actor, a batch at a time.
        """
        key = _channel_key(channel, agent_id)
        previous = self.dups.get(key)
        if previous is None:
            track = self.belt._channel.get(key)
            previous = track.dup_key if track is not None else None
        if previous == dup_key:
            raise DuplicatePost()

    def admit_post(self, channel: str, agent_id: str, dup_key: str, now_ms: int) -> None:
        """Rate (channel, global), then dup, then note both; nothing noted on raise."""
        self.belt._maybe_sweep(now_ms)  # forgetting idle windows is no charge
        self.check_rate(channel, agent_id, now_ms)
        self.check_dup(channel, agent_id, dup_key)
        key = _channel_key(channel, agent_id)
        self._note("channel", key, now_ms)
        self.log.append(("dup", key, dup_key))
        self.dups[key] = dup_key
        self._note("global", agent_id, now_ms)

    def record_rate(self, channel: str, agent_id: str, now_ms: int) -> None:
        """Note one post in both windows without touching the dup baseline (claims)."""
        self.belt._maybe_sweep(now_ms)
        self._note("channel", _channel_key(channel, agent_id), now_ms)
        self._note("global", agent_id, now_ms)

    def admit_create(self, owner: str, now_ms: int) -> None:
        """Check and note one channel create for ``owner``."""
        belt = self.belt
        belt._maybe_sweep(now_ms)
        retry = belt._over("create", owner, belt.max_creates, now_ms)
        if retry is not None:
            raise RateLimited(
                f"Rate limit exceeded: at most {belt.max_creates} channel creates/min per owner. "
                f"Wait ~{_ceil_s(retry)}s before creating another channel.",
                retry_after=retry / 1000,
            )
        self._note("create", owner, now_ms)

    def charges(self) -> list[tuple[str, str, int, tuple[int, ...]]]:
        """The noted stamps as ``(scope, key, cap, stamps)``, one per window (ADR-0025)."""
        belt = self.belt
        caps = {"channel": belt.max_posts, "global": belt.global_max_posts, "create": belt.max_creates}
        grouped: dict[tuple[str, str], list[int]] = {}
        for entry in self.log:
            if entry[0] == "stamp":
                _, scope, key, now_ms = entry
                grouped.setdefault((scope, key), []).append(now_ms)
        return [(scope, key, caps[scope], tuple(stamps)) for (scope, key), stamps in grouped.items()]

    def __bool__(self) -> bool:
        return bool(self.log)

    def _note(self, scope: str, key: str, now_ms: int) -> None:
        self.log.append(("stamp", scope, key, now_ms))
        stamps = self.stamps.setdefault((scope, key), [])
        if not stamps or stamps[-1] <= now_ms:
            stamps.append(now_ms)
        else:
            bisect.insort(stamps, now_ms)


def _channel_key(channel: str, agent_id: str) -> str:
    return channel + "\0" + agent_id
