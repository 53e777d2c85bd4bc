"""The claim ledger of one channel and the lease maths around it.

Pure functions of ``(entry, caller, now_ms)`` so the channel actor decides a
claim as a true compare-and-set with no ``await`` in between, and so replaying
the journal folds to the same ledger (contracts/channels.md §2.6 and §3
"claim", "reassignClaim", "markClaimDone"). Expiry is lazy, exactly as in
Caucus: a lease is only judged when the next claim/reassign/done on its key
looks at it; nothing here runs on a timer.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

__all__ = [
    "ClaimEntry",
    "ClaimLedger",
    "Decision",
    "decide_claim",
    "decide_done",
    "decide_reassign",
    "entry_for_grant",
    "entry_for_reassign",
    "is_live",
]

DecisionKind = Literal["grant", "renew", "already_claimed", "not_held"]


@dataclass(frozen=True)
class ClaimEntry:
    """One ledger record (§2.6); ``lease_ttl_s is None`` means it never expires."""

    agent_id: str
    owner: str
    ts: str
    msg_id: str
    claimed_at_ms: int
    lease_ttl_s: int | None
    #: Set when the holder got the claim through a reassign (D3).
    assignee: dict[str, str] | None = None

    def by(self) -> dict[str, str]:
        """What ``already_claimed.by`` exposes, in wire key order."""
        return {
            "agent_id": self.agent_id,
            "owner": self.owner,
            "ts": self.ts,
            "msg_id": self.msg_id,
        }

    def expires_at_ms(self) -> int | None:
        if self.lease_ttl_s is None:
            return None
        return self.claimed_at_ms + self.lease_ttl_s * 1000

    def to_record(self) -> dict[str, Any]:
        """A JSON-able dict for events and snapshots (optional keys omitted)."""
        record: dict[str, Any] = {
            "agent_id": self.agent_id,
            "owner": self.owner,
            "ts": self.ts,
            "msg_id": self.msg_id,
            "claimed_at_ms": self.claimed_at_ms,
        }
        if self.lease_ttl_s is not None:
            record["lease_ttl_s"] = self.lease_ttl_s
        if self.assignee is not None:
            record["assignee"] = dict(self.assignee)
        return record

    @classmethod
    def from_record(cls, record: Mapping[str, Any]) -> ClaimEntry:
        assignee = record.get("assignee")
        return cls(
            agent_id=record["agent_id"],
            owner=record["owner"],
            ts=record["ts"],
            msg_id=record["msg_id"],
            claimed_at_ms=int(record["claimed_at_ms"]),
            lease_ttl_s=_ttl(record.get("lease_ttl_s")),
            assignee=dict(assignee) if assignee is not None else None,
        )


def is_live(entry: ClaimEntry, now_ms: int) -> bool:
    """Not expired: the ``>=`` boundary is Caucus's; a backwards clock never expires."""
    expires = entry.expires_at_ms()
    if expires is None or now_ms < entry.claimed_at_ms:
        return True
    return now_ms < expires


@dataclass(frozen=True)
class Decision:
    """What to do with a claim command; ``holder`` is the live entry it met."""

    kind: DecisionKind
    holder: ClaimEntry | None = None
    #: An entry existed but had expired; the server journals that lapse itself.
    lapsed: bool = False


def _split(entry: ClaimEntry | None, now_ms: int) -> tuple[ClaimEntry | None, bool]:
    """(live entry or None, whether a stale entry lapsed)."""
    if entry is None:
        return None, False
    if is_live(entry, now_ms):
        return entry, False
    return None, True


def decide_claim(
    entry: ClaimEntry | None, caller_owner: str, heartbeat: bool, now_ms: int
) -> Decision:
    """First write wins; only a heartbeat from the holder's owner renews."""
    live, lapsed = _split(entry, now_ms)
    if live is None:
        return Decision("grant", lapsed=lapsed)
    if heartbeat is True and live.owner == caller_owner:
        return Decision("renew", holder=live)
    return Decision("already_claimed", holder=live)


def decide_reassign(entry: ClaimEntry | None, caller_owner: str, now_ms: int) -> Decision:
    """The holder's owner may hand over; a lapsed claim confers no privilege (fresh grant)."""
    live, lapsed = _split(entry, now_ms)
    if live is not None and live.owner != caller_owner:
        return Decision("already_claimed", holder=live)
    return Decision("grant", holder=live, lapsed=lapsed)


def decide_done(entry: ClaimEntry | None, caller_owner: str, now_ms: int) -> Decision:
    """Only the live holder's owner resolves; ``grant`` means delete the entry."""
    live, lapsed = _split(entry, now_ms)
    if live is None:
        return Decision("not_held", lapsed=lapsed)
    if live.owner != caller_owner:
        return Decision("already_claimed", holder=live)
    return Decision("grant", holder=live)


def _ttl(value: Any) -> int | None:
    """JSON ``5.0`` is a valid lease (JS ``Number.isInteger``); store it as ``5``."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"lease_ttl must be a number, got {value!r}")
    if isinstance(value, float) and not value.is_integer():
        raise ValueError(f"lease_ttl must be an integer, got {value!r}")
    return int(value)


def entry_for_grant(msg: Mapping[str, Any], now_ms: int) -> ClaimEntry:
    """Ledger record for a granted or renewed claim (a renew replaces the TTL)."""
    return ClaimEntry(
        agent_id=msg["agent_id"],
        owner=msg["owner"],
        ts=msg["ts"],
        msg_id=msg["msg_id"],
        claimed_at_ms=now_ms,
        lease_ttl_s=_ttl(msg.get("lease_ttl")),
    )


def entry_for_reassign(
    msg: Mapping[str, Any], assignee: Mapping[str, str], now_ms: int
) -> ClaimEntry:
    """The assignee holds the claim, stamped with the caller's message ts/msg_id."""
    who = {"agent_id": assignee["agent_id"], "owner": assignee["owner"]}
    return ClaimEntry(
        agent_id=who["agent_id"],
        owner=who["owner"],
        ts=msg["ts"],
        msg_id=msg["msg_id"],
        claimed_at_ms=now_ms,
        lease_ttl_s=_ttl(msg.get("lease_ttl")),
        assignee=who,
    )


class ClaimLedger:
    """Mutable ``key -> ClaimEntry`` map, part of a channel's folded state.

    Overwriting a key keeps its original position (like a JS ``Map``), so
    :meth:`live_entries` lists targets in first-claimed order.
    """

    __slots__ = ("_entries",)

    def __init__(self, entries: Mapping[str, ClaimEntry] | None = None) -> None:
        self._entries: dict[str, ClaimEntry] = dict(entries or {})

    def get(self, key: str) -> ClaimEntry | None:
        return self._entries.get(key)

    def put(self, key: str, entry: ClaimEntry) -> None:
        self._entries[key] = entry

    def delete(self, key: str) -> ClaimEntry | None:
        """Remove and return the entry (``None`` if absent; not an error)."""
        return self._entries.pop(key, None)

    def items(self) -> list[tuple[str, ClaimEntry]]:
        """Every entry, live or lapsed, in first-claimed order."""
        return list(self._entries.items())

    def live_entries(self, now_ms: int) -> list[tuple[str, ClaimEntry]]:
        return [(k, e) for k, e in self._entries.items() if is_live(e, now_ms)]

    def copy(self) -> ClaimLedger:
        # Entries are frozen, so a shallow copy is a full snapshot.
        return ClaimLedger(self._entries)

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, key: object) -> bool:
        return key in self._entries

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, ClaimLedger):
            return NotImplemented
        return self._entries == other._entries

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"ClaimLedger({self._entries!r})"
