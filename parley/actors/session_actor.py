"""SessionActor: one session's state (the fold of ``session:<id>``) and its turns.

The mailbox serialises the *decisions* about a session: the owner check,
missing/stale token, Idempotency-Key replay and turn-in-flight (refusal steps
4–8) are decided synchronously against the actor's state, with no ``await``
between the in-flight check and marking the turn in flight. An accepted turn
then runs in a child task of the session service (it may wait up to 60 s for
a message), so the mailbox keeps answering: a second turn for the session
gets ``turn_in_flight`` at once instead of queueing behind the first.

A running turn is the only writer of its session's stream in this process
(the in-flight mark is held in the service, so it survives a passivation of
the actor); across processes the turn lease and ``UNIQUE(stream_id, seq)``
arbitrate (see :mod:`parley.actors.session_service`).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import trio

from ..domain import session as S
from ..domain.identity import Identity
from ..domain.session_input import TurnInput
from ..errors import InternalError, ParleyError, StaleToken, TurnInFlight, Unavailable, UnknownSession
from ..journal.errors import ConcurrencyError, JournalUnavailable
from ..journal.types import NewEvent, StoredEvent
from .failures import journal_unavailable
from .runtime import Actor, Envelope

if TYPE_CHECKING:
    from .session_service import SessionService

log = logging.getLogger("parley.sessions")

FAILPOINT_STREAM_OPEN = "turn-after-stream-open"
#: Save a snapshot after this many events past the last one (and on passivation).
SNAPSHOT_EVERY = 100


def stream_id(session_id: str) -> str:
    return f"session:{session_id}"


# -- requests, handles, commands -----------------------------------------------


@dataclass(frozen=True, slots=True)
class TurnRequest:
    """A parsed, authenticated turn (start or continue) on its way to the actor.

    ``held`` marks a WebSocket connection bound to the session: a frame
    without a token is authorized by the connection (it presents the current
    token implicitly).
    """

    identity: Identity
    input: TurnInput
    token: str | None
    idem_key: str | None
    fingerprint: str
    streamed: bool = False
    held: bool = False


class TurnHandle:
    """The answer of an accepted (or replayed) turn, available once ``done`` is set.

    ``records`` are the journal events the turn committed (SSE/WS ``record``).
    ``error`` is set when the turn failed after it was accepted (no rotation).
    """

    def __init__(self, session_id: str) -> None:
        self.session_id = session_id
        self.done = trio.Event()
        self.response: dict[str, Any] | None = None
        self.records: list[StoredEvent] = []
        self.error: ParleyError | None = None
        self.replayed = False
        self.contended = False

    def finish(
        self,
        response: dict[str, Any],
        records: Sequence[StoredEvent] = (),
        *,
        replayed: bool = False,
        contended: bool = False,
    ) -> TurnHandle:
        self.response = response
        self.records = list(records)
        self.replayed = replayed
        self.contended = contended
        self.done.set()
        return self

    def fail(self, error: ParleyError) -> None:
        self.error = error
        self.done.set()

    async def result(self) -> dict[str, Any]:
        """The turn response, or raise the error the turn failed with."""
        await self.done.wait()
        if self.error is not None:
            raise self.error
        assert self.response is not None
        return self.response


@dataclass(frozen=True, slots=True)
class Continue:
    req: TurnRequest
    handle: TurnHandle


@dataclass(frozen=True, slots=True)
class Start:
    req: TurnRequest
    handle: TurnHandle
    start_key: str | None = None


@dataclass(frozen=True, slots=True)
class Peek:
    """The current state (or ``None``), for a start's Idempotency-Key lookup."""


@dataclass(frozen=True, slots=True)
class Describe:
    identity: Identity
    #: the stream's last seq as just read: a state behind it is reloaded first.
    head: int = 0


@dataclass(frozen=True, slots=True)
class Close:
    identity: Identity
    token: str | None


# -- the actor -------------------------------------------------------------------


class SessionActor(Actor):
    def __init__(self, session_id: str, service: SessionService) -> None:
        self.key = session_id
        self.session_id = session_id
        self.service = service
        self.stream = stream_id(session_id)
        self.state: S.SessionState | None = None
        self.seq = 0
        self.snapshot_seq = 0
        self.stale = True

    # -- lifecycle ---------------------------------------------------------------

    async def activate(self) -> None:
        journal = self.service.journal
        state: S.SessionState | None = None
        after = 0
        snapshot = await journal.load_snapshot(self.stream)
        if snapshot is not None:
            state = S.from_snapshot(snapshot.data)
            after = snapshot.seq
        events = await journal.read_stream(self.stream, after)
        state = S.fold(((e.type, e.data) for e in events), state)
        self.state = state
        self.seq = events[-1].seq if events else after
        self.snapshot_seq = after
        self.stale = False

    async def passivate(self) -> None:
        if self.service.in_flight.get(self.session_id) is not None:
            return  # the running turn will commit past this seq
        await self._snapshot()

    async def _snapshot(self) -> None:
        state, seq = self.state, self.seq
        if state is None or self.stale or seq <= self.snapshot_seq:
            return
        try:
            await self.service.journal.save_snapshot(self.stream, seq, S.to_snapshot(state))
        except Exception:  # a snapshot is an optimisation; the stream is the truth
            log.warning("snapshot of %s failed", self.stream, exc_info=True)
            return
        self.snapshot_seq = max(self.snapshot_seq, seq)

    # -- commands ----------------------------------------------------------------

    async def handle_batch(self, batch: list[Envelope[Any]]) -> None:
        if self.stale:
            try:
                await self.activate()
            except (JournalUnavailable, Unavailable):
                for envelope in batch:
                    envelope.reply.set_error(journal_unavailable())
                return
        reloaded = False
        for envelope in batch:
            command = envelope.command
            try:
                if isinstance(command, Continue):
                    try:
                        envelope.reply.set_result(self._continue(command))
                    except (StaleToken, UnknownSession):
                        # Another process may have committed since this state was
                        # loaded (the tailer tells us only after a poll): re-read
                        # once per batch before refusing.
                        if reloaded or self.session_id in self.service.in_flight:
                            raise
                        reloaded = True
                        await self._reload()
                        envelope.reply.set_result(self._continue(command))
                elif isinstance(command, Start):
                    envelope.reply.set_result(self._start(command))
                elif isinstance(command, Peek):
                    envelope.reply.set_result(self.state)
                elif isinstance(command, Describe):
                    if command.head > self.seq and self.session_id not in self.service.in_flight:
                        await self._reload()
                    state = S.check_owner(self.state, command.identity, self.session_id)
                    envelope.reply.set_result((state, self.session_id in self.service.in_flight))
                elif isinstance(command, Close):
                    envelope.reply.set_result(await self._close(command))
                else:
                    raise TypeError(f"unknown command {type(command).__name__}")
            except ParleyError as error:
                envelope.reply.set_error(error)

    def _continue(self, command: Continue) -> TurnHandle:
        req, handle, service = command.req, command.handle, self.service
        state = S.check_owner(self.state, req.identity, self.session_id)  # step 4
        if req.held and req.token is None:
            presented: str | None = state.token_digest
        else:
            presented = None if req.token is None else S.token_digest(req.token)
        decision = S.check_continue(  # steps 5-7
            state, presented, idempotency_key=req.idem_key, request_fingerprint=req.fingerprint
        )
        if isinstance(decision, S.Replay):
            token = service.keys.reissue(self.session_id, decision.turn, state.token_digest)
            return handle.finish(S.render_response(decision.response, token), replayed=True)
        if self.session_id in service.in_flight:  # step 8
            raise TurnInFlight()
        service.in_flight[self.session_id] = handle
        service.spawn(self._run_turn, req, handle, state, self.seq, None)
        return handle

    def _start(self, command: Start) -> TurnHandle:
        if self.state is not None or self.session_id in self.service.in_flight:
            raise InternalError("session id collision")  # 80 random bits: never in practice
        self.service.in_flight[self.session_id] = command.handle
        self.service.spawn(self._run_turn, command.req, command.handle, None, 0, command.start_key)
        return command.handle

    async def _close(self, command: Close) -> dict[str, Any]:
        service = self.service
        reloaded = False
        for _attempt in range(3):
            try:
                state = S.check_owner(self.state, command.identity, self.session_id)
                presented = None if command.token is None else S.token_digest(command.token)
                S.check_continue(state, presented)
            except (StaleToken, UnknownSession):
                if reloaded or self.session_id in service.in_flight:
                    raise
                reloaded = True  # another process may have moved on: re-read once
                await self._reload()
                continue
            if self.session_id in service.in_flight:
                raise TurnInFlight()
            event = NewEvent(S.SESSION_CLOSED, S.session_closed_data(ts=service.backbone.stamper.next()))
            try:
                committed = await service.journal.append(self.stream, [event], self.seq)
            except ConcurrencyError:
                await self._reload()  # another process wrote: decide again
                continue
            except JournalUnavailable:
                self.stale = True
                raise journal_unavailable() from None
            self.state = S.fold(((e.type, e.data) for e in committed), state)
            self.seq = committed[-1].seq
            service.session_closed(state)
            return {"closed": True}
        raise Unavailable("the session is busy; retry shortly", retry_after=1)

    # -- a turn (runs in a child task of the service) --------------------------------

    async def _run_turn(
        self,
        req: TurnRequest,
        handle: TurnHandle,
        state: S.SessionState | None,
        base_seq: int,
        start_key: str | None,
    ) -> None:
        """Run one accepted turn; ``state``/``base_seq`` are the session as it was accepted
        (``None``/0 for the start turn)."""
        service = self.service
        start = state is None
        sid = self.session_id
        turn = 1 if state is None else state.turns + 1
        epoch = 0 if state is None else state.lease_epoch
        leased = False
        committed_ok = False
        try:
            if req.streamed and FAILPOINT_STREAM_OPEN in service.settings.failpoints:
                raise InternalError(f"failpoint {FAILPOINT_STREAM_OPEN}")
            if not start:
                taken = await service.take_lease(sid, req.input.wait, base_seq)
                if taken is None:
                    await self._answer_contended(req, handle, state)
                    return
                if taken == "moved":
                    # Another process committed since this state was loaded: decide again.
                    await self._redecide(req, handle)
                    return
                epoch, leased = int(taken), True
            subscriptions = {} if state is None else dict(state.subscriptions)
            results = await service.apply_actions(sid, turn, req, subscriptions)
            messages, parked = await service.deliver(subscriptions, req.input.max, req.input.wait)
            for item in messages:
                subscriptions[item["channel"]] = item["cursor"]
            token = service.keys.mint(sid, turn)
            handler_name = req.input.handler if start else state.handler  # type: ignore[union-attr]
            extras = await service.handler_output(handler_name, sid, turn, subscriptions, results, messages)
            if parked:
                response = S.parked(sid, token, results=results, cursors=subscriptions, messages=messages)
            else:
                response = S.finished(sid, token, results=results, messages=messages, cursors=subscriptions)
            for key, value in extras.items():
                if key not in response["output"]:
                    response["output"][key] = value
            stored = S.stored_response(response)
            keyed = None if req.idem_key is None else S.KeyedRequest(req.idem_key, req.fingerprint)
            events: list[NewEvent] = []
            ts = service.backbone.stamper.next()
            if start:
                events.append(
                    NewEvent(
                        S.SESSION_STARTED,
                        S.session_started_data(
                            sid, req.identity, handler=handler_name, ts=ts, start_idempotency=keyed
                        ),
                    )
                )
            events.append(
                NewEvent(
                    S.TURN_COMMITTED,
                    S.turn_committed_data(
                        turn=turn,
                        token_digest=S.token_digest(token),
                        subscriptions=subscriptions,
                        response=stored,
                        ts=ts,
                        lease_epoch=epoch,
                        idempotency=None if start else keyed,
                    ),
                )
            )
            try:
                committed = await service.journal.append(
                    self.stream,
                    events,
                    base_seq,
                    side_effect=service.lease_release(sid, epoch) if leased else None,
                )
            except ConcurrencyError:
                # Lost to another process (newer lease epoch or the same seq):
                # nothing was journaled; the token is not rotated.
                leased = False
                self.stale = True
                await self._answer_contended(req, handle, state)
                return
            leased = False
            self.state = S.fold(((e.type, e.data) for e in committed), None if start else state)
            self.seq = committed[-1].seq
            service.turn_committed(self, start=start, identity=req.identity)
            committed_ok = True
            # Answered: the client's next turn may start now, even while the
            # snapshot below is saved (it was a spurious turn_in_flight).
            if service.in_flight.get(sid) is handle:
                del service.in_flight[sid]
            handle.finish(S.render_response(stored, token), committed)
            if self.seq - self.snapshot_seq >= SNAPSHOT_EVERY:
                await self._snapshot()
        except ParleyError as error:
            handle.fail(error)
        except JournalUnavailable:
            self.stale = True
            handle.fail(journal_unavailable())
        except Exception:
            log.exception("turn %d of session %s failed", turn, sid)
            self.stale = True
            handle.fail(InternalError())
        finally:
            if leased:
                with trio.CancelScope(shield=True):
                    await service.release_lease_quietly(sid, epoch)
            if service.in_flight.get(sid) is handle:
                del service.in_flight[sid]
            if start:
                service.start_finished(req.identity, start_key, committed=committed_ok, session_id=sid)
            if not handle.done.is_set():  # cancelled (shutdown): never leave a waiter hanging
                handle.fail(Unavailable("server is shutting down", retry_after=1))

    async def _reload(self) -> None:
        try:
            await self.activate()
        except JournalUnavailable:
            self.stale = True
            raise journal_unavailable() from None

    async def _redecide(self, req: TurnRequest, handle: TurnHandle) -> None:
        """Answer from the session's current journal state (stale, replay, 404, …)."""
        await self.activate()
        state = S.check_owner(self.state, req.identity, self.session_id)
        presented = state.token_digest if req.held and req.token is None else (
            None if req.token is None else S.token_digest(req.token)
        )
        decision = S.check_continue(
            state, presented, idempotency_key=req.idem_key, request_fingerprint=req.fingerprint
        )
        if isinstance(decision, S.Replay):
            token = self.service.keys.reissue(self.session_id, decision.turn, state.token_digest)
            handle.finish(S.render_response(decision.response, token), replayed=True)
            return
        await self._answer_contended(req, handle, state)  # current after all: retry

    async def _answer_contended(
        self, req: TurnRequest, handle: TurnHandle, state: S.SessionState | None
    ) -> None:
        service = self.service
        try:
            current = await service.journal.last_seq(self.stream)
        except JournalUnavailable:
            current = self.seq
        token = req.token
        if token is None:  # a held WebSocket connection presented the current token
            token = service.keys.reissue(
                self.session_id, 0 if state is None else state.turns, None if state is None else state.token_digest
            )
        handle.finish(S.contended(self.session_id, token, current=current), contended=True)


__all__ = [
    "Close",
    "Continue",
    "Describe",
    "Peek",
    "SessionActor",
    "Start",
    "TurnHandle",
    "TurnRequest",
    "stream_id",
]
