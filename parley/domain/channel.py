"""A channel as a fold of its journal stream, and the rules that extend it.

``apply`` folds one event into :class:`ChannelState`; the ``decide_*``
functions check a command against the state (Caucus's exact check order,
channels.md §3) and return the events to journal plus the outcome
(``domain/outcomes.py``; the http layer picks the status, ADR-0036).
Nothing here does I/O: the clock reading, the seatbelt sheet and the stamp
counter are passed in, so the actor only orders and commits. A batch is
decided against a :class:`~parley.domain.pending.PendingState` (the committed
state plus the batch's events so far); the state itself only folds committed
events.

Event types of a ``channel:<slug>`` stream:

``channel_created``  ``{descriptor, idem?}``
``message``          ``{message, fp, claim?, idem?}`` — one log entry; a claim
                     grant/renew/reassign/done carries its ledger effect in
                     ``claim`` so message and claim commit as one event
``claim_lapsed``     ``{key, msg_id}`` — a lease found expired (D3)
``artifact_stored``  ``{sha256, size}`` (bytes live in the artifacts table)
``channel_archived`` ``{by}`` (D11)
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeAlias

import orjson

from ..errors import (
    ArtifactIntegrity,
    ArtifactTooLarge,
    ChannelArchived,
    ChannelExists,
    ChannelLimit,
    ChannelFull,
    Forbidden,
    IdempotencyConflict,
    InvalidMessage,
    MsgIdConflict,
)
from . import caps
from . import claims as claim_rules
from . import message as rules
from .identity import Identity
from .outcomes import Appended, Archived, ArtifactKnown, ArtifactStored, Claimed, ClaimRefused, Outcome, Replayed
from .seatbelt import PendingCharges, Seatbelt
from .text import fragment, js_quote

if TYPE_CHECKING:
    from .pending import PendingState

Event = tuple[str, dict[str, Any]]
ARTIFACT_SHA_RE_LEN = 64


@dataclass
class Limits:
    """The configurable caps a channel decision needs (D6)."""

    max_messages_per_channel: int = caps.MAX_MESSAGES_PER_CHANNEL
    max_read_limit: int = caps.MAX_READ_LIMIT
    max_body_chars: int = rules.MAX_BODY_CHARS
    max_artifact_bytes: int = caps.MAX_ARTIFACT_BYTES
    max_channel_artifact_bytes: int = caps.MAX_CHANNEL_ARTIFACT_BYTES
    max_total_artifact_bytes: int = caps.MAX_TOTAL_ARTIFACT_BYTES


@dataclass
class IdemRecord:
    fingerprint: str
    route: str
    index: int | None  # the message index the write produced (None for create)


@dataclass
class ChannelState:
    name: str
    descriptor: dict[str, Any] | None = None
    messages: list[dict[str, Any]] = field(default_factory=list)
    ledger: claim_rules.ClaimLedger = field(default_factory=claim_rules.ClaimLedger)
    artifacts: dict[str, int] = field(default_factory=dict)
    artifact_bytes: int = 0
    msg_ids: dict[str, tuple[int, str]] = field(default_factory=dict)
    idem: dict[str, IdemRecord] = field(default_factory=dict)
    archived: bool = False
    seq: int = 0

    @property
    def exists(self) -> bool:
        return self.descriptor is not None

    @property
    def head(self) -> int:
        return len(self.messages)

    def describe(self) -> dict[str, Any]:
        return describe(self)


def describe(state: View) -> dict[str, Any]:
    """The channel's descriptor as the wire shows it: ``head`` and, once archived, ``archived``."""
    assert state.descriptor is not None
    out = dict(state.descriptor)
    out["head"] = state.head
    if state.archived:
        out["archived"] = True
    return out


def apply(state: ChannelState, type_: str, data: dict[str, Any]) -> None:
    """Fold one event into ``state`` (in place: states can hold 10,000 messages)."""
    state.seq += 1
    if type_ == "channel_created":
        state.descriptor = dict(data["descriptor"])
        _remember_idem(state, data, None)
    elif type_ == "message":
        message = data["message"]
        index = len(state.messages)
        state.messages.append(message)
        if isinstance(message.get("msg_id"), str):
            state.msg_ids[message["msg_id"]] = (index, data["fp"])
        _remember_idem(state, data, index)
        effect = data.get("claim")
        if effect is not None:
            _apply_claim(state, message, effect)
    elif type_ == "claim_lapsed":
        state.ledger.delete(data["key"])
    elif type_ == "artifact_stored":
        if data["sha256"] not in state.artifacts:
            state.artifacts[data["sha256"]] = data["size"]
            state.artifact_bytes += data["size"]
    elif type_ == "channel_archived":
        state.archived = True


def _remember_idem(state: ChannelState, data: dict[str, Any], index: int | None) -> None:
    idem = data.get("idem")
    if idem is not None:
        state.idem[idem["key"]] = IdemRecord(idem["fp"], idem["route"], index)


def _apply_claim(state: ChannelState, message: dict[str, Any], effect: dict[str, Any]) -> None:
    key, op, at_ms = effect["key"], effect["op"], effect["at_ms"]
    if op == "done":
        state.ledger.delete(key)
    elif op == "reassign":
        state.ledger.put(key, claim_rules.entry_for_reassign(message, effect["assignee"], at_ms))
    else:
        state.ledger.put(key, claim_rules.entry_for_grant(message, at_ms))


# -- fingerprints and idempotency ---------------------------------------------


def fingerprint(route: str, payload: dict[str, Any], exclude: tuple[str, ...] = ("v", "ts")) -> str:
    """Canonical JSON digest of what a write asked for (server stamps excluded)."""
    body = {k: v for k, v in payload.items() if k not in exclude}
    canonical = orjson.dumps([route, body], option=orjson.OPT_SORT_KEYS)
    return hashlib.sha256(canonical).hexdigest()


def key_fingerprint(route: str, payload: dict[str, Any]) -> str:
    """The fingerprint an ``Idempotency-Key`` is bound to: also without ``msg_id``.

    The header exists for clients whose ``msg_id`` is not stable across
    retries (D2), so a retry that only mints a new ``msg_id`` is the same
    request and replays the original.
    """
    return fingerprint(route, payload, ("v", "ts", "msg_id"))


#: What the decisions read the seatbelt through: a batch's sheet, or the belt itself.
Belt = Seatbelt | PendingCharges
#: What the decisions read the channel through: a batch's pending view, or a state.
View: TypeAlias = "ChannelState | PendingState"


@dataclass
class Decision:
    """What a write decided: events to journal and the outcome to answer with
    once they have committed (the outcome describes the state right after
    ``events``)."""

    events: list[Event]
    outcome: Outcome


def _replay(state: View, record_index: int | None, route: str) -> Decision:
    if record_index is None:
        body = state.describe()
        body["head"] = 0
    else:
        message = state.messages[record_index]
        body = {"message": message, "cursor": record_index + 1}
        if route != "append":
            body = {"outcome": "granted", **body}
    return Decision([], Replayed(route, body))


def check_idempotency_key(state: View, key: str | None, fp: str) -> Decision | None:
    """Replay a write already committed under ``key``, or refuse a different one."""
    if key is None:
        return None
    record = state.idem.get(key)
    if record is None:
        return None
    if record.fingerprint != fp:
        raise IdempotencyConflict(
            "Idempotency-Key was already used with a different request"
        )
    return _replay(state, record.index, record.route)


def check_msg_id(state: View, message: dict[str, Any], fp: str, route: str) -> Decision | None:
    """D2: a known ``msg_id`` replays the original or is a conflict."""
    known = state.msg_ids.get(message.get("msg_id"))  # type: ignore[arg-type]
    if known is None:
        return None
    index, original_fp = known
    if original_fp != fp:
        raise MsgIdConflict(
            f"msg_id {message['msg_id']} was already used in this channel for a different message"
        )
    original = state.messages[index]
    if route == "append" and original.get("type") != "claim":
        return _replay(state, index, "append")
    if route != "append" and original.get("type") == "claim":
        return _replay(state, index, route)
    raise MsgIdConflict(
        f"msg_id {message['msg_id']} was already used in this channel for a different message"
    )


def check_writable(state: View) -> None:
    if state.archived:
        raise ChannelArchived(f"Channel is archived: {js_quote(fragment(state.name))}")


def check_room(state: View, limits: Limits) -> None:
    cap = limits.max_messages_per_channel
    if state.head >= cap:
        noun = "message" if cap == 1 else "messages"
        raise ChannelFull(
            f"Channel is full: {js_quote(fragment(state.name))} holds at most {cap} {noun}. "
            "Start a fresh channel to continue."
        )


# -- message preparation ------------------------------------------------------


def anchor(body: dict[str, Any], identity: Identity) -> dict[str, Any]:
    """Overwrite identity fields from the bearer, keeping client key order (§3)."""
    message = dict(body)
    message["agent_id"] = identity.agent_id
    message["owner"] = identity.owner
    return message


def _stamped(message: dict[str, Any], ts: str) -> dict[str, Any]:
    stored = dict(message)
    stored["v"] = rules.SCHEMA_VERSION
    stored["ts"] = ts
    return stored


def _idem_data(key: str | None, fp: str, route: str) -> dict[str, Any] | None:
    return None if key is None else {"key": key, "fp": fp, "route": route}


def _message_event(
    message: dict[str, Any], fp: str, idem: dict[str, Any] | None, claim: dict[str, Any] | None = None
) -> Event:
    data: dict[str, Any] = {"message": message, "fp": fp}
    if claim is not None:
        data["claim"] = claim
    if idem is not None:
        data["idem"] = idem
    return ("message", data)




# -- decisions ----------------------------------------------------------------


def decide_append(
    state: View,
    body: dict[str, Any],
    identity: Identity,
    *,
    now_ms: int,
    stamp: Callable[[], str],
    seatbelt: Belt,
    limits: Limits,
    idem_key: str | None = None,
) -> Decision:
    message = anchor(body, identity)
    fp = fingerprint("append", message)
    key_fp = key_fingerprint("append", message)
    replay = check_idempotency_key(state, idem_key, key_fp)
    if replay is not None:
        return replay
    rules.check_append(message, max_body_chars=limits.max_body_chars)
    replay = check_msg_id(state, message, fp, "append")
    if replay is not None:
        return replay
    check_writable(state)
    check_room(state, limits)
    seatbelt.admit_post(state.name, identity.agent_id, rules.dup_key(message), now_ms)
    stored = _stamped(message, stamp())
    event = _message_event(stored, fp, _idem_data(idem_key, key_fp, "append"))
    return Decision([event], Appended({"message": stored, "cursor": state.head + 1}))


def decide_claim(
    state: View,
    op: str,
    body: dict[str, Any],
    identity: Identity,
    *,
    now_ms: int,
    stamp: Callable[[], str],
    seatbelt: Belt,
    limits: Limits,
    assignee: dict[str, str] | None = None,
    idem_key: str | None = None,
) -> Decision:
    """``op`` is ``claim``, ``reassign`` or ``done`` (channels.md §3)."""
    message = anchor(body, identity)
    if op == "done":
        message["status"] = "resolved"
    requested = {**message, "assignee": assignee} if assignee is not None else message
    fp = fingerprint(op, requested)
    key_fp = key_fingerprint(op, requested)
    replay = check_idempotency_key(state, idem_key, key_fp)
    if replay is not None:
        return replay
    key = rules.check_claim(message, op, max_body_chars=limits.max_body_chars)
    if op == "reassign":
        assert assignee is not None
        issues = rules.validate_assignee(assignee)
        if issues:
            raise InvalidMessage(issues)  # both fields, agent_id first (channels.md §2.8)
    replay = check_msg_id(state, message, fp, op)
    if replay is not None:
        return replay
    check_writable(state)
    seatbelt.check_rate(state.name, identity.agent_id, now_ms)
    entry = state.ledger.get(key)
    if op == "claim":
        verdict = claim_rules.decide_claim(entry, identity.owner, message.get("heartbeat") is True, now_ms)
    elif op == "reassign":
        verdict = claim_rules.decide_reassign(entry, identity.owner, now_ms)
    else:
        verdict = claim_rules.decide_done(entry, identity.owner, now_ms)
    events: list[Event] = []
    if verdict.lapsed and entry is not None:
        events.append(("claim_lapsed", {"key": key, "msg_id": entry.msg_id}))
    if verdict.kind == "already_claimed":
        assert verdict.holder is not None
        return Decision(events, ClaimRefused({"outcome": "already_claimed", "by": verdict.holder.by()}))
    if verdict.kind == "not_held":
        return Decision(events, ClaimRefused({"outcome": "not_held"}))
    check_room(state, limits)
    stored = message
    if op == "reassign":
        stored = dict(message)
        stored["assignee"] = {"agent_id": assignee["agent_id"], "owner": assignee["owner"]}  # type: ignore[index]
    stored = _stamped(stored, stamp())
    effect: dict[str, Any] = {"op": op if op != "claim" else verdict.kind, "key": key, "at_ms": now_ms}
    if op == "reassign":
        effect["assignee"] = stored["assignee"]
    events.append(_message_event(stored, fp, _idem_data(idem_key, key_fp, op), effect))
    seatbelt.record_rate(state.name, identity.agent_id, now_ms)
    return Decision(events, Claimed({"outcome": "granted", "message": stored, "cursor": state.head + 1}))


def decide_artifact(
    state: View, sha256: str, data: bytes, *, limits: Limits, global_bytes: int
) -> Decision:
    """Put order: sha format → blob cap → digest → dedup → archived → channel cap → global cap.

    A dedup answer changes nothing, so it is still given on an archived
    channel (like a D2 replay); storing a new blob is a write (D11).
    """
    if len(sha256) != ARTIFACT_SHA_RE_LEN or any(c not in "0123456789abcdef" for c in sha256):
        raise ArtifactIntegrity()
    if len(data) > limits.max_artifact_bytes:
        raise ArtifactTooLarge(
            f"Artifact too large: a single artifact is capped at {limits.max_artifact_bytes} bytes."
        )
    if hashlib.sha256(data).hexdigest() != sha256:
        raise ArtifactIntegrity()
    body = {"uri": f"caucus://artifact/{state.name}/{sha256}", "sha256": sha256, "size": len(data)}
    if sha256 in state.artifacts:
        return Decision([], ArtifactKnown(body))
    check_writable(state)
    if state.artifact_bytes + len(data) > limits.max_channel_artifact_bytes:
        raise ArtifactTooLarge(
            "Artifact too large: this channel's artifact store is capped at "
            f"{limits.max_channel_artifact_bytes} bytes."
        )
    if global_bytes + len(data) > limits.max_total_artifact_bytes:
        raise ArtifactTooLarge(
            "Artifact too large: the backbone's artifact store is capped at "
            f"{limits.max_total_artifact_bytes} bytes."
        )
    return Decision([("artifact_stored", {"sha256": sha256, "size": len(data)})], ArtifactStored(body))


def decide_archive(state: View, identity: Identity) -> Decision:
    assert state.descriptor is not None
    if state.descriptor.get("created_by") != identity.owner:
        raise Forbidden("only the channel's creating owner can archive it")
    body = state.describe()
    if state.archived:
        return Decision([], Archived(body))
    body["archived"] = True  # describe() of the state once the event is folded in
    return Decision([("channel_archived", {"by": identity.owner})], Archived(body))


def read_page(state: ChannelState, body: dict[str, Any], limits: Limits) -> dict[str, Any]:
    cursor, limit = rules.check_read_args(body, state.head, limits.max_read_limit)
    page = state.messages[cursor : cursor + limit]
    return {"messages": page, "cursor": cursor + len(page)}


def live_claims(state: ChannelState, now_ms: int) -> list[dict[str, Any]]:
    """D3: the ledger as the wire shows it (lapsed entries are not live)."""
    out = []
    for key, entry in state.ledger.live_entries(now_ms):
        item: dict[str, Any] = {
            "target": key,
            "holder": {"agent_id": entry.agent_id, "owner": entry.owner},
            "ts": entry.ts,
            "msg_id": entry.msg_id,
        }
        expires = entry.expires_at_ms()
        if expires is not None:
            item["expires_at"] = rules.stamp(expires, 0).split("#", 1)[0]
        out.append(item)
    return out


def decide_create(
    name: object,
    body: dict[str, Any],
    identity: Identity,
    *,
    exists: Callable[[str], bool],
    channel_count: int,
    max_channels: int,
    now_ms: int,
    stamp: Callable[[], str],
    seatbelt: Belt,
) -> tuple[str, dict[str, Any]]:
    """createChannel's order: slug → exists → options → limit → throttle (last, so
    a rejected create spends no budget). Returns ``(slug, descriptor)``."""
    slug = rules.check_channel_name(name)
    if exists(slug):
        raise ChannelExists(f"Channel already exists: {js_quote(fragment(slug))}")
    options = rules.check_create_options({**body, "created_by": identity.owner})
    if channel_count >= max_channels:
        raise ChannelLimit(f"Channel limit reached: at most {max_channels} channels")
    seatbelt.admit_create(identity.owner, now_ms)
    descriptor: dict[str, Any] = {"channel": slug, "kind": "ephemeral"}
    if "purpose" in options:
        descriptor["purpose"] = options["purpose"]
    descriptor["verbosity"] = options["verbosity"]
    descriptor["renderBudgetChars"] = options["renderBudgetChars"]
    descriptor["created_by"] = identity.owner
    descriptor["created_ts"] = stamp()
    return slug, descriptor


# -- snapshots ------------------------------------------------------------------

SNAPSHOT_VERSION = 1


def to_snapshot(state: ChannelState) -> dict[str, Any]:
    """The whole folded state as JSON-able data (``from_snapshot`` inverts it)."""
    return {
        "v": SNAPSHOT_VERSION,
        "name": state.name,
        "descriptor": state.descriptor,
        "messages": state.messages,
        "ledger": [[key, entry.to_record()] for key, entry in state.ledger.items()],
        "artifacts": state.artifacts,
        "msg_ids": {k: [i, fp] for k, (i, fp) in state.msg_ids.items()},
        "idem": {k: [r.fingerprint, r.route, r.index] for k, r in state.idem.items()},
        "archived": state.archived,
        "seq": state.seq,
    }


def from_snapshot(data: dict[str, Any]) -> ChannelState:
    if data.get("v") != SNAPSHOT_VERSION:
        raise ValueError("unsupported channel snapshot version")
    state = ChannelState(data["name"])
    state.descriptor = data["descriptor"]
    state.messages = list(data["messages"])
    for key, record in data["ledger"]:
        state.ledger.put(key, claim_rules.ClaimEntry.from_record(record))
    state.artifacts = dict(data["artifacts"])
    state.artifact_bytes = sum(state.artifacts.values())
    state.msg_ids = {k: (i, fp) for k, (i, fp) in data["msg_ids"].items()}
    state.idem = {k: IdemRecord(fp, route, index) for k, (fp, route, index) in data["idem"].items()}
    state.archived = data["archived"]
    state.seq = data["seq"]
    return state
