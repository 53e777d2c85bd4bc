"""ChannelActor: one channel's state, its rules, and its journal stream.

The actor decides every command waiting in its mailbox against a pending
view of its state (``domain/pending.py``), appends all resulting events as ONE
journal append, and answers every command only after that append has
committed (an acknowledged write is a durable write). Only then are the
events folded into the state and the posts charged to the seatbelt. Reads
that arrive in the same batch are answered after the commit too, so no one
ever sees an uncommitted message.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import random
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import trio

from ..domain import channel as rules
from ..domain.identity import Identity
from ..domain.pending import PendingState
from ..domain.seatbelt import PendingCharges
from ..errors import ParleyError, Unavailable, UnknownChannel
from ..journal.effects import ChargeWindows, PutBlobs, WindowCharge, chain
from ..journal.errors import ConcurrencyError, JournalUnavailable, WindowFull
from ..journal.stream_ids import channel_stream
from ..journal.types import NewEvent
from .encoded_log import EncodedLog
from .failures import journal_unavailable
from .runtime import Actor, Envelope

if TYPE_CHECKING:
    from .backbone import Backbone

log = logging.getLogger("parley.channels")


#: The journal stream of a channel (``journal/stream_ids.py`` is its one home).
stream_id = channel_stream


# -- commands -----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Append:
    body: dict[str, Any]
    identity: Identity
    idem_key: str | None = None


@dataclass(frozen=True, slots=True)
class Claim:
    op: str  # claim | reassign | done
    body: dict[str, Any]
    identity: Identity
    assignee: dict[str, str] | None = None
    idem_key: str | None = None


@dataclass(frozen=True, slots=True)
class PutArtifact:
    sha256: str
    data: bytes


@dataclass(frozen=True, slots=True)
class Archive:
    identity: Identity


@dataclass(frozen=True, slots=True)
class Query:
    """A read answered from state: ``fn(state) -> value``."""

    fn: Any


@dataclass(frozen=True, slots=True)
class Refresh:
    """Another process appended to this stream: fold the tail in (ADR-0007).

    ``events`` are the ones the tailer read (in seq order): folded as they
    are when they continue the state, so the stream is not read a second
    time; without them, or after a gap, the tail is read (ADR-0057).
    """

    events: tuple[Any, ...] = ()


WRITES = (Append, Claim, PutArtifact, Archive)
#: Save a snapshot after this many events, or after half as many events as the
#: state holds messages when that is more (:func:`snapshot_due`, ADR-0056).
SNAPSHOT_EVERY = 1000
#: How long one batch keeps deciding again after lost races before its
#: writes answer 503 "busy": half the 30 s ask timeout, so the asker still
#: gets the contract's answer. Each lost attempt means another process's
#: append committed, so the channel as a whole always progresses; a fixed
#: 10 attempts made 1.4-3% of appends "busy" with two writers on one channel,
#: and a 3 s budget still gave up when a loaded machine stalled a catch-up
#: (ADR-0007).
COMMIT_DEADLINE_S = 15.0
#: Upper bound of the randomised pause after a lost race (seconds): it
#: grows with the losses in a row and breaks two writers' lock-step.
MAX_RACE_BACKOFF_S = 0.02


@dataclass(slots=True)
class PipelineCounts:
    """What the channel actors' pipeline did in this process (ADR-0057), for ``/metrics``."""

    #: Batches decided on a view stacked on a batch still committing.
    decided_ahead: int = 0
    #: Of those, the ones dropped and decided again (the commit below failed or lost a race).
    dropped: int = 0


@dataclass(slots=True)
class _Decided:
    """One batch decided on a pending view and not committed yet."""

    view: PendingState
    charges: PendingCharges
    #: Closes the seatbelt sheet (``Seatbelt.pending``) once the batch is done.
    sheet: contextlib.ExitStack
    #: The stream's seq the batch was decided on: the append's expected seq.
    base_seq: int
    events: list[NewEvent] = field(default_factory=list)
    answers: list[tuple[Envelope[Any], Any]] = field(default_factory=list)
    #: Refusals decided on a stacked view, answered once the batch below committed.
    refusals: list[tuple[Envelope[Any], ParleyError]] = field(default_factory=list)
    blobs: list[tuple[str, bytes]] = field(default_factory=list)
    reserved: int = 0


async def _run_sync(fn: Any, *args: Any) -> None:
    fn(*args)


class ChannelActor(Actor):
    def __init__(self, name: str, backbone: Backbone) -> None:
        self.key = name
        self.name = name
        self.backbone = backbone
        self.state = rules.ChannelState(name)
        self._stale = True
        self._snapshot_seq = 0
        #: Messages below this index are committed; tails read only those.
        self.committed_head = 0
        self._encoded: EncodedLog | None = None
        #: Commands taken from the mailbox while a commit was under way: the next batch.
        self._carry: list[Envelope[Any]] = []
        #: That batch's decision, stacked on the committing batch's view (ADR-0057).
        self._ahead: tuple[list[Envelope[Any]], _Decided] | None = None
        #: Batches decided ahead, and those of them dropped (the commit below failed).
        self.decided_ahead = 0
        self.ahead_dropped = 0

    def encoded(self) -> EncodedLog:
        """The encoded bytes of this state's committed messages (ADR-0041); a new
        state (activation, reload) gets a new log, never the old one's bytes."""
        log_ = self._encoded
        if log_ is None or log_.messages is not self.state.messages:
            if log_ is not None:
                self.backbone.encoded_budget.release(log_)
            log_ = self._encoded = EncodedLog(self.state.messages, self.backbone.encoded_budget)
        return log_

    def committed_bytes(self, start: int, stop: int, clean: bool = False) -> list[bytes]:
        """Encoded ``messages[start:stop]`` (``stop`` clamped to the committed head)."""
        stop = min(stop, self.committed_head)
        log_ = self.encoded()
        return log_.clean(start, stop) if clean else log_.raw(start, stop)

    def committed_page(self, start: int, stop: int, build) -> bytes:  # noqa: ANN001 - EncodedLog.page's builder
        """A read page of ``messages[start:stop]`` (``stop`` clamped), kept by the encoded log."""
        return self.encoded().page(start, min(stop, self.committed_head), build)

    @property
    def readable(self) -> bool:
        """Its state can be read from outside the mailbox: loaded, not stale, the channel exists."""
        return not self._stale and self.state.exists

    async def activate(self) -> None:
        """Latest snapshot (if any) plus a replay of the tail after it."""
        journal = self.backbone.journal
        snapshot = await journal.load_snapshot(stream_id(self.name))
        state = rules.ChannelState(self.name)
        if snapshot is not None:
            try:
                state = rules.from_snapshot(snapshot.data)
            except (ValueError, KeyError, TypeError):
                log.warning("ignoring unreadable snapshot of %s", self.name)
                state = rules.ChannelState(self.name)
        # The tail is read and folded in the reader thread, straight from the
        # cursor (no StoredEvent per event; nothing else sees ``state`` yet).
        await journal.fold_stream(stream_id(self.name), state.seq, functools.partial(rules.apply, state))
        self.state = state
        self.committed_head = state.head
        self._snapshot_seq = snapshot.seq if snapshot is not None and state.seq >= snapshot.seq else 0
        self._stale = False

    async def passivate(self) -> None:
        if self._encoded is not None:
            self.backbone.encoded_budget.release(self._encoded)
            self._encoded = None
        await self._maybe_snapshot(threshold=1)

    async def _maybe_snapshot(self, threshold: int | None = None) -> None:
        """Save a snapshot once ``threshold`` events (default: :func:`snapshot_due`'s
        rule) have accrued since the last one."""
        state = self.state
        if self._stale or not state.exists:
            return
        since = state.seq - self._snapshot_seq
        if not (snapshot_due(since, state.head) if threshold is None else since >= threshold):
            return
        try:
            await self.backbone.journal.save_snapshot(stream_id(self.name), state.seq, rules.to_snapshot(state))
            self._snapshot_seq = state.seq
        except Exception:
            log.warning("snapshot of %s failed; activation will replay more", self.name)

    async def handle_batch(self, batch: list[Envelope[Any]]) -> None:
        try:
            while True:
                await self._handle_batch(batch)
                await self._maybe_snapshot()
                # What was taken from the mailbox while the last commit was under
                # way is the next batch (decided already, unless that commit failed).
                batch, self._carry = self._carry, []
                if not batch:
                    return
        finally:
            self._carry = []
            self._drop_ahead()

    async def _catch_up(self) -> None:
        """Fold events other processes committed after our last known seq."""
        state = self.state
        tail = await self.backbone.journal.read_stream(stream_id(self.name), state.seq)
        for event in tail:
            rules.apply(state, event.type, event.data)
        if tail:
            self.backbone.on_channel_commit(self.name, state, tail)

    def _fold_foreign(self, refreshes: list[Envelope[Any]]) -> bool:
        """Fold the events the tailer handed over; False when the tail must be read
        (a ``Refresh`` without events, or a gap before the next seq)."""
        state = self.state
        folded = []
        whole = True
        for envelope in refreshes:
            events = envelope.command.events
            if not events:
                whole = False
                continue
            for event in events:
                if event.seq <= state.seq:
                    continue  # folded already (a catch-up, a lost race)
                if event.seq != state.seq + 1:
                    whole = False
                    break
                rules.apply(state, event.type, event.data)
                folded.append(event)
        if folded:
            self.backbone.on_channel_commit(self.name, state, folded)
        return whole

    async def _handle_batch(self, batch: list[Envelope[Any]]) -> None:
        refreshes = [e for e in batch if isinstance(e.command, Refresh)]
        if refreshes:
            batch = [e for e in batch if not isinstance(e.command, Refresh)]
            if not self._stale:
                try:
                    if not self._fold_foreign(refreshes):
                        await self._catch_up()
                except JournalUnavailable:
                    self._stale = True
            for envelope in refreshes:
                envelope.reply.set_result(None)
            if not batch:
                return
        ahead = self._claim_ahead(batch)
        if ahead is None and not await self._reload_or_refuse(batch):
            return
        if not self.state.exists:
            error = UnknownChannel(f"Unknown channel: {rules.js_quote(rules.fragment(self.name))}")
            for envelope in batch:
                envelope.reply.set_error(error)
            return
        deadline = trio.current_time() + COMMIT_DEADLINE_S
        losses = 0
        while True:
            try:
                await self._decide_and_commit(batch, ahead)
                return
            except WindowFull:
                # Another process filled a seatbelt window first: nothing of
                # ours was folded or charged, and the window now holds every
                # process's stamps, so deciding again refuses the over-cap
                # posts exactly (ADR-0025).
                if not await self._reload_or_refuse(batch):
                    return
                if trio.current_time() >= deadline:
                    break
                continue
            except ConcurrencyError:
                self.backbone.lost_races += 1
                losses += 1
                # Another process appended to this stream. Our decisions never
                # reached the state: fold its events in and decide again.
                try:
                    await self._catch_up()
                except JournalUnavailable:
                    self._stale = True
                    for envelope in batch:
                        envelope.reply.set_error(Unavailable(retry_after=1))
                    return
                if trio.current_time() >= deadline:
                    break
                if losses > 1:
                    await trio.sleep(random.uniform(0, min(MAX_RACE_BACKOFF_S, 0.001 * 2**losses)))
            finally:
                ahead = None  # used by the first attempt only; a retry decides again
        for envelope in batch:
            envelope.reply.set_error(Unavailable("the channel is busy; retry shortly", retry_after=1))

    def _claim_ahead(self, batch: list[Envelope[Any]]) -> _Decided | None:
        """The decision made for ``batch`` while the batch before it committed, if
        it still holds: that commit succeeded and nothing has made the state stale."""
        ahead, self._ahead = self._ahead, None
        if ahead is None:
            return None
        envelopes, decided = ahead
        if envelopes is batch and not self._stale:
            return decided
        self._count_dropped()
        self._release(decided)
        return None

    def _drop_ahead(self) -> None:
        """Forget the next batch's decision (its commands are decided again)."""
        ahead, self._ahead = self._ahead, None
        if ahead is not None:
            self._count_dropped()
            self._release(ahead[1])

    def _count_dropped(self) -> None:
        self.ahead_dropped += 1
        self.backbone.pipeline.dropped += 1

    def _release(self, decided: _Decided) -> None:
        self.backbone.pending_artifact_bytes -= decided.reserved
        decided.reserved = 0
        decided.sheet.close()

    def _decide_batch(self, batch: list[Envelope[Any]], parent: _Decided | None) -> _Decided:
        """Decide ``batch`` on a pending view of the state, or, with ``parent``, on
        a view stacked on ``parent``'s while it commits (ADR-0057).

        A refusal is answered at once when the view is on the committed state;
        on a stacked view it waits in ``refusals`` until ``parent`` has
        committed, because it may rest on ``parent``'s uncommitted events.
        """
        backbone = self.backbone
        base = self.state if parent is None else parent.view
        sheet = contextlib.ExitStack()
        charges = sheet.enter_context(backbone.seatbelt.pending())
        if parent is not None:
            charges.dups.update(parent.charges.dups)  # the dup baseline after parent's posts
        decided = _Decided(PendingState(base), charges, sheet, base.seq)
        view = decided.view
        try:
            for envelope in batch:
                if envelope.reply.done:
                    continue  # refused in an earlier attempt: it stays refused, never half-stored
                command = envelope.command
                if isinstance(command, Query):
                    decided.answers.append((envelope, command))
                    continue
                global_bytes = backbone.artifact_bytes + backbone.pending_artifact_bytes
                try:
                    decision = self._decide(command, view, charges, global_bytes)
                except ParleyError as error:
                    if parent is None:
                        envelope.reply.set_error(error)
                    else:
                        decided.refusals.append((envelope, error))
                    continue
                for type_, data in decision.events:
                    rules.apply(view, type_, data)
                    decided.events.append(NewEvent(type_, data))
                if isinstance(command, PutArtifact) and decision.events:
                    decided.blobs.append((command.sha256, command.data))
                    decided.reserved += len(command.data)
                    backbone.pending_artifact_bytes += len(command.data)
                decided.answers.append((envelope, decision.outcome))
        except BaseException:
            self._release(decided)
            raise
        return decided

    def _decide_next(self, parent: _Decided) -> None:
        """While ``parent`` commits: take what waits in the mailbox and decide it
        on ``parent``'s view, so the next commit can start as soon as this one
        ends (ADR-0057). What is taken is the next batch either way."""
        if self._carry or self._ahead is not None:
            return
        taken = self.take_waiting()
        if not taken:
            return
        self._carry = taken
        if self._stale or any(isinstance(e.command, Refresh) for e in taken):
            return  # decided in turn, after the catch-up the Refresh asks for
        try:
            self._ahead = (taken, self._decide_batch(taken, parent))
            self.decided_ahead += 1
            self.backbone.pipeline.decided_ahead += 1
        except Exception:
            log.exception("deciding ahead on %s failed; the commands are decided again in turn", self.name)

    async def _decide_and_commit(self, batch: list[Envelope[Any]], ahead: _Decided | None = None) -> None:
        """Decide the batch against a pending view (or take ``ahead``, decided while
        the batch before it committed), commit it as one append, and only then
        fold its events into the state and charge the seatbelt.

        A failed or lost commit leaves the state and the seatbelt as they were
        (the view and the sheet are dropped): nothing to take back (ADR-0037).
        The next batch's decision, stacked on this one's view, is dropped with
        it (ADR-0057). New artifact bytes are reserved against the global cap
        while the commit is under way, so concurrent channels cannot overspend it.
        """
        state = self.state
        backbone = self.backbone
        if ahead is None:
            decided = self._decide_batch(batch, None)
        else:
            decided = ahead
            for envelope, error in decided.refusals:
                envelope.reply.set_error(error)
        try:
            if decided.events:
                charges = decided.charges
                effects = [_store_blobs(self.name, decided.blobs)] if decided.blobs else []
                if backbone.shared_windows and charges:
                    effects.append(window_side_effect(charges))
                committed, failure = await self._commit(decided, _chain(effects))
                if failure is not None:
                    self._drop_ahead()
                    if isinstance(failure, WindowFull):
                        backbone.seatbelt.adopt(failure.scope, failure.key, failure.stamps)
                        raise failure
                    if isinstance(failure, ConcurrencyError):
                        raise failure
                    await self._refuse_after_failed_commit(failure, decided.answers)
                    return
                backbone.seatbelt.charge(charges)
                backbone.artifact_bytes += decided.reserved
                for event in decided.events:
                    rules.apply(state, event.type, event.data)
                if self._ahead is not None:
                    self._ahead[1].view.rebase(state)
                backbone.on_channel_commit(self.name, state, committed)
        finally:
            self._release(decided)
        self._answer(decided.answers)

    async def _commit(self, decided: _Decided, side_effect: Any) -> tuple[list[Any], Exception | None]:
        """Append ``decided``'s events; the next batch is decided meanwhile (a
        task that runs once the append is queued for the writer thread)."""
        committed: list[Any] = []
        failure: Exception | None = None
        async with trio.open_nursery() as nursery:
            nursery.start_soon(_run_sync, self._decide_next, decided)
            try:
                committed = await self.backbone.journal.append(
                    stream_id(self.name), decided.events, decided.base_seq, side_effect=side_effect
                )
            except Exception as exc:
                failure = exc
        return committed, failure

    async def _refuse_after_failed_commit(self, exc: Exception, answers: list[tuple[Envelope[Any], Any]]) -> None:
        """503 for the batch's writes; its reads are answered from the committed state.

        The state is marked stale: an error past the commit may hide a commit
        that happened, so reads reload before they answer.
        """
        self._stale = True
        if not isinstance(exc, JournalUnavailable):
            log.exception("append to %s failed", self.name)
        error = journal_unavailable()
        queries = []
        for envelope, answer in answers:
            if isinstance(answer, Query):
                queries.append((envelope, answer))
            else:
                envelope.reply.set_error(error)
        await self._answer_after_failure(queries)

    def _answer(self, answers: list[tuple[Envelope[Any], Any]]) -> None:
        for envelope, answer in answers:
            if isinstance(answer, Query):
                try:
                    envelope.reply.set_result(answer.fn(self.state))
                except ParleyError as error:
                    envelope.reply.set_error(error)
            else:
                envelope.reply.set_result(answer)

    async def _answer_after_failure(self, queries: list[tuple[Envelope[Any], Query]]) -> None:
        """Reads that shared a batch with a failed write are answered from the
        committed state, reloaded (a read) when the failure left it unknown: a
        full disk or a locked file stops writes, not reads (issue 20 item 7)."""
        if queries and await self._reload_or_refuse([envelope for envelope, _ in queries]):
            self._answer(queries)

    async def _reload_or_refuse(self, envelopes: list[Envelope[Any]]) -> bool:
        """Reload a stale state (a read); if the journal cannot be read either,
        refuse ``envelopes`` with 503. True when the state is usable."""
        if not self._stale:
            return True
        try:
            await self.activate()
        except JournalUnavailable:
            for envelope in envelopes:
                envelope.reply.set_error(Unavailable(retry_after=1))
            return False
        return True

    def _decide(self, command: Any, state: PendingState, charges: PendingCharges, global_bytes: int) -> rules.Decision:
        backbone = self.backbone
        now_ms = backbone.clock.now_ms()
        if isinstance(command, Append):
            return rules.decide_append(
                state,
                command.body,
                command.identity,
                now_ms=now_ms,
                stamp=backbone.stamper.next,
                seatbelt=charges,
                limits=backbone.limits,
                idem_key=command.idem_key,
            )
        if isinstance(command, Claim):
            return rules.decide_claim(
                state,
                command.op,
                command.body,
                command.identity,
                now_ms=now_ms,
                stamp=backbone.stamper.next,
                seatbelt=charges,
                limits=backbone.limits,
                assignee=command.assignee,
                idem_key=command.idem_key,
            )
        if isinstance(command, PutArtifact):
            return rules.decide_artifact(
                state,
                command.sha256,
                command.data,
                limits=backbone.limits,
                global_bytes=global_bytes,
            )
        if isinstance(command, Archive):
            return rules.decide_archive(state, command.identity)
        raise TypeError(f"unknown command {type(command).__name__}")


def snapshot_due(events_since: int, messages: int) -> bool:
    """True when a snapshot of a state holding ``messages`` messages is due,
    ``events_since`` events after the last one.

    A snapshot writes the whole state, so a fixed interval makes a growing
    channel's snapshot cost per event grow with its size (quadratic in all:
    15 % of the server's samples for one channel filled by bulk senders).
    Waiting for half the state's size in events bounds it to about two
    message encodings per event, and activation then folds at most half as
    many events as the snapshot it loads holds messages (ADR-0056).
    """
    return events_since >= max(SNAPSHOT_EVERY, messages // 2)


def window_side_effect(charges: PendingCharges):
    """The append side effect charging the sheet's stamps to the shared windows."""
    windows = tuple(WindowCharge(*charge) for charge in charges.charges())
    return ChargeWindows(windows, charges.belt.window_ms) if windows else None


def _chain(effects: list[Any]):
    """One side effect of ``effects`` in order (None if there are none)."""
    return chain(effects)


def _store_blobs(channel: str, blobs: list[tuple[str, bytes]]):
    """The side effect that writes artifact bytes in the append's own transaction."""
    return PutBlobs(channel, tuple(blobs))
