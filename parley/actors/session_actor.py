"""SessionActor: one session's state (the fold of ``session:<id>``) and its turns.

The mailbox serialises the *decisions* about a session: the owner check,
missing/stale token, Idempotency-Key replay and turn-in-flight (refusal steps
4–8) are decided synchronously against the actor's state by
:func:`parley.domain.session_turn.decide_continue`, with no ``await`` between
the in-flight check and marking the turn in flight. An accepted turn then runs
in a child task of the session service (:mod:`parley.actors.session_runner`;
it may wait up to 60 s for a message), so the mailbox keeps answering: a
second turn for the session gets ``turn_in_flight`` at once instead of
queueing behind the first.

The actor is the only writer of its state, including the in-flight mark: the
runner reports its result as a mailbox message, which the actor applies; the
turn is answered once that message is queued, so the client's next turn
follows it. While a turn runs the actor is ``busy`` and is not
passivated. Across processes the turn lease and ``UNIQUE(stream_id, seq)``
arbitrate (see :mod:`parley.actors.session_service`).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from ..domain import session as S
from ..domain import session_turn as T
from ..errors import ParleyError, StaleToken, TurnInFlight, Unavailable, UnknownSession
from ..journal.errors import ConcurrencyError, JournalUnavailable
from ..journal.types import NewEvent
from .failures import journal_unavailable
from .runtime import Actor, Envelope
from .session_commands import Close, Continue, Describe, Peek, Start, TurnHandle, TurnRequest, stream_id
from .session_runner import TurnCommitted, TurnContended, TurnFailed, TurnMoved, run_turn

if TYPE_CHECKING:
    from .session_service import SessionService

log = logging.getLogger("parley.sessions")

#: Save a snapshot after this many events past the last one (and on passivation).
SNAPSHOT_EVERY = 100


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
        #: The handle of the turn running now (steps 8, describe, passivation, shutdown).
        self.in_flight: TurnHandle | None = None
        #: The highest seq of this stream the journal tailer reported (ours or another process's).
        self.heard = 0

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

    def busy(self) -> bool:
        return self.in_flight is not None

    def hear(self, seq: int) -> None:
        """The tailer saw ``seq`` committed: a state behind it reloads before its next command.

        A hint, not state: comparing it with ``seq`` at the next batch means our
        own commit (applied from the runner's result) never causes a reload.
        """
        self.heard = max(self.heard, seq)

    async def passivate(self) -> None:
        if self.in_flight is not None:
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

    async def _reload(self) -> None:
        try:
            await self.activate()
        except JournalUnavailable:
            self.stale = True
            raise journal_unavailable() from None

    # -- commands ----------------------------------------------------------------

    async def handle_batch(self, batch: list[Envelope[Any]]) -> None:
        reloaded = False
        for envelope in batch:
            command = envelope.command
            if isinstance(command, _RESULTS):
                # First, and without a reload: our own commit moves seq up to
                # what the tailer may already have reported.
                try:
                    await self._turn_ended(command)
                except ParleyError:
                    self.stale = True  # could not apply it: the journal has the truth
                envelope.reply.set_result(None)
                continue
            if self.stale or self.heard > self.seq:
                try:
                    await self.activate()
                except (JournalUnavailable, Unavailable):
                    envelope.reply.set_error(journal_unavailable())
                    continue
            try:
                if isinstance(command, Continue):
                    try:
                        envelope.reply.set_result(self._continue(command))
                    except (StaleToken, UnknownSession):
                        # Another process may have committed since this state was
                        # loaded (the tailer tells us only after a poll): re-read
                        # once per batch before refusing.
                        if reloaded or self.in_flight is not None:
                            raise
                        reloaded = True
                        await self._reload()
                        envelope.reply.set_result(self._continue(command))
                elif isinstance(command, Start):
                    envelope.reply.set_result(self._start(command))
                elif isinstance(command, Peek):
                    envelope.reply.set_result(self.state)
                elif isinstance(command, Describe):
                    if command.head > self.seq and self.in_flight is None:
                        await self._reload()
                    state = S.check_owner(self.state, command.identity, self.session_id)
                    envelope.reply.set_result((state, self.in_flight is not None))
                elif isinstance(command, Close):
                    envelope.reply.set_result(await self._close(command))
                else:
                    raise TypeError(f"unknown command {type(command).__name__}")
            except ParleyError as error:
                envelope.reply.set_error(error)

    def _decide_continue(self, req: TurnRequest, *, in_flight: bool) -> Any:
        """Refusal steps 4–8 against the current state, then the turn's plan (or a replay)."""
        return T.decide_continue(
            self.state,
            self.session_id,
            self.seq,
            req.identity,
            req.token,
            held=req.held,
            idem_key=req.idem_key,
            fingerprint=req.fingerprint,
            in_flight=in_flight,
        )

    def _continue(self, command: Continue) -> TurnHandle:
        req, handle = command.req, command.handle
        decision = self._decide_continue(req, in_flight=self.in_flight is not None)
        if isinstance(decision, S.Replay):
            return self._replay(decision, handle)
        self._launch(decision, req, handle, None)
        return handle

    def _start(self, command: Start) -> TurnHandle:
        req = command.req
        plan = T.plan_start(
            self.state,
            self.session_id,
            req.identity,
            req.input.handler,  # type: ignore[arg-type]  # a start's input always names one
            idem_key=req.idem_key,
            fingerprint=req.fingerprint,
            in_flight=self.in_flight is not None,
        )
        self._launch(plan, req, command.handle, command.start_key)
        return command.handle

    def _launch(self, plan: T.TurnPlan, req: TurnRequest, handle: TurnHandle, start_key: str | None) -> None:
        self.service.spawn(run_turn, self.service, plan, req, handle, start_key)
        self.in_flight = handle  # after spawn: a refused spawn leaves no mark

    def _replay(self, decision: S.Replay, handle: TurnHandle) -> TurnHandle:
        assert self.state is not None
        token = self.service.keys.reissue(self.session_id, decision.turn, self.state.token_digest)
        return handle.finish(S.render_response(decision.response, token), replayed=True)

    async def _close(self, command: Close) -> dict[str, Any]:
        service = self.service
        reloaded = False
        for _attempt in range(3):
            try:
                state = S.check_owner(self.state, command.identity, self.session_id)
                presented = None if command.token is None else S.token_digest(command.token)
                S.check_continue(state, presented)
            except (StaleToken, UnknownSession):
                if reloaded or self.in_flight is not None:
                    raise
                reloaded = True  # another process may have moved on: re-read once
                await self._reload()
                continue
            if self.in_flight is not None:
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
            self.state = T.commit(state, ((e.type, e.data) for e in committed))
            self.seq = committed[-1].seq
            service.session_closed(state)
            return {"closed": True}
        raise Unavailable("the session is busy; retry shortly", retry_after=1)

    # -- a turn's result (sent by its runner) -----------------------------------------

    async def _turn_ended(self, result: TurnCommitted | TurnContended | TurnMoved | TurnFailed) -> None:
        """Apply a runner's result; a contended or moved turn is answered here, from the state."""
        handle = result.handle
        if self.in_flight is handle:
            self.in_flight = None
        if isinstance(result, TurnCommitted):  # the runner answers it (it is durable)
            self._committed(result)
            if self.seq - self.snapshot_seq >= SNAPSHOT_EVERY:
                await self._snapshot()
        elif isinstance(result, TurnFailed):  # the runner answers it
            self.stale = self.stale or result.stale
        elif isinstance(result, TurnContended):
            self.stale = self.stale or result.stale
            handle.finish(self._contended(result.req, result.current), contended=True)
        else:
            await self._redecide(result)

    def _committed(self, result: TurnCommitted) -> None:
        last = result.committed[-1].seq
        if self.seq == result.plan.base_seq and not self.stale:
            self.state = T.commit(self.state, ((e.type, e.data) for e in result.committed))
            self.seq = last
        elif self.seq < last:
            self.stale = True  # this state is not the one the turn was accepted on: reload

    async def _redecide(self, result: TurnMoved) -> None:
        """Another process committed since the turn was accepted: answer from the current stream."""
        req, handle = result.req, result.handle
        try:
            await self._reload()
            decision = self._decide_continue(req, in_flight=False)
        except ParleyError as error:
            handle.fail(error)
            return
        if isinstance(decision, S.Replay):
            self._replay(decision, handle)
        else:  # current after all: the client retries
            handle.finish(self._contended(req, self.seq), contended=True)

    def _contended(self, req: TurnRequest, current: int) -> dict[str, Any]:
        """Nothing was journaled: the presented token comes back unrotated."""
        token = req.token
        if token is None:  # a held WebSocket connection presented the current token
            state = self.state
            token = self.service.keys.reissue(
                self.session_id, 0 if state is None else state.turns, None if state is None else state.token_digest
            )
        return S.contended(self.session_id, token, current=current)


_RESULTS = (TurnCommitted, TurnContended, TurnMoved, TurnFailed)


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
