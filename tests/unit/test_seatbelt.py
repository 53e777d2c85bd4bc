"""Seatbelt rules (contracts/channels.md §3 "Seatbelts"), driven by a fake clock."""

from __future__ import annotations

import dataclasses

import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from parley.domain.seatbelt import Seatbelt
from parley.errors import DuplicatePost, RateLimited

W = 60_000
DUP_MSG = (
    "Duplicate of your previous post \u2014 identical content was just posted. Vary the "
    "content or stop repeating; do not re-post the same message."
)


def fill(sb: Seatbelt, n: int, *, channel: str = "c", agent: str = "a", at: int = 0) -> None:
    for i in range(n):
        sb.admit_post(channel, agent, f"note {channel} {i}", at)


# -- defaults and knobs -----------------------------------------------------------


def test_defaults_match_caucus() -> None:
    sb = Seatbelt()
    assert (sb.max_posts, sb.global_max_posts, sb.max_creates) == (30, 120, 10)
    assert (sb.window_ms, sb.max_tracked) == (60_000, 4096)


def test_global_defaults_to_four_times_channel_cap() -> None:
    assert Seatbelt(max_posts_per_minute=7).global_max_posts == 28
    assert Seatbelt(max_posts_per_minute=7, global_max_posts_per_minute=9).global_max_posts == 9


@pytest.mark.parametrize(
    "kwargs",
    [
        {"max_posts_per_minute": 0},
        {"global_max_posts_per_minute": -1},
        {"max_creates_per_minute": 0},
        {"window_ms": 0},
        {"max_tracked": 0},
        {"max_posts_per_minute": True},
        {"max_posts_per_minute": 1.5},
    ],
)
def test_bad_knobs_rejected(kwargs: dict) -> None:
    with pytest.raises(ValueError):
        Seatbelt(**kwargs)


# -- channel rate -------------------------------------------------------------------


def test_channel_cap_trips_at_max_with_exact_message() -> None:
    sb = Seatbelt()
    fill(sb, 30)
    with pytest.raises(RateLimited) as ei:
        sb.admit_post("c", "a", "fresh", 1)
    err = ei.value
    assert err.code == "rate_limited" and err.status == 429
    assert err.message == (
        "Rate limit exceeded: at most 30 posts/min per agent. "
        "Wait ~60s before posting again, or batch your updates."
    )
    assert err.retry_after == pytest.approx(59.999)
    assert err.retry_after_header() == "60"


def test_message_matches_caucus_client_regexes() -> None:
    sb = Seatbelt(max_posts_per_minute=3)
    fill(sb, 3)
    with pytest.raises(RateLimited) as ei:
        sb.check_rate("c", "a", 0)
    msg = ei.value.message
    assert re.search(r"at most (\d+) [a-z ]+/min", msg).group(1) == "3"
    assert re.search(r"Wait ~(\d+)s", msg).group(1) == "60"
    assert "across all channels" not in msg and "channel creates/min" not in msg


def test_below_cap_admits() -> None:
    sb = Seatbelt()
    fill(sb, 29)
    sb.admit_post("c", "a", "30th", 0)


@pytest.mark.parametrize(
    ("now", "seconds", "retry_after"),
    [
        (0, 60, 60.0),
        (1, 60, 59.999),
        (58_999, 2, 1.001),
        (59_000, 1, 1.0),
        (59_001, 1, 0.999),
        (59_999, 1, 0.001),
    ],
)
def test_retry_after_rounds_up(now: int, seconds: int, retry_after: float) -> None:
    sb = Seatbelt(max_posts_per_minute=2, max_creates_per_minute=3)
    fill(sb, 2, at=0)
    with pytest.raises(RateLimited) as ei:
        sb.check_rate("c", "a", now)
    assert f"Wait ~{seconds}s " in ei.value.message
    assert ei.value.retry_after == pytest.approx(retry_after)


def test_retry_after_uses_oldest_in_window_stamp() -> None:
    sb = Seatbelt(max_posts_per_minute=2, max_creates_per_minute=3)
    sb.admit_post("c", "a", "x", 10_000)
    sb.admit_post("c", "a", "y", 30_000)
    with pytest.raises(RateLimited) as ei:
        sb.check_rate("c", "a", 40_000)
    assert ei.value.retry_after == pytest.approx(30.0)  # 10_000 + 60_000 - 40_000
    # Once the oldest slides out, the next hint is measured from the next one.
    sb.admit_post("c", "a", "z", 70_000)
    with pytest.raises(RateLimited) as ei:
        sb.check_rate("c", "a", 71_000)
    assert ei.value.retry_after == pytest.approx(19.0)  # 30_000 + 60_000 - 71_000


def test_stamp_exactly_window_old_is_pruned() -> None:
    sb = Seatbelt(max_posts_per_minute=1)
    sb.admit_post("c", "a", "x", 1_000)
    with pytest.raises(RateLimited):
        sb.check_rate("c", "a", 60_999)
    sb.check_rate("c", "a", 61_000)  # 1_000 <= 61_000 - 60_000: dropped
    sb.admit_post("c", "a", "y", 61_000)


def test_channel_budgets_are_independent_per_channel_and_agent() -> None:
    sb = Seatbelt(max_posts_per_minute=2, max_creates_per_minute=3)
    fill(sb, 2, channel="c", agent="a")
    sb.admit_post("other", "a", "x", 0)
    sb.admit_post("c", "b", "x", 0)
    with pytest.raises(RateLimited):
        sb.admit_post("c", "a", "x", 0)


def test_channel_key_uses_nul_separator() -> None:
    # "a\0b" + "c" and "a" + "b\0c" collide in Caucus too; the key is documented.
    sb = Seatbelt(max_posts_per_minute=1)
    sb.admit_post("a\0b", "c", "x", 0)
    with pytest.raises(RateLimited):
        sb.check_rate("a", "b\0c", 0)


def test_check_rate_records_nothing() -> None:
    sb = Seatbelt(max_posts_per_minute=1)
    for _ in range(5):
        sb.check_rate("c", "a", 0)
    sb.admit_post("c", "a", "x", 0)
    assert sb.statistics().channel_windows == 1


# -- global rate -------------------------------------------------------------------


def test_global_cap_across_channels_with_exact_message() -> None:
    sb = Seatbelt(max_posts_per_minute=30)
    for ch in range(4):
        fill(sb, 30, channel=f"c{ch}", at=1_000)
    with pytest.raises(RateLimited) as ei:
        sb.admit_post("c9", "a", "fresh", 6_000)
    assert ei.value.message == (
        "Rate limit exceeded: at most 120 posts/min per agent across all channels. "
        "Wait ~55s before posting again, or batch your updates."
    )
    assert ei.value.retry_after == pytest.approx(55.0)
    # Another agent is unaffected.
    sb.admit_post("c9", "b", "fresh", 6_000)


def test_channel_scope_reported_before_global() -> None:
    sb = Seatbelt(max_posts_per_minute=2, global_max_posts_per_minute=2)
    fill(sb, 2)
    with pytest.raises(RateLimited) as ei:
        sb.check_rate("c", "a", 0)
    assert "across all channels" not in ei.value.message
    with pytest.raises(RateLimited) as ei:
        sb.check_rate("d", "a", 0)
    assert "across all channels" in ei.value.message


# -- dup -------------------------------------------------------------------------------


def test_immediate_duplicate_rejected_with_exact_message() -> None:
    sb = Seatbelt()
    sb.admit_post("c", "a", "note hi", 0)
    with pytest.raises(DuplicatePost) as ei:
        sb.admit_post("c", "a", "note hi", 1)
    assert ei.value.message == DUP_MSG
    assert ei.value.code == "duplicate_post" and ei.value.status == 409


def test_aba_allowed() -> None:
    sb = Seatbelt()
    sb.admit_post("c", "a", "note A", 0)
    sb.admit_post("c", "a", "note B", 1)
    sb.admit_post("c", "a", "note A", 2)


def test_different_type_same_body_allowed() -> None:
    sb = Seatbelt()
    sb.admit_post("c", "a", "note same", 0)
    sb.admit_post("c", "a", "finding same", 1)


def test_dup_is_per_channel_and_agent() -> None:
    sb = Seatbelt()
    sb.admit_post("c", "a", "note x", 0)
    sb.admit_post("d", "a", "note x", 0)
    sb.admit_post("c", "b", "note x", 0)


def test_rejected_post_does_not_become_baseline() -> None:
    sb = Seatbelt()
    sb.admit_post("c", "a", "note A", 0)
    with pytest.raises(DuplicatePost):
        sb.admit_post("c", "a", "note A", 1)
    # Baseline is still A (not replaced), so A is still a dup, B is fine.
    with pytest.raises(DuplicatePost):
        sb.check_dup("c", "a", "note A")
    sb.admit_post("c", "a", "note B", 2)


def test_rate_limited_post_does_not_become_baseline_or_charge() -> None:
    sb = Seatbelt(max_posts_per_minute=1)
    sb.admit_post("c", "a", "note A", 0)
    with pytest.raises(RateLimited):
        sb.admit_post("c", "a", "note B", 1)
    # B was not recorded: after the window B is accepted, A is not (same baseline).
    sb.check_dup("c", "a", "note B")
    with pytest.raises(DuplicatePost):
        sb.check_dup("c", "a", "note A")


def test_duplicate_rejection_charges_no_rate() -> None:
    sb = Seatbelt(max_posts_per_minute=2, max_creates_per_minute=3)
    sb.admit_post("c", "a", "note A", 0)
    for i in range(5):
        with pytest.raises(DuplicatePost):
            sb.admit_post("c", "a", "note A", i)
    sb.admit_post("c", "a", "note B", 10)


def test_rate_checked_before_dup() -> None:
    sb = Seatbelt(max_posts_per_minute=1)
    sb.admit_post("c", "a", "note A", 0)
    with pytest.raises(RateLimited):
        sb.admit_post("c", "a", "note A", 1)


def test_global_rate_checked_before_dup() -> None:
    sb = Seatbelt(max_posts_per_minute=5, global_max_posts_per_minute=1)
    sb.admit_post("c", "a", "note A", 0)
    with pytest.raises(RateLimited) as ei:
        sb.admit_post("c", "a", "note A", 1)
    assert "across all channels" in ei.value.message


def test_global_rejection_records_nothing_in_channel_window() -> None:
    sb = Seatbelt(max_posts_per_minute=2, global_max_posts_per_minute=2)
    fill(sb, 2, channel="c")
    with pytest.raises(RateLimited):
        sb.admit_post("d", "a", "note x", 0)
    # "d" got no stamp and no baseline.
    assert sb.statistics().channel_windows == 1


# -- record_rate (claims) ------------------------------------------------------------


def test_record_rate_charges_both_windows() -> None:
    sb = Seatbelt(max_posts_per_minute=2, global_max_posts_per_minute=3)
    sb.record_rate("c", "a", 0)
    sb.record_rate("c", "a", 0)
    with pytest.raises(RateLimited):
        sb.check_rate("c", "a", 0)
    sb.record_rate("d", "a", 0)
    with pytest.raises(RateLimited) as ei:
        sb.check_rate("e", "a", 0)
    assert "across all channels" in ei.value.message


def test_record_rate_leaves_dup_baseline_alone() -> None:
    sb = Seatbelt()
    sb.admit_post("c", "a", "note A", 0)
    sb.record_rate("c", "a", 1)  # a claim in between
    with pytest.raises(DuplicatePost):
        sb.admit_post("c", "a", "note A", 2)
    sb2 = Seatbelt()
    sb2.record_rate("c", "a", 0)  # claims never set a baseline
    assert sb2.statistics().dup_baselines == 0
    sb2.admit_post("c", "a", "claim x", 1)
    assert sb2.statistics().dup_baselines == 1


# -- creates -------------------------------------------------------------------------


def test_create_throttle_checks_and_records_in_one_step() -> None:
    sb = Seatbelt()
    for i in range(10):
        sb.admit_create("alice", i * 1000)
    with pytest.raises(RateLimited) as ei:
        sb.admit_create("alice", 10_000)
    assert ei.value.message == (
        "Rate limit exceeded: at most 10 channel creates/min per owner. "
        "Wait ~50s before creating another channel."
    )
    assert ei.value.retry_after == pytest.approx(50.0)
    assert re.search(r"at most (\d+) [a-z ]+/min", ei.value.message).group(1) == "10"
    assert "channel creates/min" in ei.value.message
    sb.admit_create("bob", 10_000)
    sb.admit_create("alice", 60_000)  # the 0 ms stamp slid out


def test_rejected_create_uses_no_budget() -> None:
    sb = Seatbelt(max_creates_per_minute=1)
    sb.admit_create("alice", 0)
    for t in range(1, 50):
        with pytest.raises(RateLimited):
            sb.admit_create("alice", t * 1000)
    sb.admit_create("alice", 60_000)


def test_creates_and_posts_are_separate_budgets() -> None:
    sb = Seatbelt(max_posts_per_minute=1, max_creates_per_minute=1)
    sb.admit_create("a", 0)
    sb.admit_post("c", "a", "note x", 0)


# -- eviction ------------------------------------------------------------------------


def test_identical_repost_accepted_after_quiet_window() -> None:
    sb = Seatbelt()
    sb.admit_post("c", "a", "note A", 0)
    with pytest.raises(DuplicatePost):
        sb.admit_post("c", "a", "note A", 59_999)
    sb.admit_post("c", "a", "note A", 60_000)  # its own admit drives the sweep


def test_sweep_runs_at_most_once_per_window() -> None:
    sb = Seatbelt()
    sb.admit_post("x", "other", "note o", 0)  # anchors the sweep clock at 0
    sb.admit_post("c", "a", "note A", 10_000)
    sb.admit_post("x", "other", "note p", 60_000)  # sweep at 60 s: A only 50 s idle
    with pytest.raises(DuplicatePost):
        sb.admit_post("c", "a", "note A", 100_000)  # 90 s quiet, but no sweep since 60 s
    assert sb.statistics().sweeps == 1
    sb.admit_post("c", "a", "note A", 120_000)  # second sweep forgets A
    assert sb.statistics().sweeps == 2


def test_sweep_keeps_entries_with_in_window_posts() -> None:
    sb = Seatbelt(max_posts_per_minute=2, max_creates_per_minute=3)
    sb.admit_post("c", "a", "note A", 0)
    sb.admit_post("c", "a", "note B", 30_000)
    sb.admit_post("x", "b", "note z", 60_000)  # sweep: a has a post at 30 s
    stats = sb.statistics()
    assert stats.channel_windows == 2 and stats.swept_entries == 0
    with pytest.raises(DuplicatePost):
        sb.check_dup("c", "a", "note B")


def test_sweep_is_driven_only_by_mutators() -> None:
    sb = Seatbelt()
    sb.admit_post("c", "a", "note A", 0)
    sb.check_rate("c", "a", 500_000)
    with pytest.raises(DuplicatePost):
        sb.check_dup("c", "a", "note A")
    assert sb.statistics().channel_windows == 1


def test_sweep_covers_all_maps() -> None:
    sb = Seatbelt()
    sb.admit_post("c", "a", "note A", 0)
    sb.admit_create("alice", 0)
    sb.record_rate("d", "b", 0)
    sb.admit_create("bob", 70_000)
    stats = sb.statistics()
    assert stats.channel_windows == 0
    assert stats.global_windows == 0
    assert stats.create_windows == 1
    assert stats.swept_entries == 5


def test_lru_cap_evicts_least_recently_used() -> None:
    sb = Seatbelt(max_tracked=2, max_posts_per_minute=1)
    sb.admit_post("c", "a", "note A", 0)
    sb.admit_post("c", "b", "note B", 0)
    sb.admit_post("c", "c", "note C", 0)  # evicts (c, a) and global a
    stats = sb.statistics()
    assert stats.channel_windows == 2 and stats.global_windows == 2
    assert stats.lru_evictions == 2
    # a was forgotten: rate budget and dup baseline are both fresh.
    sb.admit_post("c", "a", "note A", 1)
    # b is now the least recent and was evicted in turn.
    sb.admit_post("c", "b", "note B", 1)


def test_lru_recency_is_refreshed_by_recording() -> None:
    sb = Seatbelt(max_tracked=2)
    sb.admit_post("c", "a", "note A1", 0)
    sb.admit_post("c", "b", "note B1", 0)
    sb.admit_post("c", "a", "note A2", 1)  # a is now most recent
    sb.admit_post("c", "c", "note C1", 2)  # evicts b, not a
    with pytest.raises(DuplicatePost):
        sb.check_dup("c", "a", "note A2")
    sb.check_dup("c", "b", "note B1")


def test_lru_cap_applies_to_create_map() -> None:
    sb = Seatbelt(max_tracked=3, max_creates_per_minute=1)
    for owner in "pqrs":
        sb.admit_create(owner, 0)
    assert sb.statistics().create_windows == 3
    sb.admit_create("p", 0)  # p was evicted, so its budget is fresh


# -- backwards clock -------------------------------------------------------------------


def test_backwards_clock_does_not_crash_and_future_stamps_count() -> None:
    sb = Seatbelt(max_posts_per_minute=2, max_creates_per_minute=3)
    sb.admit_post("c", "a", "note A", 100_000)
    sb.admit_post("c", "a", "note B", 5_000)  # clock jumped back
    with pytest.raises(RateLimited) as ei:
        sb.admit_post("c", "a", "note C", 4_000)
    # oldest = 5_000 -> 5_000 + 60_000 - 4_000
    assert ei.value.retry_after == pytest.approx(61.0)
    sb.admit_create("o", 10**9)
    sb.admit_create("o", 0)
    sb.record_rate("c", "z", -5)
    assert sb.statistics().channel_windows >= 1


def test_backwards_clock_reanchors_sweep() -> None:
    sb = Seatbelt()
    sb.admit_post("c", "a", "note A", 1_000_000)
    sb.admit_post("c", "b", "note B", 0)  # clock back: re-anchor, no sweep
    assert sb.statistics().sweeps == 0
    sb.admit_post("c", "b", "note C", 60_000)  # one window after re-anchor
    assert sb.statistics().sweeps == 1
    # a's stamp is in the "future": not idle, kept with its baseline.
    with pytest.raises(DuplicatePost):
        sb.check_dup("c", "a", "note A")


# -- properties ----------------------------------------------------------------------


def _admitted(sb: Seatbelt, events: list[tuple[str, int]]) -> list[tuple[str, int]]:
    out = []
    for i, (channel, t) in enumerate(events):
        try:
            sb.admit_post(channel, "a", f"note {i}", t)
        except RateLimited:
            continue
        out.append((channel, t))
    return out


def _max_in_any_window(stamps: list[int]) -> int:
    # Worst window (t - W, t] ending at an admitted stamp.
    return max((sum(1 for s in stamps if t - W < s <= t) for t in stamps), default=0)


@settings(max_examples=200, deadline=None)
@given(
    gaps=st.lists(st.integers(min_value=0, max_value=9_000), max_size=150),
    channels=st.lists(st.sampled_from(["c", "d", "e"]), min_size=150, max_size=150),
    cap=st.integers(min_value=1, max_value=8),
    global_cap=st.integers(min_value=1, max_value=20),
)
def test_admitted_posts_never_exceed_caps_in_any_window(
    gaps: list[int], channels: list[str], cap: int, global_cap: int
) -> None:
    t, events = 0, []
    for gap, channel in zip(gaps, channels):
        t += gap
        events.append((channel, t))
    sb = Seatbelt(max_posts_per_minute=cap, global_max_posts_per_minute=global_cap)
    admitted = _admitted(sb, events)
    assert _max_in_any_window([t for _, t in admitted]) <= global_cap
    for channel in "cde":
        assert _max_in_any_window([t for c, t in admitted if c == channel]) <= cap


@settings(max_examples=200, deadline=None)
@given(
    gaps=st.lists(st.integers(min_value=0, max_value=5_000), max_size=120),
    cap=st.integers(min_value=1, max_value=6),
)
def test_rejections_happen_only_when_full_and_hint_is_exact(gaps: list[int], cap: int) -> None:
    sb = Seatbelt(max_posts_per_minute=cap, global_max_posts_per_minute=10**6)
    t, admitted = 0, []
    for i, gap in enumerate(gaps):
        t += gap
        in_window = [s for s in admitted if s > t - W]
        try:
            sb.admit_post("c", "a", f"note {i}", t)
        except RateLimited as err:
            assert len(in_window) >= cap
            assert err.retry_after == pytest.approx((min(in_window) + W - t) / 1000)
            assert 0 < err.retry_after <= W / 1000
        else:
            assert len(in_window) < cap
            admitted.append(t)


@settings(max_examples=100, deadline=None)
@given(
    ts=st.lists(st.integers(min_value=-(10**7), max_value=10**7), max_size=60),
    keys=st.lists(st.sampled_from(["note A", "note B", "claim"]), min_size=60, max_size=60),
)
def test_arbitrary_clock_never_crashes(ts: list[int], keys: list[str]) -> None:
    sb = Seatbelt(max_posts_per_minute=3, max_tracked=2)
    for t, key in zip(ts, keys):
        try:
            if key == "claim":
                sb.check_rate("c", "a", t)
                sb.record_rate("c", "a", t)
            else:
                sb.admit_post("c", "a", key, t)
            sb.admit_create("o", t)
        except (RateLimited, DuplicatePost) as err:
            if isinstance(err, RateLimited):
                assert err.retry_after is not None and err.retry_after > 0
    stats = sb.statistics()
    assert all(v >= 0 for v in dataclasses.astuple(stats))
    assert stats.channel_windows <= 2 and stats.create_windows <= 2


# -- decide now, charge after the commit (ADR-0037) -----------------------------------


def test_a_sheet_never_charged_leaves_the_windows_as_they_were() -> None:
    """A post decided but never committed must not be a duplicate baseline nor spend budget."""
    sb = Seatbelt(max_posts_per_minute=2, max_creates_per_minute=3)
    sb.admit_post("c", "a", "first", 0)
    with sb.pending() as sheet:
        sheet.admit_post("c", "a", "second", 1)
    # the retry of "second" is neither a duplicate nor over the budget of 2...
    sb.admit_post("c", "a", "second", 2)
    # ...while "first" was committed and still counts: a third post is refused.
    with pytest.raises(RateLimited):
        sb.admit_post("c", "a", "third", 3)


def test_a_dropped_sheet_keeps_the_previous_duplicate_baseline() -> None:
    sb = Seatbelt()
    sb.admit_post("c", "a", "same", 0)
    with sb.pending() as sheet:
        sheet.admit_post("c", "a", "other", 1)
    with pytest.raises(DuplicatePost):
        sb.admit_post("c", "a", "same", 2)


def test_a_sheet_refuses_the_surplus_of_its_own_batch() -> None:
    """N posts in one batch over the cap: the ones past it are refused before the commit."""
    sb = Seatbelt(max_posts_per_minute=3)
    sb.admit_post("c", "a", "note 0", 0)
    refused = 0
    with sb.pending() as sheet:
        for i in range(1, 6):
            try:
                sheet.admit_post("c", "a", f"note {i}", i)
            except RateLimited:
                refused += 1
        assert refused == 3
        assert sb.statistics().pending_sheets == 1
        sb.charge(sheet)
    assert refused == 3 and sb.statistics().pending_sheets == 0
    with pytest.raises(RateLimited):
        sb.admit_post("c", "a", "note 9", 20)  # three charged posts fill the window


def test_the_last_post_of_the_sheet_is_the_duplicate_baseline() -> None:
    sb = Seatbelt()
    sb.admit_post("c", "a", "recorded", 0)
    with sb.pending() as sheet:
        sheet.admit_post("c", "a", "same", 1)
        with pytest.raises(DuplicatePost):
            sheet.admit_post("c", "a", "same", 2)
        sheet.admit_post("c", "a", "recorded", 3)  # the recorded baseline was replaced


def test_an_open_sheet_counts_for_other_deciders() -> None:
    """Two channel actors deciding one agent's global window while both commits are under way."""
    sb = Seatbelt(max_posts_per_minute=10, global_max_posts_per_minute=2)
    with sb.pending() as first, sb.pending() as second:
        first.admit_post("c1", "a", "x", 0)
        second.admit_post("c2", "a", "y", 1)
        with pytest.raises(RateLimited, match="across all channels"):
            second.admit_post("c3", "a", "z", 2)
    sb.admit_post("c3", "a", "z", 3)  # neither sheet was charged: the budget is whole


def test_charging_records_the_sheet_once() -> None:
    sb = Seatbelt(max_posts_per_minute=2)
    with sb.pending() as sheet:
        sheet.admit_post("c", "a", "kept", 0)
        sb.charge(sheet)
        sb.charge(sheet)  # a second charge finds an empty sheet
    with pytest.raises(DuplicatePost):
        sb.admit_post("c", "a", "kept", 1)
    sb.admit_post("c", "a", "next", 2)  # one stamp of two was spent, not two


@given(
    ts=st.lists(st.integers(min_value=0, max_value=300_000), max_size=80),
    cap=st.integers(min_value=1, max_value=5),
)
def test_any_clock_order_matches_the_reference_window(ts: list[int], cap: int) -> None:
    """Stamps are kept sorted for speed; decisions and hints equal a plain filter of the log.

    The reference is the straightforward sliding window: on each check, the
    stamps ``> now - window`` count; on each admit the log is pruned the same
    way and ``now`` appended, whatever order the clock goes in.
    """
    sb = Seatbelt(max_posts_per_minute=cap, global_max_posts_per_minute=10**6)
    log: list[int] = []
    for i, t in enumerate(ts):
        live = [s for s in log if s > t - W]
        expected = None if len(live) < cap else min(live) + W - t
        try:
            sb.admit_post("c", "a", f"note {i}", t)
        except RateLimited as err:
            assert expected is not None
            assert err.retry_after == pytest.approx(expected / 1000)
        else:
            assert expected is None
            log = live + [t]


# -- windows shared through the database (ADR-0025) ------------------------------


def test_charges_group_the_logged_stamps_per_window_with_its_cap() -> None:
    sb = Seatbelt(max_posts_per_minute=5, global_max_posts_per_minute=7, max_creates_per_minute=2)
    with sb.pending() as sheet:
        sheet.admit_post("c", "a1", "note x", 1_000)
        sheet.record_rate("c", "a1", 1_001)
        sheet.admit_create("owner", 1_002)
    assert sorted(sheet.charges()) == [
        ("channel", "c\0a1", 5, (1_000, 1_001)),
        ("create", "owner", 2, (1_002,)),
        ("global", "a1", 7, (1_000, 1_001)),
    ]


def test_adopting_the_shared_stamps_refuses_with_the_usual_message_and_hint() -> None:
    sb = Seatbelt(max_posts_per_minute=2, max_creates_per_minute=3)
    sb.adopt("channel", "c\0a1", [10_000, 5_000])  # two posts another process made
    with pytest.raises(RateLimited) as caught:
        sb.admit_post("c", "a1", "note y", 20_000)
    assert str(caught.value).startswith("Rate limit exceeded: at most 2 posts/min per agent. Wait ~45s")
    sb.admit_post("c", "a1", "note y", 65_001)  # the older stamp left the window
    sb.adopt("create", "o", [1, 2, 3])
    sb.adopt("global", "a1", [])
    with pytest.raises(RateLimited):
        sb.admit_create("o", 4)
