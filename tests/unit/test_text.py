"""JavaScript-compatible text helpers (contract §2.9, §2.11).

Expected values were checked against Node 20 (``String.prototype.trim``,
``JSON.stringify``, ``.length``, ``Number.isInteger``).
"""

from __future__ import annotations

import json
import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from parley.domain.text import (
    MAX_ERROR_FRAGMENT_CHARS,
    fragment,
    has_control,
    has_control_except_ws,
    is_js_integer,
    is_safe_integer,
    js_quote,
    js_trim,
    strip_control,
    strip_control_keep_ws,
    utf16_len,
)

CONTROL = [chr(c) for c in [*range(0x00, 0x20), 0x7F, *range(0x80, 0xA0)]]
# Characters where JS and Python disagree, or that sit at the edges of the set.
TRICKY = ["\t", "\n", "\r", "\x0b", "\x1b", "\x1c", "\x1f", "\x7f", "\x85", "\x9b", "\x9f",
          "\xa0", "\u180e", "\u200b", "\u2028", "\u3000", "\ufeff", "é", "😀", " ", "a"]
texts = st.text(st.sampled_from(TRICKY) | st.characters(), max_size=300)


# ---------------------------------------------------------------- utf16_len


@pytest.mark.parametrize(
    ("s", "expected"),
    [("", 0), ("abc", 3), ("é", 1), ("😀", 2), ("a😀b", 4), ("\ud800", 1), ("𝄞" * 3, 6)],
)
def test_utf16_len_counts_code_units(s: str, expected: int) -> None:
    assert utf16_len(s) == expected


@given(texts)
def test_utf16_len_matches_encoding(s: str) -> None:
    assert utf16_len(s) == len(s.encode("utf-16-le", "surrogatepass")) // 2
    assert utf16_len(s) == len(s) + sum(1 for c in s if ord(c) > 0xFFFF)


# ---------------------------------------------------------------- js_trim


@pytest.mark.parametrize(
    ("s", "expected"),
    [
        ("  a b  ", "a b"),
        ("\ufeff a \x1c", "a \x1c"),  # JS strips BOM, keeps \x1c; Python would do the opposite
        ("\x1c\x1d\x1e\x1fx", "\x1c\x1d\x1e\x1fx"),
        ("\x85x\x85", "\x85x\x85"),  # NEL is not JS whitespace
        ("\u180ex", "\u180ex"),  # Mongolian vowel separator left Zs in Unicode 6.3
        ("\u2028\u3000x\xa0\u2029", "x"),
        ("\t\n\x0b\x0c\r x", "x"),
        ("\u200bx\u200b", "\u200bx\u200b"),  # zero-width space is not whitespace
        ("\u2000\u200a\u202f\u205f\u1680", ""),
        ("", ""),
    ],
)
def test_js_trim(s: str, expected: str) -> None:
    assert js_trim(s) == expected


@given(texts)
def test_js_trim_is_idempotent_and_a_substring(s: str) -> None:
    t = js_trim(s)
    assert js_trim(t) == t
    assert t in s


# ---------------------------------------------------------------- control set


def test_control_set_is_c0_del_c1() -> None:
    for c in CONTROL:
        assert has_control(c)
        assert strip_control(f"a{c}b") == "ab"
    for c in [" ", "~", "\xa0", "é", "\u2028", "\ufeff", "😀"]:
        assert not has_control(c)
        assert strip_control(c) == c


def test_keep_ws_variant_keeps_only_tab_and_newline() -> None:
    assert strip_control_keep_ws("a\tb\nc\rd\x1be\x7f\x9b") == "a\tb\ncde"
    assert not has_control_except_ws("line 1\n\tline 2")
    assert has_control_except_ws("crlf\r\n")
    assert has_control("tab\t")


@given(texts)
def test_predicates_are_derived_from_strips(s: str) -> None:
    assert has_control(s) == (strip_control(s) != s)
    assert has_control_except_ws(s) == (strip_control_keep_ws(s) != s)
    assert not has_control(strip_control(s))
    assert not has_control_except_ws(strip_control_keep_ws(s))


# ---------------------------------------------------------------- fragment


def test_fragment_short_clean_is_identity() -> None:
    assert fragment("hello") == "hello"
    assert fragment("x" * 120) == "x" * 120


def test_fragment_cuts_at_120_and_marks_with_ellipsis() -> None:
    assert MAX_ERROR_FRAGMENT_CHARS == 120
    assert fragment("x" * 121) == "x" * 120 + "…"
    assert fragment("y" * 5000) == "y" * 120 + "…"


def test_fragment_strips_before_cutting() -> None:
    assert fragment("\x1b" * 500) == ""
    assert fragment("\x1b[2J" + "x" * 118) == "[2J" + "x" * 117 + "…"
    assert fragment("a\x00" * 120) == "a" * 120


def test_fragment_counts_utf16_units_and_never_splits_a_pair() -> None:
    assert fragment("😀" * 60) == "😀" * 60
    assert fragment("😀" * 61) == "😀" * 60 + "…"
    # The pair straddles unit 120: JS would leave a lone high surrogate; we drop the pair.
    assert fragment("x" * 119 + "😀") == "x" * 119 + "…"


@given(texts, st.integers(min_value=0, max_value=200))
def test_fragment_properties(s: str, n: int) -> None:
    out = fragment(s * (n // 10 + 1))
    assert not has_control(out)
    assert utf16_len(out) <= MAX_ERROR_FRAGMENT_CHARS + 1
    clean = strip_control(s * (n // 10 + 1))
    if utf16_len(clean) <= MAX_ERROR_FRAGMENT_CHARS:
        assert out == clean
    else:
        assert out.endswith("…") and clean.startswith(out[:-1])
        assert utf16_len(out[:-1]) >= MAX_ERROR_FRAGMENT_CHARS - 1


# ---------------------------------------------------------------- js_quote


@pytest.mark.parametrize(
    ("s", "expected"),
    [
        ("war-room", '"war-room"'),
        ('q"b\\', '"q\\"b\\\\"'),
        ("\b\f\n\r\t", '"\\b\\f\\n\\r\\t"'),
        ("\x01\x1f", '"\\u0001\\u001f"'),
        ("\x7f\x9b\u2028é😀", '"\x7f\x9b\u2028é😀"'),  # not escaped by JSON.stringify
        ("\ud800", '"\\ud800"'),  # lone surrogates are escaped (ES2019), lowercase
        ("\udfff", '"\\udfff"'),
        ("", '""'),
    ],
)
def test_js_quote_matches_json_stringify(s: str, expected: str) -> None:
    assert js_quote(s) == expected


@given(st.text(st.characters(exclude_categories=["Cs"]), max_size=50))
def test_js_quote_round_trips_and_agrees_with_json_dumps(s: str) -> None:
    assert json.loads(js_quote(s)) == s
    assert js_quote(s) == json.dumps(s, ensure_ascii=False)


# ---------------------------------------------------------------- numbers


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (1, True), (0, True), (-5, True), (1.0, True), (-0.0, True), (2**60, True),
        (1e300, True), (1.5, False), (True, False), (False, False), (None, False),
        ("1", False), ([1], False), (math.inf, False), (-math.inf, False),
        (math.nan, False), (10**400, False),  # JS parses this as Infinity
    ],
)
def test_is_js_integer(value: object, expected: bool) -> None:
    assert is_js_integer(value) is expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [(2**53 - 1, True), (-(2**53 - 1), True), (2**53, False), (9007199254740991.0, True),
     (9007199254740992.0, False), (1.5, False), (True, False), (0, True)],
)
def test_is_safe_integer(value: object, expected: bool) -> None:
    assert is_safe_integer(value) is expected
