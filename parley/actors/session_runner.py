"""The I/O of one accepted session turn: lease, actions, delivery, handler, commit.

Why a runner apart from the actor: a turn may wait up to 60 s for a message,
and the session's mailbox must keep answering meanwhile (a second turn gets
``turn_in_flight`` at once). So the turn runs in a child task of the session
service, but it decides nothing: every rule is a pure step of
:mod:`parley.domain.session_turn`, and it never touches the actor's state.
Its result goes back to the actor as a mailbox message (:class:`TurnCommitted`,
:class:`TurnContended`, :class:`TurnMoved`, :class:`TurnFailed`) that the
actor applies, so the actor is the only writer of its state; the turn is
answered only once that message is in the mailbox, so the client's next turn
queues behind it.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

import trio

from ..domain import session as S
from ..domain import session_turn as T
from ..domain.handlers import TurnView
from ..errors import InternalError, ParleyError, Unavailable
from ..journal.errors import ConcurrencyError, JournalUnavailable
from ..journal.types import NewEvent, StoredEvent
from .failures import journal_unavailable
from .session_commands import TurnHandle, TurnRequest, stream_id
from .signals import wait_any

if TYPE_CHECKING:
    from .backbone import Backbone
    from .session_service import SessionService

log = logging.getLogger("parley.sessions")

FAILPOINT_STREAM_OPEN = "turn-after-stream-open"
_HISTORY_ALL = 1 << 62


# -- what a turn reports to its actor ------------------------------------------------


@dataclass(frozen=True, slots=True)
class TurnCommitted:
    """The turn's events are durable; ``response`` is its wire answer."""

    handle: TurnHandle
    plan: T.TurnPlan
    response: dict[str, Any]
    committed: list[StoredEvent]


@dataclass(frozen=True, slots=True)
class TurnContended:
    """Another process holds the lease or won the commit: nothing was journaled.

    ``current`` is the stream's last seq as read; ``stale`` asks for a reload.
    """

    handle: TurnHandle
    req: TurnRequest
    current: int
    stale: bool


@dataclass(frozen=True, slots=True)
class TurnMoved:
    """The stream moved past the accepted state (another process): reload and decide again."""

    handle: TurnHandle
    req: TurnRequest


@dataclass(frozen=True, slots=True)
class TurnFailed:
    """The turn failed after it was accepted (the token does not rotate)."""

    handle: TurnHandle
    error: ParleyError
    stale: bool


TurnResult = TurnCommitted | TurnContended | TurnMoved | TurnFailed


# -- the runner ------------------------------------------------------------------------


async def run_turn(
    service: SessionService, plan: T.TurnPlan, req: TurnRequest, handle: TurnHandle, start_key: str | None = None
) -> None:
    """Run ``plan`` and report its result to the session's actor (a child task of the service)."""
    run = _TurnRun(service, plan, req, handle)
    result: TurnResult | None = None
    try:
        result = await run.attempt()
    except ParleyError as error:
        result = TurnFailed(handle, error, stale=False)
    except JournalUnavailable:
        result = TurnFailed(handle, journal_unavailable(), stale=True)
    except Exception:
        log.exception("turn %d of session %s failed", plan.turn, plan.session_id)
        result = TurnFailed(handle, InternalError(), stale=True)
    finally:
        committed = isinstance(result, TurnCommitted)
        if run.plan.leased and not committed:
            with trio.CancelScope(shield=True):
                await service.release_lease_quietly(plan.session_id, run.plan.lease_epoch)
        if plan.start:
            service.start_finished(plan.identity, start_key, committed=committed, session_id=plan.session_id)
        if result is None:  # cancelled (shutdown): never leave a waiter hanging
            handle.fail(Unavailable("server is shutting down", retry_after=1))
    assert result is not None  # a cancellation re-raised above
    await _report(service, plan.session_id, result)


async def _report(service: SessionService, session_id: str, result: TurnResult) -> None:
    """Hand the result to the actor, then make sure the turn is answered.

    A committed or failed turn is answered as soon as its result is in the
    mailbox: whatever the client sends after seeing the answer queues behind
    the result, so it meets the applied state and no in-flight mark, and the
    answer never waits for the actor (nor is lost with it). A contended or
    moved turn is answered by the actor, which needs its state for that.
    """
    reply = None
    try:
        reply = await service.registry.deliver(session_id, result)
    except ParleyError:
        pass  # shutting down: answer below
    if reply is not None and isinstance(result, (TurnContended, TurnMoved)):
        with trio.move_on_after(service.registry.ask_timeout):
            try:
                await reply.wait()
            except ParleyError:
                pass
    handle = result.handle
    if handle.done.is_set():
        return
    if isinstance(result, TurnCommitted):
        handle.finish(result.response, result.committed)
    elif isinstance(result, TurnFailed):
        handle.fail(result.error)
    else:
        handle.fail(Unavailable("the session is busy; retry shortly", retry_after=1))


class _TurnRun:
    """One attempt of a turn; ``plan`` gains the lease epoch and loses it at the commit."""

    def __init__(self, service: SessionService, plan: T.TurnPlan, req: TurnRequest, handle: TurnHandle) -> None:
        self.service = service
        self.plan = plan
        self.req = req
        self.handle = handle

    async def attempt(self) -> TurnResult:
        service, req, handle = self.service, self.req, self.handle
        sid = self.plan.session_id
        if req.streamed and FAILPOINT_STREAM_OPEN in service.settings.failpoints:
            raise InternalError(f"failpoint {FAILPOINT_STREAM_OPEN}")
        if self.plan.needs_lease:
            taken = await service.take_lease(sid, req.input.wait, self.plan.base_seq)
            if taken is None:
                return TurnContended(handle, req, await _last_seq(service, sid, self.plan.base_seq), stale=False)
            if taken == "moved":
                return TurnMoved(handle, req)
            self.plan = T.with_lease(self.plan, int(taken))
        plan = self.plan
        backbone = service.backbone
        subscriptions = dict(plan.subscriptions)
        results = await apply_actions(backbone, sid, plan.turn, req, subscriptions)
        messages, parked = await deliver(backbone, subscriptions, req.input.max, req.input.wait)
        subscriptions = T.advance_cursors(subscriptions, messages)
        extras = await handler_output(service, plan, subscriptions, results, messages)
        composed = T.compose(
            plan,
            token=service.keys.mint(sid, plan.turn),
            ts=backbone.stamper.next(),
            results=results,
            messages=messages,
            subscriptions=subscriptions,
            parked_=parked,
            extras=extras,
        )
        try:
            committed = await service.journal.append(
                stream_id(sid),
                [NewEvent(type_, data) for type_, data in composed.events],
                plan.base_seq,
                side_effect=service.lease_release(sid, plan.lease_epoch) if plan.leased else None,
            )
        except ConcurrencyError:
            # Lost to another process (newer lease epoch or the same seq):
            # nothing was journaled, and the lease release rolled back with it.
            self.plan = replace(plan, leased=False)
            return TurnContended(handle, req, await _last_seq(service, sid, plan.base_seq), stale=True)
        self.plan = replace(plan, leased=False)  # released in the commit's transaction
        service.turn_committed(sid, composed.subscriptions, start=plan.start, identity=plan.identity)
        return TurnCommitted(handle, plan, composed.response, committed)


async def _last_seq(service: SessionService, session_id: str, fallback: int) -> int:
    try:
        return await service.journal.last_seq(stream_id(session_id))
    except JournalUnavailable:
        return fallback


# -- a turn's work -----------------------------------------------------------------------


async def apply_actions(
    backbone: Backbone, session_id: str, turn: int, req: TurnRequest, subscriptions: dict[str, int]
) -> list[Any]:
    """Run the actions in order; ``results[i]`` is the route body or its error envelope.

    Each action's idempotency key is ``session/<id>/<turn>/<index>``, so a
    retried turn replays the channel writes of its first attempt.
    """
    identity = req.identity
    results: list[Any] = []
    for index, action in enumerate(req.input.actions):
        key = f"session/{session_id}/{turn}/{index}"
        try:
            if action.kind == "subscribe":
                slug = backbone.check_channel(action.channel)
                cursor = T.subscribe_cursor(action.from_, backbone.directory.head(slug))
                subscriptions[slug] = cursor
                result: Any = {"cursor": cursor}
            elif action.kind == "unsubscribe":
                subscriptions.pop(action.channel, None)
                result = {"channel": action.channel, "subscribed": False}
            elif action.kind == "append":
                result = (await backbone.append(action.channel, action.message, identity, key)).body
            elif action.kind == "reassign":
                target = T.reassign_target(action.assignee)
                result = (await backbone.claim(action.channel, "reassign", action.message, identity, target, key)).body
            else:  # claim | done
                result = (await backbone.claim(action.channel, action.kind, action.message, identity, idem_key=key)).body
        except ParleyError as error:
            results.append(error.envelope())
            break
        results.append(result)
    return results


async def deliver(
    backbone: Backbone, subscriptions: Mapping[str, int], max_: int, wait: int
) -> tuple[list[dict[str, Any]], bool]:
    """``(messages, parked)``: what is deliverable now, or after waiting for one."""
    deadline = trio.current_time() + wait
    while True:
        # Take the commit events *before* reading, so no wake-up is missed.
        events = [backbone.signals.event(c) for c in subscriptions]
        messages = await _deliverable(backbone, subscriptions, max_)
        if messages or wait == 0 or not subscriptions:
            return messages, False
        remaining = deadline - trio.current_time()
        if backbone.shutting_down or remaining <= 0:
            return [], True
        await wait_any(events, remaining)


async def _deliverable(backbone: Backbone, subscriptions: Mapping[str, int], max_: int) -> list[dict[str, Any]]:
    per_channel = []
    for channel, cursor in subscriptions.items():
        page, _head = await backbone.read_from(channel, cursor, max_)
        per_channel.append([S.delivered(channel, cursor + i + 1, message) for i, message in enumerate(page)])
    return T.merge_deliverable(per_channel, max_)  # type: ignore[return-value]


async def handler_output(
    service: SessionService,
    plan: T.TurnPlan,
    subscriptions: Mapping[str, int],
    results: list[Any],
    messages: list[dict[str, Any]],
) -> dict[str, Any]:
    """The turn handler's extra output keys (an uninstalled handler behaves like inbox)."""
    handler = service.handlers.get(plan.handler)
    if handler is None:
        return {}
    history: dict[str, list[dict[str, Any]]] = {}
    if getattr(handler, "wants_history", False):
        for channel in subscriptions:
            history[channel], _ = await service.backbone.read_from(channel, 0, _HISTORY_ALL)
    view = TurnView(plan.session_id, plan.turn, dict(subscriptions), list(results), list(messages), history)
    return dict(handler.decide(view))
