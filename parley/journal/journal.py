"""The trio-facing journal: group-commit writes, threaded reads.

::

    journal = Journal.open("sqlite:///parley.db")
    await journal.start()
    try:
        stored = await journal.append("channel:general", [NewEvent("posted", {...})], expected_seq=0)
        events = await journal.read_stream("channel:general")
    finally:
        await journal.aclose()

or ``async with Journal.open(url) as journal: ...``.

Writes (appends, snapshots, artifacts, meta, leases) go through the one
:class:`~parley.journal.writer.GroupCommitWriter` thread; an awaited write has
been committed. Every operation is typed: callers name what to read or
write, never a function of a database connection (ADR-0026); the side effect
an append commits with is an :mod:`~parley.journal.effects` value. Reads run in ``trio.to_thread.run_sync`` limited by
a :class:`trio.CapacityLimiter` (4 threads by default). Database failures
surface as :class:`~parley.journal.errors.JournalUnavailable` (HTTP 503 in the
actor layer). The journal does not migrate the database; run
:func:`parley.journal.migrate.upgrade` first.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable, Iterable
from typing import Any, TypeVar

import trio
from sqlalchemy.engine import Connection, Engine

from . import leases as _leases
from . import queries as _queries
from . import store as _store
from . import windows as _windows
from .changes import SqliteChangeProbe
from .effects import Effect, apply_effect, check_effect
from .engine import make_engine
from .errors import IntegrityFailure, JournalUnavailable
from .leases import Lease, TakeResult
from .notify import CommitListener
from .store import AppendRequest, CallRequest, JournalStore, is_fatal_db_error, unavailable
from .types import NewEvent, Snapshot, StoredEvent, VerifyReport
from .writer import CommitCallback, GroupCommitWriter, WriterStatistics

T = TypeVar("T")

log = logging.getLogger("parley.journal")


class Journal:
    def __init__(
        self,
        engine: Engine,
        *,
        reader_threads: int = 4,
        max_batch: int = 512,
        own_engine: bool = True,
    ) -> None:
        self._engine = engine
        self.store = JournalStore(engine)
        self.writer = GroupCommitWriter(self.store, max_batch=max_batch)
        self._limiter = trio.CapacityLimiter(reader_threads)
        self._own_engine = own_engine
        self._started = False
        self._closed = False
        self._listening = False
        self._probe: SqliteChangeProbe | None = None
        #: Integrity failures met while serving, by kind ("snapshot", "artifact"): /metrics.
        self.integrity_failures: dict[str, int] = {"snapshot": 0, "artifact": 0}

    @classmethod
    def open(cls, url: str, *, reader_threads: int = 4, max_batch: int = 512, **engine_kwargs: Any) -> Journal:
        """Build a journal for ``url`` (not started yet; see :meth:`start`)."""
        return cls(
            make_engine(url, **engine_kwargs), reader_threads=reader_threads, max_batch=max_batch
        )

    # ------------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        """Start the writer thread; ``on_commit`` callbacks run in this trio run."""
        if self._started:
            raise RuntimeError("journal already started")
        self._started = True
        self.writer.start(trio.lowlevel.current_trio_token())

    async def aclose(self, timeout: float | None = None) -> None:
        """Commit what was already submitted, stop the writer thread, dispose.

        Shielded from cancellation. ``timeout`` bounds the wait for the writer
        thread (None: wait until the database answers or fails).
        """
        if self._closed:
            return
        self._closed = True
        with trio.CancelScope(shield=True):
            if self._probe is not None:
                self._probe.close()
            await trio.to_thread.run_sync(self.writer.close, timeout)
            if self._own_engine:
                await trio.to_thread.run_sync(self._engine.dispose)

    async def __aenter__(self) -> Journal:
        if not self._started:
            await self.start()
        return self

    async def __aexit__(self, *exc_info: Any) -> None:
        await self.aclose()

    # ------------------------------------------------------------------ other processes

    @property
    def shared(self) -> bool:
        """True when other processes may write the same database (Postgres)."""
        return self.store.is_postgres

    async def change_probe(self) -> Callable[[], int | None] | None:
        """A cheap, non-blocking "has anyone committed since the last call?" (ADR-0049).

        SQLite: a callable whose integer answer changes after any other
        connection's commit (``None``: unknown, read anyway). Postgres:
        ``None`` (its commit notifications wake the tailer instead).
        """
        if self.store.is_postgres:
            return None
        if self._probe is None:
            probe = SqliteChangeProbe(self._engine)
            await self._read(probe.open)
            self._probe = probe
        return self._probe

    @property
    def listening(self) -> bool:
        """True while :meth:`listen` holds a live notification connection."""
        return self._listening

    async def listen(self, wake: Callable[[int], None], *, task_status=trio.TASK_STATUS_IGNORED) -> None:
        """Until cancelled, call ``wake(position)`` (in this trio run) whenever
        another process commits to the same Postgres database, ``position``
        being the last of its commit (journal.notify).

        Reports started once the first connection attempt is over (up or
        failed; it keeps retrying). On SQLite there is nothing to listen to:
        it returns at once.
        """
        if not self.store.is_postgres:
            task_status.started()
            return
        token = trio.lowlevel.current_trio_token()
        first_attempt = trio.Event()

        def in_trio(fn: Callable[..., Any], *args: Any) -> None:
            try:
                token.run_sync_soon(fn, *args)
            except trio.RunFinishedError:
                pass

        def on_state(connected: bool) -> None:
            self._listening = connected
            in_trio(first_attempt.set)

        listener = CommitListener(self._engine, self.store.origin, functools.partial(in_trio, wake), on_state)
        listener.start()
        try:
            with trio.move_on_after(15):
                await first_attempt.wait()
            task_status.started()
            await trio.sleep_forever()
        finally:
            listener.stop()
            self._listening = False

    @property
    def on_commit(self) -> list[CommitCallback]:
        """Callbacks ``cb(events: list[StoredEvent])`` run in trio after each commit."""
        return self.writer.on_commit

    def statistics(self) -> WriterStatistics:
        """The writer's statistics (:class:`~parley.journal.writer.WriterStatistics`)."""
        return self.writer.statistics()

    # ------------------------------------------------------------------ writes

    async def append(
        self,
        stream_id: str,
        events: Iterable[NewEvent],
        expected_seq: int,
        *,
        side_effect: Effect | None = None,
    ) -> list[StoredEvent]:
        """Append ``events`` to ``stream_id`` if its last seq is ``expected_seq``.

        ``side_effect`` (an :mod:`~parley.journal.effects` value) commits in
        the same savepoint. Returns the committed events (their ``data`` is
        the very dict passed in; treat it as immutable). Raises
        ConcurrencyError on a version mismatch, the effect's exception if it
        failed (``WindowFull``, a moved lease: the request is rolled back
        alone), JournalUnavailable if the database failed.
        """
        effect = None if side_effect is None else functools.partial(apply_effect, effect=check_effect(side_effect))
        request = AppendRequest.create(stream_id, events, expected_seq, effect)
        return await self.writer.submit(request)

    async def _write(self, fn: Callable[[Connection], T]) -> T:
        """Run ``fn(conn)`` in its own savepoint of the next commit batch (journal-internal)."""
        return await self.writer.submit(CallRequest(fn))

    async def save_snapshot(self, stream_id: str, seq: int, data: dict[str, Any]) -> None:
        await self._write(lambda conn: _store.save_snapshot(conn, stream_id, seq, data))

    async def put_artifact(self, channel: str, sha256: str, data: bytes) -> bool:
        """Store content-addressed bytes (True if new). ValueError if sha256 is wrong."""
        return await self._write(lambda conn: _store.put_artifact(conn, channel, sha256, data))

    async def commit_effect(self, effect: Effect) -> None:
        """Commit ``effect`` alone, in its own savepoint of the next batch."""
        checked = check_effect(effect)
        await self._write(lambda conn: apply_effect(conn, checked))

    # -- session side tables (ADR-0026) --

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
        """Take the turn lease of ``session_id`` by compare-and-set: the new epoch;
        None when another live holder has it; ``"moved"`` when the stream is
        past ``base_seq``. ConcurrencyError when a racer changed the row."""
        return await self._write(
            functools.partial(
                _leases.take_lease,
                session_id=session_id,
                holder=holder,
                now=now,
                expires_at=expires_at,
                base_seq=base_seq,
                holder_is_dead=holder_is_dead,
            )
        )

    async def release_lease(self, session_id: str, epoch: int) -> None:
        """Give back a lease alone (ConcurrencyError if its epoch moved)."""
        await self._write(lambda conn: _leases.release_lease(conn, session_id, epoch))

    async def reserve_start_key(self, key: str, expected_old: str | None, session_id: str) -> bool:
        """Point a start Idempotency-Key at ``session_id`` (first writer wins, or
        compare-and-set from ``expected_old``); False if another got it."""
        return await self._write(lambda conn: _leases.reserve_start_key(conn, key, expected_old, session_id))

    async def reserve_session_slot(
        self, agent_id: str, owner: str, session_id: str, *, limit: int, now_ms: int, expires_ms: int
    ) -> bool:
        """Reserve a start slot counted across processes (ADR-0025); False at ``limit``."""
        return await self._write(
            _windows.reserve_session_slot(
                agent_id, owner, session_id, limit=limit, now_ms=now_ms, expires_ms=expires_ms
            )
        )

    async def release_session_slot(self, agent_id: str, owner: str, session_id: str) -> None:
        """Give back the slot of a start that did not commit."""
        await self._write(_windows.release_session_slot(agent_id, owner, session_id))

    async def writer_failure(self) -> str | None:
        """Why the writer cannot commit now, or None.

        Only while batches fail is a probe write sent through the writer (a
        failing writer gets no other batch to prove it recovered once the
        clients back off).
        """
        if self.writer.statistics().last_error is None:
            return None
        try:
            await self._write(_store.probe_write)
        except JournalUnavailable as exc:
            return str(exc) or type(exc).__name__
        return None

    async def put_meta_if_absent(self, key: str, value: str) -> str:
        """First write wins across processes; returns the stored value."""
        return await self._write(lambda conn: _store.put_meta_if_absent(conn, key, value))

    # ------------------------------------------------------------------ reads

    async def _read(self, fn: Callable[..., T], *args: Any) -> T:
        """Run ``fn(*args)`` in a reader thread (at most ``reader_threads`` at
        once); database failures become JournalUnavailable."""
        if self._closed:
            raise JournalUnavailable("journal is closed")
        try:
            return await trio.to_thread.run_sync(functools.partial(fn, *args), limiter=self._limiter)
        except Exception as e:
            if is_fatal_db_error(e):
                raise unavailable(e) from e
            raise

    async def read_stream(
        self, stream_id: str, after_seq: int = 0, limit: int | None = None
    ) -> list[StoredEvent]:
        return await self._read(self.store.read_stream, stream_id, after_seq, limit)

    async def read_all(self, after_position: int = 0, limit: int = 1000) -> list[StoredEvent]:
        return await self._read(self.store.read_all, after_position, limit)

    async def last_position(self) -> int:
        return await self._read(self.store.last_position)

    async def last_seq(self, stream_id: str) -> int:
        return await self._read(self.store.last_seq, stream_id)

    async def load_snapshot(self, stream_id: str) -> Snapshot | None:
        """The stream's snapshot if it matches its chain, else None (fold the events).

        A snapshot that does not match is refused: one warning line and a
        count in ``integrity_failures`` (ADR-0023). One written before schema
        revision 0003 is ignored quietly; the next snapshot replaces it.
        """
        snapshot, why = await self._read(self.store.load_checked_snapshot, stream_id)
        if why is not None and not why.startswith("unbound"):
            self.integrity_failures["snapshot"] += 1
            log.warning("refusing the snapshot of %s: %s; folding its events instead", stream_id, why)
        return snapshot

    async def get_artifact(self, channel: str, sha256: str) -> bytes | None:
        """The artifact's bytes, checked against their sha256 (IntegrityFailure if not)."""
        try:
            return await self._read(self.store.get_artifact, channel, sha256)
        except IntegrityFailure as exc:
            self.integrity_failures["artifact"] += 1
            log.warning("refusing to serve %s", exc)
            raise

    async def list_artifacts(self, channel: str) -> dict[str, int]:
        return await self._read(self.store.list_artifacts, channel)

    async def artifact_sizes(self) -> dict[str, int]:
        return await self._read(self.store.artifact_sizes)

    async def get_meta(self, key: str) -> str | None:
        return await self._read(self.store.get_meta, key)

    async def verify(self) -> VerifyReport:
        return await self._read(self.store.verify)

    # -- read models (queries.py) --

    async def fold_stream(self, stream_id: str, after_seq: int, apply: Callable[[str, dict[str, Any]], Any]) -> int:
        """Feed each event of ``stream_id`` after ``after_seq`` to ``apply(type, data)``
        in a reader thread (an actor's activation); returns how many."""
        return await self._read(_queries.fold_stream, self._engine, stream_id, after_seq, apply)

    async def channel_index(self) -> list[tuple[str, dict[str, Any], int, bool, int]]:
        """``(stream_id, descriptor, head, archived, last seq)`` per channel stream."""
        return await self._read(_queries.channel_index, self._engine)

    async def total_artifact_bytes(self) -> int:
        return await self._read(_queries.total_artifact_bytes, self._engine)

    async def open_sessions(self, started_type: str, closed_type: str) -> dict[str, tuple[str, str]]:
        """Open session id -> ``(agent_id, owner)``, from the session events' types."""
        return await self._read(_queries.open_sessions, self._engine, started_type, closed_type)

    async def latest_subscriptions(self, session_ids: list[str]) -> dict[str, dict[str, int]]:
        """Each session's cursors after its latest committed turn."""
        return await self._read(_queries.latest_subscriptions, self._engine, session_ids)

    async def lease_and_head(self, session_id: str) -> tuple[Lease | None, int]:
        """The session's turn lease and its stream's last seq, in one read."""
        return await self._read(_leases.lease_and_head, self._engine, session_id)

    async def readiness(self) -> str | None:
        """None when the database answers at the schema head, else why not.

        Runs outside the reader limiter: a probe must answer while reads queue."""
        return await trio.to_thread.run_sync(_queries.readiness, self._engine)

    async def ping(self) -> None:
        """Raise JournalUnavailable unless the database answers ``SELECT 1``."""
        await self._read(self.store.ping)

