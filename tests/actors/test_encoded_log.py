"""The encoded-message cache behind ``/read`` and the live tails (ADR-0041)."""

from __future__ import annotations

import orjson
from hypothesis import given, settings
from hypothesis import strategies as st

from parley.actors.encoded_log import EncodedBudget, EncodedLog
from parley.domain import channel as rules
from parley.domain.message import sanitize_message_fields
from parley.http.channels import page_body

text = st.text(st.characters(blacklist_categories=("Cs",)), max_size=12)
messages = st.lists(
    st.fixed_dictionaries(
        {"type": st.just("note"), "body": text, "agent_id": text, "owner": text},
        optional={"to": st.lists(text, max_size=3), "n": st.integers(-(2**53), 2**53), "ok": st.booleans()},
    ),
    max_size=30,
)


def state_with(items: list[dict]) -> rules.ChannelState:
    state = rules.ChannelState("c", descriptor={"channel": "c"})
    state.messages.extend(items)
    return state


@settings(max_examples=60, deadline=None)
@given(messages, st.integers(0, 30), st.integers(1, 40))
def test_a_page_from_cached_bytes_is_byte_identical_to_encoding_it(items, cursor, limit):
    state = state_with(items)
    cursor = min(cursor, state.head)
    log = EncodedLog(state.messages, EncodedBudget())
    expected = orjson.dumps(rules.read_page(state, {"cursor": cursor, "limit": limit}, rules.Limits()))
    stop = min(state.head, cursor + limit)
    assert page_body(log.raw(cursor, stop), stop) == expected
    assert page_body(log.raw(cursor, stop), stop) == expected  # the second time from the cache
    assert log.clean(cursor, stop) == [orjson.dumps(sanitize_message_fields(m)) for m in items[cursor:stop]]


def test_clean_bytes_are_the_raw_object_unless_sanitising_changes_something():
    log = EncodedLog([{"body": "plain"}, {"body": "bell\x07"}], EncodedBudget())
    raw, clean = log.raw(0, 2), log.clean(0, 2)
    assert clean[0] is raw[0]
    assert raw[1] == b'{"body":"bell\\u0007"}' and clean[1] == b'{"body":"bell"}'


def test_only_the_prefix_asked_for_is_encoded():
    items = [{"body": str(i)} for i in range(10)]
    log = EncodedLog(items, EncodedBudget())
    log.raw(2, 4)
    assert log.cached == 4
    items.append({"body": "uncommitted"})  # above the committed head: never cached unless asked
    assert log.raw(0, 10)[-1] == b'{"body":"9"}' and log.cached == 10


def test_the_budget_evicts_the_least_recently_read_logs():
    one = [{"body": "x" * 90}] * 10  # ~100 bytes each
    budget = EncodedBudget(cap_bytes=2_500)
    a, b, c = (EncodedLog(list(one), budget) for _ in range(3))
    a.raw(0, 10)
    b.raw(0, 10)
    a.raw(0, 1)  # a read more recently than b
    c.raw(0, 10)
    assert budget.used_bytes <= budget.cap_bytes
    assert (a.cached, b.cached, c.cached) == (10, 0, 10)
    assert budget.evictions == 1
    assert b.raw(0, 2) == [orjson.dumps(one[0])] * 2  # rebuilt on its next read


def test_a_log_larger_than_the_whole_budget_is_served_uncached():
    items = [{"body": "y" * 200} for _ in range(20)]
    budget = EncodedBudget(cap_bytes=1_000)
    log = EncodedLog(items, budget)
    assert log.raw(0, 20) == [orjson.dumps(m) for m in items]
    assert log.cached == 0 and budget.used_bytes == 0
    assert log.clean(5, 7) == [orjson.dumps(m) for m in items[5:7]]


def test_a_zero_budget_caches_nothing():
    budget = EncodedBudget(cap_bytes=0)
    log = EncodedLog([{"body": "z"}], budget)
    assert log.raw(0, 1) == [b'{"body":"z"}'] and log.cached == 0


def test_release_gives_the_bytes_back():
    budget = EncodedBudget()
    log = EncodedLog([{"body": "r"}] * 5, budget)
    log.raw(0, 5)
    assert budget.used_bytes > 0
    budget.release(log)
    assert budget.used_bytes == 0 and log.cached == 0


@settings(max_examples=40, deadline=None)
@given(messages, st.integers(0, 30), st.integers(1, 40))
def test_a_kept_page_is_the_page_built_from_the_bytes(items, cursor, limit):
    """ADR-0058: ``page`` gives what ``page_body`` builds, and the second time the same object."""
    log = EncodedLog(items, EncodedBudget())
    cursor = min(cursor, len(items))
    stop = min(len(items), cursor + limit)
    first = log.page(cursor, stop, page_body)
    assert first == page_body([orjson.dumps(m) for m in items[cursor:stop]], stop)
    assert log.page(cursor, stop, page_body) is first


def test_kept_pages_are_charged_to_the_budget_and_dropped_with_the_log():
    from parley.actors import encoded_log

    items = [{"body": "x" * 90} for _ in range(200)]
    budget = EncodedBudget()
    log = EncodedLog(items, budget)
    log.raw(0, 200)
    messages_only = budget.used_bytes
    pages = [log.page(start, start + 2, page_body) for start in range(0, encoded_log.PAGES_KEPT + 10)]
    kept = pages[-encoded_log.PAGES_KEPT :]  # the oldest ten were let go
    assert budget.used_bytes == messages_only + sum(len(p) for p in kept)
    assert log.page(0, 2, page_body) is not pages[0]  # rebuilt
    budget.release(log)
    assert budget.used_bytes == 0


def test_a_log_served_uncached_keeps_no_page():
    items = [{"body": "x" * 90} for _ in range(20)]
    budget = EncodedBudget(cap_bytes=500)  # less than the log
    log = EncodedLog(items, budget)
    first = log.page(0, 20, page_body)
    assert log.page(0, 20, page_body) == first and log.page(0, 20, page_body) is not first
    assert budget.used_bytes <= 500
