"""One session turn as pure steps: decide, plan, compose, commit (no trio, no I/O).

Why sans-IO (hypercorn's style): a turn used to be one coroutine that
interleaved lease writes, channel actions, delivery, the handler and the
journal append with the decisions between them, so its rules could only be
tested through a server. Here every decision is a plain function over plain
values; :mod:`parley.actors.session_runner` performs the I/O between the
steps and feeds each result back in:

1. :func:`decide_continue` / :func:`plan_start` (in the actor, synchronously):
   refusal steps 4–8 and the :class:`TurnPlan` of an accepted turn;
2. :func:`with_lease` once the runner took the turn lease (continues only);
3. :func:`subscribe_cursor`, :func:`reassign_target` while actions run,
   :func:`merge_deliverable` and :func:`advance_cursors` for delivery;
4. :func:`compose`: the wire response, its journaled form and the events;
5. :func:`commit` (back in the actor): the state after the committed events.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from parley.domain.identity import Identity
from parley.domain.message import check_assignee_shape, check_cursor_in_log
from parley.domain.session import (
    SESSION_STARTED,
    TURN_COMMITTED,
    KeyedRequest,
    Replay,
    SessionState,
    check_continue,
    check_owner,
    finished,
    fold,
    parked,
    render_response,
    session_started_data,
    stored_response,
    turn_committed_data,
)
from parley.domain.tokens import token_digest
from parley.errors import InternalError, TurnInFlight

__all__ = [
    "ComposedTurn",
    "TurnPlan",
    "advance_cursors",
    "commit",
    "compose",
    "decide_continue",
    "keyed",
    "merge_deliverable",
    "plan_start",
    "presented_digest",
    "reassign_target",
    "stamp_key",
    "subscribe_cursor",
    "with_lease",
]

#: Response keys a handler's extras may not replace.
_RESERVED_OUTPUT = ("results", "messages", "cursors")


@dataclass(frozen=True, slots=True)
class TurnPlan:
    """An accepted turn: everything the runner needs that the state decided.

    ``base_seq`` is the stream position the turn was accepted at (its commit
    expects it); ``subscriptions`` are the cursors before the actions run.
    """

    session_id: str
    identity: Identity
    turn: int
    handler: str
    base_seq: int
    lease_epoch: int
    subscriptions: Mapping[str, int] = field(default_factory=dict)
    keyed: KeyedRequest | None = None
    start: bool = False
    leased: bool = False

    @property
    def needs_lease(self) -> bool:
        """The start turn takes no lease: nobody else knows the session id yet."""
        return not self.start


@dataclass(frozen=True, slots=True)
class ComposedTurn:
    """What a turn commits and answers: ``events`` as ``(type, data)`` pairs."""

    response: dict[str, Any]
    stored: dict[str, Any]
    events: list[tuple[str, dict[str, Any]]]
    subscriptions: dict[str, int]


def keyed(idem_key: str | None, fingerprint: str) -> KeyedRequest | None:
    return None if idem_key is None else KeyedRequest(idem_key, fingerprint)


def presented_digest(state: SessionState, token: str | None, *, held: bool) -> str | None:
    """The digest a request presents; a held WebSocket without a token presents the current one."""
    if held and token is None:
        return state.token_digest
    return None if token is None else token_digest(token)


def decide_continue(
    state: SessionState | None,
    session_id: str,
    seq: int,
    identity: Identity,
    token: str | None,
    *,
    held: bool = False,
    idem_key: str | None = None,
    fingerprint: str = "",
    in_flight: bool = False,
) -> Replay | TurnPlan:
    """Refusal steps 4–8 of a continue, then its plan.

    A replay is answered even while a turn is in flight (it commits nothing);
    only a turn that would run is refused with ``turn_in_flight``.
    """
    current = check_owner(state, identity, session_id)  # step 4
    decision = check_continue(  # steps 5-7
        current,
        presented_digest(current, token, held=held),
        idempotency_key=idem_key,
        request_fingerprint=fingerprint,
    )
    if isinstance(decision, Replay):
        return decision
    if in_flight:  # step 8
        raise TurnInFlight()
    return TurnPlan(
        session_id=session_id,
        identity=identity,
        turn=current.turns + 1,
        handler=current.handler,
        base_seq=seq,
        lease_epoch=current.lease_epoch,
        subscriptions=dict(current.subscriptions),
        keyed=keyed(idem_key, fingerprint),
    )


def plan_start(
    state: SessionState | None,
    session_id: str,
    identity: Identity,
    handler: str,
    *,
    idem_key: str | None = None,
    fingerprint: str = "",
    in_flight: bool = False,
) -> TurnPlan:
    """The start turn (turn 1) of a fresh session id."""
    if state is not None or in_flight:
        raise InternalError("session id collision")  # 80 random bits: never in practice
    return TurnPlan(
        session_id=session_id,
        identity=identity,
        turn=1,
        handler=handler,
        base_seq=0,
        lease_epoch=0,
        keyed=keyed(idem_key, fingerprint),
        start=True,
    )


def with_lease(plan: TurnPlan, epoch: int) -> TurnPlan:
    """The plan once the runner holds the turn lease at ``epoch``."""
    return replace(plan, lease_epoch=epoch, leased=True)


# -- actions and delivery ----------------------------------------------------------


def subscribe_cursor(from_: Any, head: int) -> int:
    """A subscribe action's starting cursor: ``head`` (default), ``start`` or an integer ≤ head."""
    if from_ == "head" or from_ is None:
        return head
    if from_ == "start":
        return 0
    return check_cursor_in_log(int(from_), head)


def reassign_target(assignee: Any) -> dict[str, str]:
    """A reassign action's assignee, or the session route's ``invalid_request`` (the
    channel route's own rule, :func:`parley.domain.message.check_assignee_shape`)."""
    return check_assignee_shape(assignee)


def stamp_key(item: Mapping[str, Any]) -> tuple[int, str]:
    """Merge key of a delivered message: the ``#``-counter of its backbone stamp."""
    ts = item["message"].get("ts")
    if isinstance(ts, str) and "#" in ts:
        head, _, counter = ts.rpartition("#")
        if counter.isdigit():
            return int(counter), head
    return 0, str(ts)


def merge_deliverable(per_channel: Iterable[Sequence[Mapping[str, Any]]], max_: int) -> list[Mapping[str, Any]]:
    """At most ``max_`` delivered items, merged by stamp; each channel keeps its own order."""
    merged = heapq.merge(*per_channel, key=stamp_key)
    return [item for _, item in zip(range(max_), merged)]


def advance_cursors(subscriptions: Mapping[str, int], messages: Iterable[Mapping[str, Any]]) -> dict[str, int]:
    """The cursors after delivering ``messages`` (each carries its channel's cursor after it)."""
    out = dict(subscriptions)
    for item in messages:
        out[item["channel"]] = item["cursor"]
    return out


# -- compose and commit --------------------------------------------------------------


def compose(
    plan: TurnPlan,
    *,
    token: str,
    ts: str,
    results: Sequence[Any],
    messages: Sequence[Mapping[str, Any]],
    subscriptions: Mapping[str, int],
    parked_: bool,
    extras: Mapping[str, Any] | None = None,
) -> ComposedTurn:
    """The turn's response and the events that commit it (``session_started`` first on a start).

    ``extras`` (a handler's output) never replace ``results``/``messages``/``cursors``.
    """
    cursors = dict(subscriptions)
    sid = plan.session_id
    if parked_:
        response = parked(sid, token, results=results, cursors=cursors, messages=messages)
    else:
        response = finished(sid, token, results=results, messages=messages, cursors=cursors)
    for key, value in (extras or {}).items():
        if key not in _RESERVED_OUTPUT and key not in response["output"]:
            response["output"][key] = value
    stored = stored_response(response)
    events: list[tuple[str, dict[str, Any]]] = []
    if plan.start:
        started = session_started_data(sid, plan.identity, handler=plan.handler, ts=ts, start_idempotency=plan.keyed)
        events.append((SESSION_STARTED, started))
    committed = turn_committed_data(
        turn=plan.turn,
        token_digest=token_digest(token),
        subscriptions=cursors,
        response=stored,
        ts=ts,
        lease_epoch=plan.lease_epoch,
        idempotency=None if plan.start else plan.keyed,
    )
    events.append((TURN_COMMITTED, committed))
    return ComposedTurn(render_response(stored, token), stored, events, cursors)


def commit(state: SessionState | None, events: Iterable[tuple[str, Mapping[str, Any]]]) -> SessionState:
    """The session state after a turn's (or a close's) committed events."""
    after = fold(events, state)
    if after is None:
        raise InternalError("a commit without events")
    return after
