"""The hook's block: pure rendering of delivered messages (contracts/mcp.md §6).

No I/O here: :func:`render_block` turns the messages one turn delivered into
the text injected into the model's context, byte for byte as the reference
hook frames it, and says how many of them it rendered. The 8000-character cap
keeps the **oldest** messages that fit; the caller carries the rest to the next
turn (§8.4, ADR-0016), so nothing is skipped for good.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ..domain.text import _JS_WHITESPACE, js_trim, strip_control

#: The whole block (frame, audit line, newlines included), in code points.
BLOCK_CAP = 8000
#: ``renderBudgetChars`` when the channel descriptor is unavailable.
DEFAULT_BUDGET = 200

_WHITESPACE_RUN = re.compile(f"[{re.escape(_JS_WHITESPACE)}]+")

HEADER = "=== PARLEY CHANNEL (new since last turn) ==="
FOOTER = "=== END PARLEY ==="


@dataclass(frozen=True)
class Rendered:
    """The block and how many of the given messages it holds (a prefix, oldest first)."""

    block: str
    count: int
    cursor: int


def audit_line(cursor: int) -> str:
    return f"[parley] delivered \u2014 cursor {cursor} \u00b7 quote between the === markers to verify"


def overflow_line(held_back: int) -> str:
    """Shown when capped: the newer messages that come next turn (ADR-0016)."""
    noun = "message" if held_back == 1 else "messages"
    return f"[+{held_back} newer {noun} \u2014 next turn, or parley_read_channel]"


def clean_body(body: str, budget: int) -> str:
    """Whitespace runs to one space, controls dropped, trimmed, cut at ``budget``."""
    text = js_trim(strip_control(_WHITESPACE_RUN.sub(" ", body)))
    if len(text) <= budget:
        return text
    dropped = len(text) - budget
    return f"{text[:budget]}\u2026 +truncated, {dropped} chars \u2014 parley_read_channel"


def message_line(message: Mapping[str, Any], budget: int) -> str:
    kind = str(message.get("type") or "")
    owner = strip_control(str(message.get("owner") or ""))
    parts: list[str] = []
    target = message.get("target")
    if kind == "claim" and isinstance(target, str) and target:
        parts.append(f'"{strip_control(target)}"')
    body = clean_body(str(message.get("body") or ""), budget)
    if kind == "steer":
        body = f"\u25b8 human directive: {body}".rstrip()
    if body:
        parts.append(body)
    status = message.get("status")
    if isinstance(status, str) and status:
        parts.append(f"[{status}]")
    to = message.get("to")
    if isinstance(to, list) and to:
        parts.append(" ".join(f"@{strip_control(str(name))}" for name in to))
    if message.get("artifact"):
        parts.append("\u2197artifact")
    return f"[parley] {kind:<8} A\u00b7{owner}  " + "  ".join(parts)


def render_block(
    delivered: Sequence[Mapping[str, Any]],
    budget: int = DEFAULT_BUDGET,
    *,
    waiting: int = 0,
    cap: int = BLOCK_CAP,
) -> Rendered:
    """Render the oldest prefix of ``delivered`` (``{"cursor", "message"}`` items) that fits ``cap``.

    At least one message is rendered, even when its line alone exceeds the
    cap (otherwise the session could never move past it). ``waiting`` is how
    many more messages are known to wait beyond ``delivered`` (from the
    channel head); it only feeds the overflow count.
    """
    if not delivered:
        raise ValueError("nothing to render")
    lines = [message_line(item["message"], budget) for item in delivered]
    total = len(delivered)
    # Length of the first n lines, each with its newline: sizes[n].
    sizes = [0]
    for line in lines:
        sizes.append(sizes[-1] + len(line) + 1)
    for count in range(total, 0, -1):
        frame = [HEADER, audit_line(int(delivered[count - 1]["cursor"]))]
        if count < total:
            frame.append(overflow_line(total - count + waiting))
        size = sum(len(part) + 1 for part in frame) + sizes[count] + len(FOOTER)
        if size <= cap or count == 1:
            block = "\n".join([*frame, *lines[:count], FOOTER])
            return Rendered(block, count, int(delivered[count - 1]["cursor"]))
    raise AssertionError("unreachable")


__all__ = ["BLOCK_CAP", "DEFAULT_BUDGET", "Rendered", "audit_line", "clean_body", "message_line", "render_block"]
