"""The group-commit writer: one OS thread, one transaction per batch.

Requests arrive on a :class:`queue.Queue`. The thread blocks for the first
request, then drains every request already waiting (up to ``max_batch``) and
commits them all in ONE transaction (:meth:`JournalStore.run_batch`), each
request inside its own SAVEPOINT so that one request's conflict or failing
side effect is rolled back alone. While a batch commits, new requests queue
up and form the next batch, so under load the cost of a commit (an fsync on
SQLite, a round trip + WAL flush on Postgres) is shared by everyone waiting.

Waking trio waiters: each request carries the :class:`trio.lowlevel.TrioToken`
captured at submit time. After the batch the thread makes ONE
``token.run_sync_soon`` call per distinct token that sets every waiter's result
and its :class:`trio.Event`. The ``on_commit`` callbacks (live tails) run in
the same trio callback, before the waiters are woken, so an appender's ack
never overtakes the push of its events to in-process tails.

Global order (Postgres): every batch transaction starts with
``PG_WRITE_LOCK`` (an advisory lock per schema), so across all processes only one
batch inserts at a time and positions (a BIGSERIAL) are drawn and committed in
the same order; the lock is released only after the commit is visible. A
tailer reading ``position > last`` therefore never skips a transaction that
commits late. (Positions may still have holes where a rolled-back savepoint
drew a number; they are increasing, not contiguous.) On SQLite the
``BEGIN IMMEDIATE`` write lock gives the same guarantee.

Batches use a fast path (a run of appends without side effects is validated
in memory and inserted with ONE statement, with a request-by-request fallback
on a UNIQUE violation); the semantics are those of one savepoint per request.
See :meth:`JournalStore.append_batch`.

Failure: a write connection found dead at the start of a batch (nothing
written yet, e.g. the server closed it while idle) is replaced and the batch
retried once. If the whole batch fails (connection lost, database locked past the
busy timeout, disk full, ...) every request of the batch fails with
:class:`JournalUnavailable`, the connection is discarded, and the thread goes
on with the next batch (reconnecting). If the failure happened during COMMIT
the outcome is unknown; the head cache of those streams is dropped, so a
retry at a stale ``expected_seq`` gets a clean :class:`ConcurrencyError`.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import trio

from .errors import JournalUnavailable
from .store import JournalStore, Request, StaleConnection, prepare_writer_connection, unavailable
from .types import StoredEvent

log = logging.getLogger("parley.journal.writer")

_STOP = object()

#: Histogram buckets of requests per committed batch.
BUCKETS: tuple[tuple[str, int], ...] = (
    ("1", 1),
    ("2-4", 4),
    ("5-16", 16),
    ("17-64", 64),
    ("65-256", 256),
    ("257+", 1 << 62),
)


def _bucket(n: int) -> str:
    for label, upper in BUCKETS:
        if n <= upper:
            return label
    return BUCKETS[-1][0]


@dataclass(frozen=True, slots=True)
class WriterStatistics:
    """What :meth:`Writer.statistics` reports (read from any thread; values are
    written by the writer thread only, so a reading is a moment's picture).

    ``queue_depth``: requests waiting for the next batch. Monotonic counts:
    ``batches`` committed (or failed: ``failed_batches``), ``requests`` and
    ``events`` they carried, ``stale_connection_retries`` (a batch retried on
    a fresh connection). The last batch: ``last_batch_size`` requests in
    ``last_batch_seconds``. ``batch_size_histogram``: committed batches per
    size bucket (labels of ``BUCKETS``). While batches fail,
    ``failing_for_s`` says how long and ``last_error`` names the error class;
    both are ``None`` while the writer commits.
    """

    queue_depth: int
    batches: int
    failed_batches: int
    stale_connection_retries: int
    requests: int
    events: int
    last_batch_size: int
    last_batch_seconds: float
    batch_size_histogram: Mapping[str, int]
    failing_for_s: float | None
    last_error: str | None


class _Pending:
    __slots__ = ("request", "token", "event", "result", "error")

    def __init__(self, request: Request, token: trio.lowlevel.TrioToken | None, event: Any):
        self.request = request
        self.token = token  # None: a sync (threading.Event) waiter
        self.event = event
        self.result: Any = None
        self.error: BaseException | None = None

    def outcome(self) -> Any:
        if self.error is not None:
            err, self.error = self.error, None  # drop the reference cycle
            raise err
        return self.result


CommitCallback = Callable[[list[StoredEvent]], None]


class GroupCommitWriter:
    """Owns the write connection and the :class:`JournalStore` head cache."""

    def __init__(
        self,
        store: JournalStore,
        *,
        max_batch: int = 512,
        name: str = "parley-journal-writer",
    ) -> None:
        if max_batch < 1:
            raise ValueError("max_batch must be >= 1")
        self.store = store
        self.max_batch = max_batch
        self.name = name
        #: Called in trio (the token given to :meth:`start`) with the events of
        #: every committed batch. Exceptions are logged and swallowed.
        self.on_commit: list[CommitCallback] = []
        self._queue: queue.Queue[Any] = queue.Queue()
        self._lock = threading.Lock()
        self._closed = False
        self._thread: threading.Thread | None = None
        self._commit_token: trio.lowlevel.TrioToken | None = None
        self._conn = None
        # statistics (written by the writer thread only)
        self._batches = 0
        self._failed_batches = 0
        self._reconnects = 0
        #: (monotonic time of the first failure, error name) while batches fail.
        self._failing: tuple[float, str] | None = None
        self._requests = 0
        self._events = 0
        self._last_batch_size = 0
        self._last_batch_seconds = 0.0
        self._histogram = {label: 0 for label, _ in BUCKETS}

    # ------------------------------------------------------------------ lifecycle

    def start(self, commit_token: trio.lowlevel.TrioToken | None = None) -> None:
        """Start the thread; ``commit_token`` is where ``on_commit`` runs."""
        if self._thread is not None:
            raise RuntimeError("writer already started")
        self._commit_token = commit_token
        self._thread = threading.Thread(target=self._run, name=self.name, daemon=True)
        self._thread.start()

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive() and not self._closed

    def close(self, timeout: float | None = None) -> None:
        """Blocking: commit everything already submitted, then stop the thread."""
        with self._lock:
            if not self._closed:
                self._closed = True
                self._queue.put(_STOP)
        if self._thread is not None:
            self._thread.join(timeout)

    # ------------------------------------------------------------------ submit

    def _put(self, pending: _Pending) -> None:
        with self._lock:
            if self._closed or self._thread is None:
                raise JournalUnavailable(
                    "journal is closed" if self._closed else "journal writer is not started"
                )
            self._queue.put(pending)

    async def submit(self, request: Request) -> Any:
        """Queue ``request`` and wait (in trio) until its batch is committed.

        The wait is shielded from cancellation: once queued, the request's
        outcome is always delivered, so an actor never loses track of whether
        its events were committed.
        """
        pending = _Pending(request, trio.lowlevel.current_trio_token(), trio.Event())
        self._put(pending)
        with trio.CancelScope(shield=True):
            await pending.event.wait()
        return pending.outcome()

    def submit_sync(self, request: Request, timeout: float | None = None) -> Any:
        """Blocking variant for plain threads (never from the writer thread)."""
        pending = _Pending(request, None, threading.Event())
        self._put(pending)
        if not pending.event.wait(timeout):
            raise JournalUnavailable("timed out waiting for the journal writer")
        return pending.outcome()

    # ------------------------------------------------------------------ statistics

    def statistics(self) -> WriterStatistics:
        """The writer's counts (trio's ``statistics()`` habit; see :class:`WriterStatistics`)."""
        failing = self._failing
        return WriterStatistics(
            queue_depth=self._queue.qsize(),
            batches=self._batches,
            failed_batches=self._failed_batches,
            stale_connection_retries=self._reconnects,
            requests=self._requests,
            events=self._events,
            last_batch_size=self._last_batch_size,
            last_batch_seconds=self._last_batch_seconds,
            batch_size_histogram=dict(self._histogram),
            failing_for_s=None if failing is None else time.monotonic() - failing[0],
            last_error=None if failing is None else failing[1],
        )

    # ------------------------------------------------------------------ the thread

    def _run(self) -> None:
        while self._next_batch():
            pass
        self._discard_conn(invalidate=False)
        self._drain_closed()

    def _next_batch(self) -> bool:
        """Wait for, commit and deliver one batch; False once stopped.

        A method of its own so that nothing of the batch outlives it: a
        local of ``_run`` would keep the last batch (say, the snapshots of
        every actor that just passivated, and through them all their
        messages) alive for as long as the writer then sits idle.
        """
        q = self._queue
        first = q.get()
        if first is _STOP:
            return False
        batch = [first]
        more = True
        while len(batch) < self.max_batch:
            try:
                item = q.get_nowait()
            except queue.Empty:
                break
            if item is _STOP:
                more = False
                break
            batch.append(item)
        try:
            self._process(batch)
        except BaseException:  # pragma: no cover - last line of defence
            log.exception("journal writer: unexpected failure delivering a batch")
            for p in batch:
                if p.error is None and p.result is None:
                    p.error = JournalUnavailable("journal writer failed")
            self._deliver(batch, [])
        return more

    def _drain_closed(self) -> None:
        leftovers = []
        while True:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                break
            if item is not _STOP:
                item.error = JournalUnavailable("journal is closed")
                leftovers.append(item)
        if leftovers:
            self._deliver(leftovers, [])

    def _process(self, batch: list[_Pending]) -> None:
        t0 = time.perf_counter()
        requests = [p.request for p in batch]
        try:
            try:
                outcome = self._run_batch(requests)
            except StaleConnection:
                # The connection died while idle (nothing written): one retry
                # on a fresh connection instead of failing every request.
                self._discard_conn(invalidate=True)
                self._reconnects += 1
                outcome = self._run_batch(requests)
        except Exception as e:
            self._failed_batches += 1
            if self._failing is None:
                self._failing = (time.monotonic(), type(e).__name__)
            self._discard_conn(invalidate=True)
            log.warning("journal writer: batch of %d failed: %r", len(batch), e)
            for p in batch:
                p.error = unavailable(e)
            self._deliver(batch, [])
            return
        self._failing = None
        self._batches += 1
        self._requests += len(batch)
        self._events += len(outcome.committed)
        self._last_batch_size = len(batch)
        self._last_batch_seconds = time.perf_counter() - t0
        self._histogram[_bucket(len(batch))] += 1
        for p, r in zip(batch, outcome.results):
            if isinstance(r, BaseException):
                p.error = r
            else:
                p.result = r
        self._deliver(batch, outcome.committed)

    def _run_batch(self, requests: list[Request]):
        if self._conn is None:
            self._conn = self.store.write_engine.connect()
            prepare_writer_connection(self._conn)
        return self.store.run_batch(self._conn, requests)

    def _discard_conn(self, invalidate: bool) -> None:
        conn, self._conn = self._conn, None
        if conn is None:
            return
        try:
            if invalidate:
                conn.invalidate()
            conn.close()
        except Exception:  # pragma: no cover
            log.debug("journal writer: error discarding connection", exc_info=True)

    def _deliver(self, batch: list[_Pending], committed: list[StoredEvent]) -> None:
        by_token: dict[Any, list[_Pending]] = {}
        for p in batch:
            if p.token is None:
                p.event.set()
            else:
                by_token.setdefault(p.token, []).append(p)
        commit_token = self._commit_token if (committed and self.on_commit) else None
        if commit_token is not None and commit_token not in by_token:
            by_token[commit_token] = []
        for token, pendings in by_token.items():
            events = committed if token is commit_token else None
            try:
                token.run_sync_soon(self._wake, pendings, events)
            except trio.RunFinishedError:
                pass  # that trio run is gone; nobody is waiting any more

    def _wake(self, pendings: list[_Pending], committed: list[StoredEvent] | None) -> None:
        if committed:
            for cb in list(self.on_commit):
                try:
                    cb(committed)
                except Exception:
                    log.exception("journal on_commit callback failed")
        for p in pendings:
            p.event.set()

