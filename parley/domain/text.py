"""JavaScript-compatible string and number helpers.

Caucus is written in TypeScript, and several of its rules lean on JavaScript
semantics that Python does not share (contract §2.11): string lengths are
UTF-16 code units, ``String.prototype.trim`` strips a different set than
``str.strip``, ``Number.isInteger(1.0)`` is true and ``true`` is not a number.
Every rule that must agree with Caucus character for character goes through
these helpers, so the differences live in exactly one place.

The control-character set (contract §2.9) is C0 ``\\x00-\\x1f``, DEL ``\\x7f``
and C1 ``\\x80-\\x9f``, counted in code points. The predicates are derived
from the same patterns as the strip functions so the write layer (reject) and
the read layer (strip) cannot drift apart.
"""

from __future__ import annotations

import math
import re
from typing import Any

__all__ = [
    "MAX_ERROR_FRAGMENT_CHARS",
    "MAX_SAFE_INTEGER",
    "fragment",
    "has_control",
    "has_control_except_ws",
    "is_js_integer",
    "is_safe_integer",
    "js_quote",
    "js_trim",
    "strip_control",
    "strip_control_keep_ws",
    "utf16_len",
]

#: Longest caller fragment echoed into an error message (CAU-88).
MAX_ERROR_FRAGMENT_CHARS = 120

#: JavaScript ``Number.MAX_SAFE_INTEGER``.
MAX_SAFE_INTEGER = 2**53 - 1

_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f]")
_CONTROL_EXCEPT_WS = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f]")

# ECMAScript WhiteSpace (TAB, VT, FF, SP, NBSP, ZWNBSP/BOM and every Zs
# character) plus LineTerminator (LF, CR, LS, PS). Unlike ``str.strip()`` it
# keeps \x1c-\x1f and NEL \x85, and it removes U+FEFF. U+180E left Zs in
# Unicode 6.3, and V8 follows that.
_JS_WHITESPACE = (
    "\t\n\x0b\x0c\r \xa0\u1680"
    "\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007\u2008\u2009\u200a"
    "\u2028\u2029\u202f\u205f\u3000\ufeff"
)

# What JSON.stringify escapes inside a string: the quote, the backslash, C0
# and (since ES2019, "well-formed JSON.stringify") lone surrogates. A Python
# str holds a well-formed pair as one code point, so any surrogate is lone.
_JSON_ESCAPE = re.compile('["\\\\\x00-\x1f\ud800-\udfff]')
_JSON_SHORT = {
    '"': '\\"',
    "\\": "\\\\",
    "\b": "\\b",
    "\f": "\\f",
    "\n": "\\n",
    "\r": "\\r",
    "\t": "\\t",
}


def utf16_len(s: str) -> int:
    """Length in UTF-16 code units, i.e. JavaScript ``s.length``.

    Every cap in the contract is counted this way: an emoji counts 2.
    ``surrogatepass`` keeps a lone surrogate (possible from a JSON ``\\ud800``
    escape) countable as the single unit JavaScript sees.
    """
    return len(s.encode("utf-16-le", "surrogatepass")) // 2


def js_trim(s: str) -> str:
    """``String.prototype.trim``: used for dup keys and claim targets."""
    return s.strip(_JS_WHITESPACE)


def strip_control(s: str) -> str:
    """Remove every C0, DEL and C1 character (``stripControlChars``)."""
    return _CONTROL.sub("", s)


def strip_control_keep_ws(s: str) -> str:
    """Like :func:`strip_control` but keep ``\\t`` and ``\\n`` (message bodies)."""
    return _CONTROL_EXCEPT_WS.sub("", s)


def has_control(s: str) -> bool:
    """True iff :func:`strip_control` would change ``s``."""
    return _CONTROL.search(s) is not None


def has_control_except_ws(s: str) -> bool:
    """True iff :func:`strip_control_keep_ws` would change ``s``."""
    return _CONTROL_EXCEPT_WS.search(s) is not None


def fragment(s: str, max_len: int = MAX_ERROR_FRAGMENT_CHARS) -> str:
    """Make a caller-supplied string safe to echo in an error (``sanitizeErrorFragment``).

    Control characters are stripped first, so the cap counts visible
    characters; then the text is cut to ``max_len`` UTF-16 units and ``…`` is
    appended only when something was cut. JavaScript's ``slice`` can split a
    surrogate pair and leave a lone high surrogate; we drop the whole pair
    instead (one unit shorter), because a lone surrogate cannot be encoded as
    UTF-8 on the wire.
    """
    clean = strip_control(s)
    if utf16_len(clean) <= max_len:
        return clean
    units = 0
    for index, char in enumerate(clean):
        units += 2 if ord(char) > 0xFFFF else 1
        if units > max_len:
            return clean[:index] + "\u2026"
    return clean  # unreachable: the length check above returned already


def _json_escape(match: re.Match[str]) -> str:
    char = match.group()
    short = _JSON_SHORT.get(char)
    return short if short is not None else f"\\u{ord(char):04x}"


def js_quote(s: str) -> str:
    """``JSON.stringify(s)`` for a string, byte for byte.

    ``json.dumps(ensure_ascii=False)`` comes close but leaves lone surrogates
    raw; JavaScript escapes them (lowercase hex, like every ``\\u`` escape).
    DEL, C1, U+2028 and U+2029 stay literal in both.
    """
    return '"' + _JSON_ESCAPE.sub(_json_escape, s) + '"'


def is_js_integer(value: Any) -> bool:
    """``Number.isInteger(value)`` for a value decoded from JSON.

    ``True``/``False`` are not numbers in JavaScript. A Python ``int`` too
    large for a double is ``Infinity`` once JavaScript parses it, which is not
    an integer; ``1.0`` is.
    """
    if isinstance(value, bool):
        return False
    if isinstance(value, int):
        try:
            float(value)
        except OverflowError:
            return False
        return True
    if isinstance(value, float):
        return math.isfinite(value) and value.is_integer()
    return False


def is_safe_integer(value: Any) -> bool:
    """``Number.isSafeInteger(value)``: an integer with ``|value| <= 2**53 - 1``."""
    return is_js_integer(value) and abs(value) <= MAX_SAFE_INTEGER
