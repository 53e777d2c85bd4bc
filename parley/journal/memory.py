"""``MemoryJournal``: the journal contract on plain dicts, in this trio run.

For the actor tests (no database, no server, no socket) and for trying
parley out. Nothing reaches a disk: its durability is nil (ADR-0028).

It keeps the contract of the SQL journal where the layers above can see
it: global positions in commit order, ``expected_seq`` checks, the hash
chain (so :meth:`verify` means the same), event data stored as its encoded
JSON text and decoded afresh on every read, side effects that commit with
their append or not at all, snapshots bound to the event they cover,
``on_commit`` callbacks after each commit. Every write commits on its own
(there is no batching to share); each operation yields to trio once, as a
thread round trip would.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Callable, Iterable
from typing import Any

import orjson
import trio

from .effects import AllOf, ChargeWindows, Effect, PutBlobs, ReleaseLease, check_effect
from .errors import ConcurrencyError, IntegrityFailure, JournalUnavailable, WindowFull
from .hashing import GENESIS_HASH, compute_hash, encode_data
from .leases import Lease, TakeResult
from .requests import checked_events
from .types import NewEvent, Snapshot, StoredEvent, VerifyReport
from .windows import _slot_prefix, window_key

log = logging.getLogger("parley.journal")

Row = tuple[int, str, int, str, bytes, float, str, str]  # position, stream, seq, type, text, at, prev, hash


def _event(row: Row) -> StoredEvent:
    pos, sid, seq, type_, text, at, prev, h = row
    return StoredEvent(pos, sid, seq, type_, orjson.loads(text), at, prev, h)


class MemoryJournal:
    """In-process journal implementing :class:`~parley.journal.backend.JournalBackend`."""

    shared = False
    listening = False

    def __init__(self) -> None:
        self._log: list[Row] = []
        self._streams: dict[str, list[Row]] = {}
        self._snapshots: dict[str, tuple[int, bytes, str]] = {}  # stream -> (seq, text, event hash)
        self._artifacts: dict[tuple[str, str], bytes] = {}
        self._meta: dict[str, str] = {}
        self._leases: dict[str, Lease] = {}
        self._commit_callbacks: list[Callable[[list[StoredEvent]], None]] = []
        self._closed = False
        self._commits = 0
        self._events = 0
        self.integrity_failures: dict[str, int] = {"snapshot": 0, "artifact": 0}

    # ------------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        self._closed = False

    async def aclose(self, timeout: float | None = None) -> None:
        self._closed = True

    async def __aenter__(self) -> MemoryJournal:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: Any) -> None:
        await self.aclose()

    async def change_probe(self) -> Callable[[], int | None] | None:
        """No probe: the tailer reads (this journal has no other writers; ADR-0049)."""
        return None

    async def listen(self, wake: Callable[[int], None], *, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        """No other process can write here: nothing to listen to."""
        task_status.started()

    @property
    def on_commit(self) -> list[Callable[[list[StoredEvent]], None]]:
        return self._commit_callbacks

    def statistics(self) -> dict[str, Any]:
        return {"queue_depth": 0, "batches": self._commits, "failed_batches": 0, "events": self._events,
                "last_error": None}

    async def _enter(self) -> None:
        await trio.lowlevel.checkpoint()
        if self._closed:
            raise JournalUnavailable("journal is closed")

    async def readiness(self) -> str | None:
        return None

    async def writer_failure(self) -> str | None:
        return None

    async def ping(self) -> None:
        await self._enter()

    # ------------------------------------------------------------------ events

    async def append(
        self, stream_id: str, events: Iterable[NewEvent], expected_seq: int, *, side_effect: Effect | None = None
    ) -> list[StoredEvent]:
        evs = checked_events(stream_id, events, expected_seq)
        texts = [encode_data(ev.data) for ev in evs]
        if side_effect is not None:
            check_effect(side_effect)
        await self._enter()
        rows = self._streams.get(stream_id, [])
        seq, prev = (rows[-1][2], rows[-1][7]) if rows else (0, GENESIS_HASH)
        if expected_seq != seq:
            raise ConcurrencyError(stream_id, expected_seq, seq)
        if side_effect is not None:
            self._apply(side_effect)  # raises before it changes anything
        now = time.time()
        stored: list[StoredEvent] = []
        position = self._log[-1][0] if self._log else 0
        for ev, text in zip(evs, texts):
            seq, position = seq + 1, position + 1
            h = compute_hash(prev, stream_id, seq, ev.type, text)
            row: Row = (position, stream_id, seq, ev.type, text, now, prev, h)
            self._log.append(row)
            self._streams.setdefault(stream_id, []).append(row)
            stored.append(StoredEvent(position, stream_id, seq, ev.type, ev.data, now, prev, h))
            prev = h
        self._committed(stored)
        return stored

    def _committed(self, stored: list[StoredEvent]) -> None:
        self._commits += 1
        self._events += len(stored)
        if stored:
            for cb in list(self._commit_callbacks):
                try:
                    cb(stored)
                except Exception:
                    log.exception("journal on_commit callback failed")

    async def read_stream(self, stream_id: str, after_seq: int = 0, limit: int | None = None) -> list[StoredEvent]:
        await self._enter()
        rows = self._streams.get(stream_id, [])[max(after_seq, 0) :]
        return [_event(r) for r in (rows if limit is None else rows[:limit])]

    async def read_all(self, after_position: int = 0, limit: int = 1000) -> list[StoredEvent]:
        await self._enter()
        start = max(after_position, 0)  # positions are 1..n without gaps here
        return [_event(r) for r in self._log[start : start + limit]]

    async def last_position(self) -> int:
        await self._enter()
        return self._log[-1][0] if self._log else 0

    async def last_seq(self, stream_id: str) -> int:
        await self._enter()
        return len(self._streams.get(stream_id, ()))

    async def fold_stream(self, stream_id: str, after_seq: int, apply: Callable[[str, dict[str, Any]], Any]) -> int:
        await self._enter()
        rows = self._streams.get(stream_id, [])[max(after_seq, 0) :]
        for row in rows:
            apply(row[3], orjson.loads(row[4]))
        return len(rows)

    async def verify(self) -> VerifyReport:
        await self._enter()
        checked = 0
        for n, sid in enumerate(sorted(self._streams), start=1):
            prev = GENESIS_HASH
            for expect, (pos, _sid, seq, type_, text, _at, prev_hash, h) in enumerate(self._streams[sid], start=1):
                checked += 1
                if seq != expect or prev_hash != prev or compute_hash(prev_hash, sid, seq, type_, text) != h:
                    return VerifyReport(False, n, checked, sid, pos, f"seq {seq}: the chain is broken")
                prev = h
        return VerifyReport(True, len(self._streams), checked)

    # ------------------------------------------------------------------ snapshots, artifacts, meta

    async def save_snapshot(self, stream_id: str, seq: int, data: dict[str, Any]) -> None:
        text = encode_data(data)
        await self._enter()
        rows = self._streams.get(stream_id, [])
        self._snapshots[stream_id] = (seq, text, rows[seq - 1][7] if 0 < seq <= len(rows) else "")

    async def load_snapshot(self, stream_id: str) -> Snapshot | None:
        """The snapshot if the event it covers still has the hash it was bound to."""
        await self._enter()
        found = self._snapshots.get(stream_id)
        if found is None:
            return None
        seq, text, event_hash = found
        rows = self._streams.get(stream_id, [])
        if not event_hash:  # saved with no event at its seq: never used (as in SQL)
            return None
        if seq > len(rows) or rows[seq - 1][7] != event_hash:
            self.integrity_failures["snapshot"] += 1
            return None
        return Snapshot(stream_id, seq, orjson.loads(text))

    async def put_artifact(self, channel: str, sha256: str, data: bytes) -> bool:
        await self._enter()
        new = (channel, sha256) not in self._artifacts
        self._apply(PutBlobs(channel, ((sha256, data),)))
        return new

    async def get_artifact(self, channel: str, sha256: str) -> bytes | None:
        await self._enter()
        data = self._artifacts.get((channel, sha256))
        if data is not None and hashlib.sha256(data).hexdigest() != sha256:
            self.integrity_failures["artifact"] += 1
            raise IntegrityFailure(f"artifact {sha256[:12]} of {channel} does not match its sha256")
        return data

    async def list_artifacts(self, channel: str) -> dict[str, int]:
        await self._enter()
        return {sha: len(data) for (ch, sha), data in self._artifacts.items() if ch == channel}

    async def artifact_sizes(self) -> dict[str, int]:
        await self._enter()
        sizes: dict[str, int] = {}
        for (ch, _sha), data in self._artifacts.items():
            sizes[ch] = sizes.get(ch, 0) + len(data)
        return sizes

    async def total_artifact_bytes(self) -> int:
        return sum((await self.artifact_sizes()).values())

    async def get_meta(self, key: str) -> str | None:
        await self._enter()
        return self._meta.get(key)

    async def put_meta_if_absent(self, key: str, value: str) -> str:
        await self._enter()
        return self._meta.setdefault(key, value)

    async def commit_effect(self, effect: Effect) -> None:
        check_effect(effect)
        await self._enter()
        self._apply(effect)

    # -- effects: every check runs before the first change, so a refusal changes nothing

    def _apply(self, effect: Effect) -> None:
        self._check(effect)
        self._do(effect)

    def _check(self, effect: Effect) -> None:
        if isinstance(effect, AllOf):
            for inner in effect.effects:
                self._check(inner)
        elif isinstance(effect, PutBlobs):
            for sha, data in effect.blobs:
                if hashlib.sha256(data).hexdigest() != sha:
                    raise ValueError("artifact bytes do not match their sha256")
        elif isinstance(effect, ReleaseLease):
            lease = self._leases.get(effect.session_id)
            if lease is None or lease.epoch != effect.epoch:
                raise ConcurrencyError(f"lease:{effect.session_id}", effect.epoch, -1)
        elif isinstance(effect, ChargeWindows):
            self._charged(effect)
        else:
            raise TypeError(f"not a journal effect: {type(effect).__name__}")

    def _do(self, effect: Effect) -> None:
        if isinstance(effect, AllOf):
            for inner in effect.effects:
                self._do(inner)
        elif isinstance(effect, PutBlobs):
            for sha, data in effect.blobs:
                self._artifacts.setdefault((effect.channel, sha), bytes(data))
        elif isinstance(effect, ReleaseLease):
            self._leases[effect.session_id] = Lease(effect.session_id, "", 0.0, effect.epoch)
        elif isinstance(effect, ChargeWindows):
            self._meta.update(self._charged(effect))

    def _charged(self, effect: ChargeWindows) -> dict[str, str]:
        """The window rows after the charge, or WindowFull (as :func:`windows.charge_windows`)."""
        rows = {}
        for item in effect.charges:
            key = window_key(item.scope, item.key)
            now_ms = max(item.stamps)
            old = self._meta.get(key)
            live = [s for s in (orjson.loads(old) if old else []) if s > now_ms - effect.window_ms]
            if len(live) + len(item.stamps) > item.cap:
                raise WindowFull(item.scope, item.key, sorted(live))
            rows[key] = orjson.dumps(sorted(live + list(item.stamps))).decode()
        return rows

    # ------------------------------------------------------------------ sessions

    async def take_lease(
        self,
        session_id: str,
        *,
        holder: str,
        now: float,
        expires_at: float,
        base_seq: int,
        holder_is_dead: Callable[[str], bool],
    ) -> TakeResult:
        await self._enter()
        lease = self._leases.get(session_id)
        if lease is not None and lease.held_by_other(holder, now, holder_is_dead):
            return None
        if len(self._streams.get(f"session:{session_id}", ())) != base_seq:
            return "moved"
        epoch = (0 if lease is None else lease.epoch) + 1
        self._leases[session_id] = Lease(session_id, holder, expires_at, epoch)
        return epoch

    async def release_lease(self, session_id: str, epoch: int) -> None:
        await self.commit_effect(ReleaseLease(session_id, epoch))

    async def reserve_start_key(self, key: str, expected_old: str | None, session_id: str) -> bool:
        await self._enter()
        if expected_old is None:
            return self._meta.setdefault(key, session_id) == session_id
        if self._meta.get(key) != expected_old:
            return False
        self._meta[key] = session_id
        return True

    async def reserve_session_slot(
        self, agent_id: str, owner: str, session_id: str, *, limit: int, now_ms: int, expires_ms: int
    ) -> bool:
        await self._enter()
        prefix = _slot_prefix(agent_id, owner)
        mine = {
            sid: ident for sid, ident in self._open_and_closed().items() if ident[:2] == (agent_id, owner)
        }
        for key in [k for k in self._meta if k.startswith(prefix)]:
            if int(self._meta[key]) <= now_ms or key[len(prefix) :] in mine:
                del self._meta[key]
        pending = sum(1 for k in self._meta if k.startswith(prefix))
        if sum(1 for ident in mine.values() if not ident[2]) + pending >= limit:
            return False
        self._meta[prefix + session_id] = str(expires_ms)
        return True

    async def release_session_slot(self, agent_id: str, owner: str, session_id: str) -> None:
        await self._enter()
        self._meta.pop(_slot_prefix(agent_id, owner) + session_id, None)

    async def lease_and_head(self, session_id: str) -> tuple[Lease | None, int]:
        await self._enter()
        return self._leases.get(session_id), len(self._streams.get(f"session:{session_id}", ()))

    def _open_and_closed(
        self, started_type: str = "session_started", closed_type: str = "session_closed"
    ) -> dict[str, tuple[str, str, bool]]:
        """Session id -> ``(agent_id, owner, closed)`` from the session streams."""
        out: dict[str, tuple[str, str, bool]] = {}
        for sid, rows in self._streams.items():
            if not sid.startswith("session:") or rows[0][3] != started_type:
                continue
            started = orjson.loads(rows[0][4])
            closed = any(r[3] == closed_type for r in rows)
            out[started["session_id"]] = (started["agent_id"], started["owner"], closed)
        return out

    # ------------------------------------------------------------------ read models

    async def channel_index(self) -> list[tuple[str, dict[str, Any], int, bool, int]]:
        await self._enter()
        out = []
        for sid, rows in self._streams.items():  # dicts keep creation order
            if sid.startswith("channel:") and rows[0][3] == "channel_created":
                head = sum(1 for r in rows if r[3] == "message")
                archived = any(r[3] == "channel_archived" for r in rows)
                out.append((sid, orjson.loads(rows[0][4]), head, archived, len(rows)))
        return out

    async def open_sessions(self, started_type: str, closed_type: str) -> dict[str, tuple[str, str]]:
        await self._enter()
        found = self._open_and_closed(started_type, closed_type)
        return {sid: (agent, owner) for sid, (agent, owner, closed) in found.items() if not closed}

    async def latest_subscriptions(self, session_ids: list[str]) -> dict[str, dict[str, int]]:
        await self._enter()
        out = {}
        for sid in session_ids:
            rows = self._streams.get(f"session:{sid}")
            if rows and rows[-1][3] == "turn_committed":
                out[sid] = dict(orjson.loads(rows[-1][4]).get("subscriptions") or {})
        return out
