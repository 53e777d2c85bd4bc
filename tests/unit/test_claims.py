"""Claim ledger and lease maths (contracts/channels.md §2.6, §3 claim/reassign/done)."""

from __future__ import annotations

from dataclasses import FrozenInstanceError
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from parley.domain.claims import (
    ClaimEntry,
    ClaimLedger,
    Decision,
    decide_claim,
    decide_done,
    decide_reassign,
    entry_for_grant,
    entry_for_reassign,
    is_live,
)


def entry(
    *,
    agent_id: str = "a1",
    owner: str = "alice",
    claimed_at_ms: int = 1_000,
    lease_ttl_s: int | None = 10,
    ts: str = "2026-06-10T14:02:00.000Z#000000000001",
    msg_id: str = "01HZX0000000000000000000AA",
) -> ClaimEntry:
    return ClaimEntry(agent_id, owner, ts, msg_id, claimed_at_ms, lease_ttl_s)


def msg(**over: Any) -> dict[str, Any]:
    base = {
        "v": 1,
        "type": "claim",
        "agent_id": "a2",
        "owner": "bob",
        "msg_id": "01HZX0000000000000000000BB",
        "body": "taking it",
        "target": "src/x.py",
        "ts": "2026-06-10T14:03:00.000Z#000000000002",
    }
    base.update(over)
    return base


# -- ClaimEntry ---------------------------------------------------------------------


def test_by_exposes_exactly_four_fields_in_order() -> None:
    e = ClaimEntry("a1", "alice", "T", "M", 5, 10, assignee={"agent_id": "a1", "owner": "alice"})
    by = e.by()
    assert by == {"agent_id": "a1", "owner": "alice", "ts": "T", "msg_id": "M"}
    assert list(by) == ["agent_id", "owner", "ts", "msg_id"]


def test_entry_is_frozen() -> None:
    with pytest.raises(FrozenInstanceError):
        entry().owner = "mallory"  # type: ignore[misc]


def test_expires_at() -> None:
    assert entry(claimed_at_ms=1_000, lease_ttl_s=10).expires_at_ms() == 11_000
    assert entry(lease_ttl_s=None).expires_at_ms() is None


def test_record_round_trip() -> None:
    for e in (
        entry(),
        entry(lease_ttl_s=None),
        entry_for_reassign(msg(lease_ttl=3), {"agent_id": "c", "owner": "carol"}, 7),
    ):
        assert ClaimEntry.from_record(e.to_record()) == e
    assert "lease_ttl_s" not in entry(lease_ttl_s=None).to_record()
    assert "assignee" not in entry().to_record()


# -- is_live -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("now", "live"),
    [
        (1_000, True),
        (10_999, True),
        (11_000, False),  # the >= boundary: exactly claimed_at + ttl*1000 is expired
        (11_001, False),
        (10**12, False),
        (999, True),  # backwards clock: never expired
        (-(10**9), True),
    ],
)
def test_is_live_boundary(now: int, live: bool) -> None:
    assert is_live(entry(claimed_at_ms=1_000, lease_ttl_s=10), now) is live


def test_no_ttl_never_expires() -> None:
    assert is_live(entry(lease_ttl_s=None), 10**15)


def test_backwards_clock_not_expired_even_with_zero_ttl() -> None:
    e = entry(claimed_at_ms=1_000, lease_ttl_s=0)
    assert is_live(e, 999)
    assert not is_live(e, 1_000)


# -- decide_claim ---------------------------------------------------------------------


def test_claim_absent_is_grant() -> None:
    assert decide_claim(None, "bob", False, 0) == Decision("grant", holder=None, lapsed=False)
    assert decide_claim(None, "bob", True, 0) == Decision("grant")


def test_claim_lapsed_is_grant_and_reports_lapse() -> None:
    e = entry(claimed_at_ms=1_000, lease_ttl_s=10)
    d = decide_claim(e, "bob", False, 11_000)
    assert d == Decision("grant", holder=None, lapsed=True)
    # Even the old holder's heartbeat after lapse is a fresh grant, not a renew.
    assert decide_claim(e, "alice", True, 11_000) == Decision("grant", lapsed=True)


def test_claim_live_other_owner_already_claimed() -> None:
    e = entry()
    for hb in (False, True):
        d = decide_claim(e, "bob", hb, 10_999)
        assert d.kind == "already_claimed" and d.holder is e and not d.lapsed


def test_holder_reclaim_without_heartbeat_is_already_claimed() -> None:
    e = entry()
    d = decide_claim(e, "alice", False, 2_000)
    assert d.kind == "already_claimed" and d.holder is e


def test_heartbeat_same_owner_renews() -> None:
    e = entry()
    d = decide_claim(e, "alice", True, 2_000)
    assert d == Decision("renew", holder=e, lapsed=False)


def test_heartbeat_same_owner_different_agent_renews() -> None:
    e = entry(agent_id="session-1", owner="alice")
    assert decide_claim(e, "alice", True, 2_000).kind == "renew"


def test_heartbeat_must_be_true_not_truthy() -> None:
    e = entry()
    assert decide_claim(e, "alice", 1, 2_000).kind == "already_claimed"  # type: ignore[arg-type]


def test_claim_on_never_expiring_lease() -> None:
    e = entry(lease_ttl_s=None)
    assert decide_claim(e, "bob", False, 10**15).kind == "already_claimed"
    assert decide_claim(e, "alice", True, 10**15).kind == "renew"


def test_claim_backwards_clock_keeps_holder() -> None:
    e = entry(claimed_at_ms=50_000, lease_ttl_s=1)
    assert decide_claim(e, "bob", False, 0).kind == "already_claimed"


# -- decide_reassign -------------------------------------------------------------------


def test_reassign_live_other_owner_already_claimed() -> None:
    e = entry()
    assert decide_reassign(e, "bob", 2_000) == Decision("already_claimed", holder=e)


def test_reassign_live_same_owner_grant() -> None:
    e = entry()
    d = decide_reassign(e, "alice", 2_000)
    assert d.kind == "grant" and d.holder is e and not d.lapsed


def test_reassign_absent_or_lapsed_is_fresh_grant() -> None:
    assert decide_reassign(None, "bob", 0) == Decision("grant")
    e = entry(claimed_at_ms=1_000, lease_ttl_s=10)
    assert decide_reassign(e, "bob", 11_000) == Decision("grant", lapsed=True)
    assert decide_reassign(e, "alice", 11_000) == Decision("grant", lapsed=True)


# -- decide_done -----------------------------------------------------------------------


def test_done_live_same_owner_grant() -> None:
    e = entry(agent_id="other-session")
    assert decide_done(e, "alice", 2_000) == Decision("grant", holder=e)


def test_done_live_other_owner_already_claimed() -> None:
    e = entry()
    assert decide_done(e, "bob", 2_000) == Decision("already_claimed", holder=e)


def test_done_absent_or_lapsed_not_held() -> None:
    assert decide_done(None, "alice", 0) == Decision("not_held", lapsed=False)
    e = entry(claimed_at_ms=1_000, lease_ttl_s=10)
    assert decide_done(e, "alice", 11_000) == Decision("not_held", lapsed=True)
    assert decide_done(e, "bob", 11_000) == Decision("not_held", lapsed=True)


def test_decisions_do_not_mutate() -> None:
    e = entry()
    before = e.to_record()
    for f in (
        lambda: decide_claim(e, "alice", True, 2_000),
        lambda: decide_reassign(e, "alice", 2_000),
        lambda: decide_done(e, "alice", 2_000),
    ):
        f()
    assert e.to_record() == before


def test_decision_is_frozen() -> None:
    with pytest.raises(FrozenInstanceError):
        Decision("grant").kind = "renew"  # type: ignore[misc]


# -- constructors ------------------------------------------------------------------------


def test_entry_for_grant() -> None:
    e = entry_for_grant(msg(lease_ttl=30), 5_000)
    assert e == ClaimEntry(
        "a2", "bob", "2026-06-10T14:03:00.000Z#000000000002", "01HZX0000000000000000000BB",
        5_000, 30,
    )
    assert e.assignee is None


def test_entry_for_grant_float_ttl_stored_as_int() -> None:
    e = entry_for_grant(msg(lease_ttl=5.0), 0)
    assert e.lease_ttl_s == 5 and type(e.lease_ttl_s) is int
    assert e.expires_at_ms() == 5_000


def test_entry_for_grant_absent_ttl_never_expires() -> None:
    e = entry_for_grant(msg(), 0)
    assert e.lease_ttl_s is None and is_live(e, 10**15)


@pytest.mark.parametrize("bad", [5.5, True, "5", float("inf"), float("nan")])
def test_bad_ttl_rejected(bad: Any) -> None:
    with pytest.raises(ValueError):
        entry_for_grant(msg(lease_ttl=bad), 0)


def test_renew_replaces_ttl() -> None:
    old = entry_for_grant(msg(owner="alice", lease_ttl=10), 0)
    assert decide_claim(old, "alice", True, 9_000).kind == "renew"
    renewed = entry_for_grant(msg(owner="alice", agent_id="a9", lease_ttl=2, heartbeat=True), 9_000)
    assert (renewed.claimed_at_ms, renewed.lease_ttl_s, renewed.agent_id) == (9_000, 2, "a9")
    assert not is_live(renewed, 11_000)
    # A renew without lease_ttl makes the claim never expire.
    forever = entry_for_grant(msg(owner="alice", heartbeat=True), 9_000)
    assert forever.lease_ttl_s is None and is_live(forever, 10**15)


def test_entry_for_reassign_holder_is_assignee_with_callers_stamp() -> None:
    m = msg(agent_id="a1", owner="alice", lease_ttl=60.0)
    assignee = {"agent_id": "c1", "owner": "carol", "extra": "ignored"}
    e = entry_for_reassign(m, assignee, 3_000)
    assert (e.agent_id, e.owner) == ("c1", "carol")
    assert (e.ts, e.msg_id) == (m["ts"], m["msg_id"])
    assert (e.claimed_at_ms, e.lease_ttl_s) == (3_000, 60)
    assert e.assignee == {"agent_id": "c1", "owner": "carol"}
    assert e.by() == {"agent_id": "c1", "owner": "carol", "ts": m["ts"], "msg_id": m["msg_id"]}
    assignee["owner"] = "mutated"
    assert e.assignee == {"agent_id": "c1", "owner": "carol"}


def test_after_reassign_only_assignee_owner_controls() -> None:
    e = entry_for_reassign(msg(owner="alice"), {"agent_id": "c1", "owner": "carol"}, 0)
    assert decide_done(e, "alice", 1).kind == "already_claimed"
    assert decide_done(e, "carol", 1).kind == "grant"
    assert decide_claim(e, "carol", True, 1).kind == "renew"


# -- ClaimLedger -------------------------------------------------------------------------


def test_ledger_basic_operations() -> None:
    led = ClaimLedger()
    assert len(led) == 0 and led.get("k") is None and "k" not in led
    e = entry()
    led.put("k", e)
    assert led.get("k") is e and len(led) == 1 and "k" in led
    assert led.delete("k") is e
    assert led.delete("k") is None
    assert len(led) == 0


def test_live_entries_in_insertion_order_and_filtered() -> None:
    led = ClaimLedger()
    led.put("b", entry(lease_ttl_s=None))
    led.put("a", entry(claimed_at_ms=0, lease_ttl_s=1))
    led.put("c", entry(claimed_at_ms=0, lease_ttl_s=100))
    assert [k for k, _ in led.live_entries(500)] == ["b", "a", "c"]
    assert [k for k, _ in led.live_entries(1_000)] == ["b", "c"]
    # Overwriting keeps the original position (JS Map semantics).
    led.put("b", entry(owner="zed", lease_ttl_s=None))
    assert [k for k, _ in led.live_entries(1_000)] == ["b", "c"]
    # Expired entries stay stored until a command on their key looks at them.
    assert len(led) == 3


def test_ledger_copy_is_independent() -> None:
    led = ClaimLedger()
    led.put("k", entry())
    snap = led.copy()
    assert snap == led
    led.put("j", entry())
    led.delete("k")
    assert snap.get("k") == entry() and snap.get("j") is None
    assert snap != led


# -- properties ---------------------------------------------------------------------------

OWNERS = ["alice", "bob", "carol"]
op_strategy = st.tuples(
    st.sampled_from(["claim", "reassign", "done"]),
    st.sampled_from(["k1", "k2"]),
    st.sampled_from(OWNERS),
    st.booleans(),  # heartbeat
    st.one_of(st.none(), st.integers(min_value=1, max_value=5)),  # lease_ttl
    st.integers(min_value=-2_000, max_value=4_000),  # clock step (may go backwards)
    st.sampled_from(OWNERS),  # assignee owner
)


def apply(led: ClaimLedger, op: tuple, i: int, now: int) -> Decision:
    """The write path the channel actor runs, in miniature."""
    kind, key, owner, hb, ttl, _, assignee_owner = op
    m = msg(agent_id=f"{owner}-agent", owner=owner, msg_id=f"M{i}", ts=f"T{i}")
    if ttl is not None:
        m["lease_ttl"] = ttl
    current = led.get(key)
    if kind == "claim":
        d = decide_claim(current, owner, hb, now)
        if d.kind in ("grant", "renew"):
            led.put(key, entry_for_grant(m, now))
    elif kind == "reassign":
        d = decide_reassign(current, owner, now)
        if d.kind == "grant":
            who = {"agent_id": f"{assignee_owner}-agent", "owner": assignee_owner}
            led.put(key, entry_for_reassign(m, who, now))
    else:
        d = decide_done(current, owner, now)
        if d.kind == "grant":
            led.delete(key)
    return d


@settings(max_examples=300, deadline=None)
@given(ops=st.lists(op_strategy, max_size=60))
def test_ledger_never_has_two_live_holders(ops: list[tuple]) -> None:
    led = ClaimLedger()
    now = 0
    for i, op in enumerate(ops):
        now += op[5]
        key, owner = op[1], op[2]
        before = led.get(key)
        live_before = before if before is not None and is_live(before, now) else None
        d = apply(led, op, i, now)
        after = led.get(key)

        # A live holder of another owner always blocks, and is reported unchanged.
        if live_before is not None and live_before.owner != owner:
            assert d.kind == "already_claimed" and d.holder == live_before
            assert after is before
        # Outcomes that change the ledger only ever replace a lapsed/absent entry
        # or one held by the caller's own owner.
        if after is not before:
            assert live_before is None or live_before.owner == owner
        # lapsed is reported exactly when a stale entry was met.
        assert d.lapsed == (before is not None and live_before is None)
        if d.kind == "already_claimed":
            assert live_before is not None and d.holder is live_before

        # At every instant each key has at most one live holder (who is the last grantee).
        live = led.live_entries(now)
        assert len({k for k, _ in live}) == len(live)
        for k, e in live:
            assert is_live(e, now) and led.get(k) is e


@settings(max_examples=200, deadline=None)
@given(
    claimed_at=st.integers(min_value=-(10**12), max_value=10**12),
    ttl=st.one_of(st.none(), st.integers(min_value=1, max_value=10**6)),
    now=st.integers(min_value=-(10**12), max_value=10**12),
)
def test_is_live_matches_formula(claimed_at: int, ttl: int | None, now: int) -> None:
    e = entry(claimed_at_ms=claimed_at, lease_ttl_s=ttl)
    expired = ttl is not None and now >= claimed_at + ttl * 1000
    assert is_live(e, now) is (not expired)
