"""The hook's block rendering, as pure function calls (contracts/mcp.md §6; ADR-0016)."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from parley.hook.render import BLOCK_CAP, clean_body, message_line, render_block

HEADER = "=== PARLEY CHANNEL (new since last turn) ==="


def item(cursor: int, **message) -> dict:
    return {"channel": "c", "cursor": cursor, "message": {"type": "note", "owner": "bob", "body": "", **message}}


def test_message_lines_as_the_reference_renders_them():
    assert message_line({"type": "finding", "owner": "bob", "body": "cache hit rate fell to 3% at 14:01", "status": "fyi"}, 200) == (
        "[parley] finding  A\u00b7bob  cache hit rate fell to 3% at 14:01  [fyi]"
    )
    assert message_line({"type": "claim", "owner": "bob", "body": "looking at the cache", "target": "cache stampede"}, 200) == (
        '[parley] claim    A\u00b7bob  "cache stampede"  looking at the cache'
    )
    assert message_line({"type": "steer", "owner": "b\x1bob", "body": "", "to": ["x\x07"]}, 200) == (
        "[parley] steer    A\u00b7bob  \u25b8 human directive:  @x"
    )
    assert message_line({"type": "question", "owner": "bob", "body": "a\n\t b\x00c \u2028 ", "artifact": "u"}, 200) == (
        "[parley] question A\u00b7bob  a bc  \u2197artifact"
    )


def test_a_body_over_the_budget_is_cut_with_the_dropped_count():
    assert clean_body("y" * 60, 50) == "y" * 50 + "\u2026 +truncated, 10 chars \u2014 parley_read_channel"
    assert clean_body("y" * 50, 50) == "y" * 50


def test_an_uncapped_block_has_no_overflow_line():
    rendered = render_block([item(7, body="one"), item(8, body="two")], waiting=5)
    assert rendered.count == 2 and rendered.cursor == 8
    assert rendered.block.split("\n") == [
        HEADER,
        "[parley] delivered \u2014 cursor 8 \u00b7 quote between the === markers to verify",
        "[parley] note     A\u00b7bob  one",
        "[parley] note     A\u00b7bob  two",
        "=== END PARLEY ===",
    ]


def test_a_capped_block_keeps_the_oldest_and_counts_the_rest():
    items = [item(i, body=f"{i:03d} " + "z" * 300) for i in range(1, 61)]
    rendered = render_block(items, 400, waiting=40)
    lines = rendered.block.split("\n")
    assert len(rendered.block) <= BLOCK_CAP
    assert rendered.cursor == rendered.count and lines[3].endswith("001 " + "z" * 300)
    assert lines[2] == f"[+{60 - rendered.count + 40} newer messages \u2014 next turn, or parley_read_channel]"
    one_more = render_block(items[: rendered.count + 1], 400)
    assert one_more.count == rendered.count  # the page is as full as the cap allows


def test_a_single_message_over_the_cap_is_still_rendered():
    rendered = render_block([item(1, body="q" * 8000), item(2, body="next")], 8000)
    assert rendered.count == 1 and rendered.cursor == 1 and len(rendered.block) > BLOCK_CAP


@settings(max_examples=60, deadline=None)
@given(st.lists(st.text(max_size=400), min_size=1, max_size=80), st.integers(1, 500))
def test_every_page_fits_and_pages_cover_every_message_once(bodies, budget):
    items = [item(i, body=b) for i, b in enumerate(bodies, 1)]
    seen = 0
    while seen < len(items):
        rendered = render_block(items[seen:], budget)
        assert rendered.count >= 1
        assert len(rendered.block) <= BLOCK_CAP or rendered.count == 1
        assert rendered.cursor == items[seen + rendered.count - 1]["cursor"]
        seen += rendered.count
    assert seen == len(items)
