"""The message schema (v1) and the backbone's boundary checks, as pure functions.

This is Caucus's ``validate`` plus the extra checks its in-memory backbone
runs around it (contract §2.1, §2.8-§2.10, §3). The issue strings are
load-bearing: Caucus clients parse them back with regexes and scenarios
assert on substrings, so every string here is copied from the contract, and
the order in which issues are collected follows Caucus's ``validate``.

Nothing here does I/O. Checks that need state (does the channel exist, is the
channel full, the seatbelts, the claim ledger) belong to the channel actor,
which calls these functions in the order §3 gives.
"""

from __future__ import annotations

import re
import unicodedata
from datetime import datetime, timedelta, timezone
from typing import Any, Literal

from parley.domain.text import (
    fragment,
    has_control,
    has_control_except_ws,
    is_js_integer,
    js_quote,
    js_trim,
    strip_control,
    strip_control_keep_ws,
    utf16_len,
)
from parley.errors import InvalidChannelName, InvalidCursor, InvalidMessage, InvalidRequest

__all__ = [
    "DEFAULT_RENDER_BUDGET_CHARS",
    "KNOWN_FIELDS",
    "MAX_BODY_CHARS",
    "MAX_FIELD_CHARS",
    "MAX_RECIPIENTS",
    "MAX_RENDER_BUDGET_CHARS",
    "MAX_REPORTED_ISSUES",
    "MESSAGE_TYPES",
    "SCHEMA_VERSION",
    "SLUG_RE",
    "STATUS_VALUES",
    "ULID_RE",
    "as_resolved",
    "check_append",
    "check_channel_name",
    "check_claim",
    "check_create_options",
    "check_read_args",
    "dup_key",
    "normalize_target",
    "sanitize_message_fields",
    "stamp",
    "validate",
    "validate_assignee",
    "with_version",
]

SCHEMA_VERSION = 1
MESSAGE_TYPES = ("finding", "claim", "status", "question", "answer", "note", "steer")
STATUS_VALUES = ("needs-response", "resolved", "fyi")

# Always used with ``fullmatch``: Python's ``$`` also matches before a final
# newline, JavaScript's does not.
ULID_RE = re.compile(r"^[0-9A-HJKMNP-TV-Z]{26}$")
SLUG_RE = re.compile(r"^[a-z0-9][a-z0-9-]{0,63}$")

MAX_BODY_CHARS = 16_000
MAX_FIELD_CHARS = 1_024
MAX_RECIPIENTS = 32
MAX_REPORTED_ISSUES = 10
DEFAULT_RENDER_BUDGET_CHARS = 200
#: ``INJECTED_DELTA_CAP_CHARS``: the upper bound of ``renderBudgetChars``.
MAX_RENDER_BUDGET_CHARS = 8_000

KNOWN_FIELDS = frozenset(
    {
        "v", "type", "agent_id", "owner", "msg_id", "body", "thread", "reply_to",
        "to", "status", "artifact", "target", "lease_ttl", "heartbeat", "ts",
    }
)
# Canonical array-index keys, which JavaScript's Object.keys lists first.
_ARRAY_INDEX_RE = re.compile(r"0|[1-9][0-9]{0,9}")
_CLAIM_ONLY = ("target", "lease_ttl", "heartbeat")
_SLUG_HINT = " (must match ^[a-z0-9][a-z0-9-]{0,63}$)"
_TYPE_CHECK = {
    "claim": 'claim() requires type "claim"',
    "reassign": 'reassignClaim() requires type "claim"',
    "done": 'markClaimDone() requires type "claim"',
}

_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)

ClaimOp = Literal["claim", "reassign", "done"]


# --------------------------------------------------------------------------
# schema validate (§2.1, §2.8)
# --------------------------------------------------------------------------


def _nonempty_str(value: Any) -> bool:
    """Caucus ``isNonEmptyString``: empty means length 0, whitespace counts."""
    return isinstance(value, str) and len(value) > 0


def _is_ulid(value: Any) -> bool:
    return isinstance(value, str) and ULID_RE.fullmatch(value) is not None


def _is_array_index(key: str) -> bool:
    return _ARRAY_INDEX_RE.fullmatch(key) is not None and int(key) < 2**32 - 1


def _js_key_order(obj: dict[str, Any]) -> list[str]:
    """``Object.keys`` order: array-index keys ascending first, then insertion order.

    Only visible in the order of ``unknown field`` issues, but it is free.
    """
    indices = sorted((k for k in obj if _is_array_index(k)), key=int)
    return indices + [k for k in obj if not _is_array_index(k)]


def _identity_issues(name: str, value: Any, max_chars: int) -> list[str]:
    """The three short-circuiting identity-field checks (``validateIdentityField``)."""
    if not _nonempty_str(value):
        return [f"{name} must be a non-empty string"]
    if has_control(value):
        return [f"{name} must not contain control characters"]
    length = utf16_len(value)
    if length > max_chars:
        return [f"{name} exceeds {max_chars} characters ({length})"]
    return []


def validate(
    msg: Any,
    *,
    max_field_chars: int = MAX_FIELD_CHARS,
    max_recipients: int = MAX_RECIPIENTS,
) -> list[str]:
    """Every schema issue of ``msg``, in Caucus's order (empty list = valid).

    A key that is present counts even when its value is ``None``: JSON
    ``null`` is not JavaScript ``undefined``. Order follows Caucus's
    ``validate.ts``: ``body`` is checked right after ``msg_id``, before the
    optional ``thread``/``reply_to``.
    """
    if not isinstance(msg, dict):
        return ["message must be a JSON object"]
    issues: list[str] = []

    unknown = [k for k in _js_key_order(msg) if k not in KNOWN_FIELDS]
    for key in unknown[:MAX_REPORTED_ISSUES]:
        issues.append(f'unknown field "{fragment(key)}"')
    if len(unknown) > MAX_REPORTED_ISSUES:
        issues.append(f"\u2026and {len(unknown) - MAX_REPORTED_ISSUES} more unknown fields")

    v = msg.get("v")
    if isinstance(v, bool) or not isinstance(v, (int, float)) or v != SCHEMA_VERSION:
        issues.append(f"v must be {SCHEMA_VERSION}")

    kind = msg.get("type")
    if not (isinstance(kind, str) and kind in MESSAGE_TYPES):
        issues.append("type must be one of " + ", ".join(MESSAGE_TYPES))

    issues += _identity_issues("agent_id", msg.get("agent_id"), max_field_chars)
    issues += _identity_issues("owner", msg.get("owner"), max_field_chars)

    if not _is_ulid(msg.get("msg_id")):
        issues.append("msg_id must be a ULID")

    body = msg.get("body")
    if not _nonempty_str(body):
        issues.append("body must be a non-empty string")
    elif has_control_except_ws(body):
        issues.append("body must not contain control characters (tab and newline are allowed)")

    for ref in ("thread", "reply_to"):
        if ref in msg and not _is_ulid(msg[ref]):
            issues.append(f"{ref} must be a ULID")

    if "to" in msg:
        to = msg["to"]
        if not isinstance(to, list) or not to or not all(_nonempty_str(e) for e in to):
            issues.append("to must be a non-empty array of non-empty strings")
        elif len(to) > max_recipients:
            issues.append(f"to[] has more than {max_recipients} recipients ({len(to)})")
        elif any(has_control(e) for e in to):
            issues.append("to entries must not contain control characters")

    if "status" in msg and not (isinstance(msg["status"], str) and msg["status"] in STATUS_VALUES):
        issues.append("status must be one of " + ", ".join(STATUS_VALUES))

    if "artifact" in msg:
        issues += _identity_issues("artifact", msg["artifact"], max_field_chars)

    if "ts" in msg and not _nonempty_str(msg["ts"]):
        issues.append("ts must be a non-empty string")

    if kind == "claim":
        target = msg.get("target")
        if not isinstance(target, str) or not js_trim(target):
            issues.append("claim requires a non-empty target")
        elif has_control(target):
            issues.append("target must not contain control characters")
        if "lease_ttl" in msg and not (is_js_integer(msg["lease_ttl"]) and msg["lease_ttl"] > 0):
            issues.append("lease_ttl must be a positive integer (seconds)")
        if "heartbeat" in msg and not isinstance(msg["heartbeat"], bool):
            issues.append("heartbeat must be a boolean")
    else:
        issues += [f"{key} is only valid on claim messages" for key in _CLAIM_ONLY if key in msg]
    return issues


def validate_assignee(obj: Any, *, max_field_chars: int = MAX_FIELD_CHARS) -> list[str]:
    """Issues for a reassign ``assignee`` (poster-asserted, validated like identity).

    A non-object reads as "both fields missing", as ``assignee?.agent_id``
    does in Caucus.
    """
    fields = obj if isinstance(obj, dict) else {}
    return _identity_issues(
        "assignee.agent_id", fields.get("agent_id"), max_field_chars
    ) + _identity_issues("assignee.owner", fields.get("owner"), max_field_chars)


def check_assignee_shape(obj: Any) -> dict[str, str]:
    """The reassign ``assignee`` a transport passes on: an object with non-empty
    string ``agent_id`` and ``owner``, else 400 ``invalid_request`` (§4.2).

    One home for the HTTP route and a session's ``reassign`` action; it runs
    before the backbone, whose :func:`validate_assignee` then checks the
    fields like an identity.
    """
    if (
        not isinstance(obj, dict)
        or not isinstance(obj.get("agent_id"), str)
        or not isinstance(obj.get("owner"), str)
        or obj["agent_id"] == ""
        or obj["owner"] == ""
    ):
        raise InvalidRequest("reassign requires an assignee object with a non-empty agent_id and owner")
    return {"agent_id": obj["agent_id"], "owner": obj["owner"]}


def check_cursor_in_log(cursor: int, head: int) -> int:
    """A cursor into a log of ``head`` messages: ``[0, head]``, else 400 ``invalid_cursor``."""
    if not 0 <= cursor <= head:
        raise InvalidCursor(f"cursor must be an integer in [0, {head}]")
    return cursor


# --------------------------------------------------------------------------
# backbone boundary checks (§3 append / claim / reassign / done)
# --------------------------------------------------------------------------


def with_version(msg: dict[str, Any]) -> dict[str, Any]:
    """A copy stamped with ``v`` (kept in place if sent, else appended), as the backbone does."""
    return {**msg, "v": SCHEMA_VERSION}


def as_resolved(msg: dict[str, Any]) -> dict[str, Any]:
    """A copy with ``status:"resolved"`` forced, as ``markClaimDone`` does before validating."""
    return {**msg, "status": "resolved"}


def _raise_if(issues: list[str]) -> None:
    if issues:
        raise InvalidMessage(issues)


def _check_caps(
    msg: dict[str, Any], *, max_body_chars: int, max_field_chars: int, check_target: bool
) -> None:
    """The backbone's post-validate caps; each raises a single issue."""
    body = msg.get("body")
    if isinstance(body, str) and utf16_len(body) > max_body_chars:
        raise InvalidMessage([f"body exceeds {max_body_chars} characters"])
    target = msg.get("target")
    if check_target and isinstance(target, str) and utf16_len(target) > max_field_chars:
        raise InvalidMessage([f"target exceeds {max_field_chars} characters"])
    to = msg.get("to")
    if isinstance(to, list):
        for entry in to:
            if isinstance(entry, str) and utf16_len(entry) > max_field_chars:
                raise InvalidMessage([f"to[] entry exceeds {max_field_chars} characters"])


def check_append(
    msg: dict[str, Any],
    *,
    max_body_chars: int = MAX_BODY_CHARS,
    max_field_chars: int = MAX_FIELD_CHARS,
    max_recipients: int = MAX_RECIPIENTS,
) -> dict[str, Any]:
    """Boundary checks of ``append``; returns the ``v``-stamped copy to store.

    Order: claim type refused first, then the schema (all issues at once),
    then the body cap, then each ``to[]`` entry cap.
    """
    if isinstance(msg, dict) and msg.get("type") == "claim":
        raise InvalidMessage(["use claim() for claim messages"])
    if not isinstance(msg, dict):
        raise InvalidMessage(["message must be a JSON object"])
    stamped = with_version(msg)
    _raise_if(validate(stamped, max_field_chars=max_field_chars, max_recipients=max_recipients))
    _check_caps(
        stamped, max_body_chars=max_body_chars, max_field_chars=max_field_chars, check_target=False
    )
    return stamped


def check_claim(
    msg: dict[str, Any],
    op: ClaimOp,
    *,
    max_body_chars: int = MAX_BODY_CHARS,
    max_field_chars: int = MAX_FIELD_CHARS,
    max_recipients: int = MAX_RECIPIENTS,
) -> str:
    """Boundary checks of ``claim``/``reassignClaim``/``markClaimDone``; returns the ledger key.

    For ``done`` the message is validated with ``status:"resolved"`` forced
    (so a bad client ``status`` is overwritten, not reported); store
    ``with_version(as_resolved(msg))``. For ``reassign`` call
    :func:`validate_assignee` after this: Caucus checks the assignee after
    the message, and :func:`normalize_target` cannot fail once ``validate``
    has passed, so returning the key first changes nothing.
    """
    if op not in _TYPE_CHECK:
        raise ValueError(f"unknown claim op {op!r}")
    if not isinstance(msg, dict):
        raise InvalidMessage(["message must be a JSON object"])
    if msg.get("type") != "claim":
        raise InvalidMessage([_TYPE_CHECK[op]])
    stamped = with_version(as_resolved(msg) if op == "done" else msg)
    _raise_if(validate(stamped, max_field_chars=max_field_chars, max_recipients=max_recipients))
    _check_caps(
        stamped, max_body_chars=max_body_chars, max_field_chars=max_field_chars, check_target=True
    )
    return normalize_target(stamped["target"])


def normalize_target(raw: str) -> str:
    """The claim-ledger key: ``raw.trim().normalize("NFC")`` (case and zero-width kept)."""
    key = unicodedata.normalize("NFC", js_trim(raw))
    if not key:
        raise InvalidMessage(["target must not be empty"])
    return key


def dup_key(msg: dict[str, Any]) -> str:
    """The seatbelt's loop key: ``type + " " + body.trim()`` (JavaScript trim)."""
    return f"{msg['type']} {js_trim(msg['body'])}"


# --------------------------------------------------------------------------
# channels (§3 createChannel, §4.3 invalid_channel_name)
# --------------------------------------------------------------------------


def check_channel_name(name: Any) -> str:
    """Return ``name`` if it is a valid slug, else raise :class:`InvalidChannelName`.

    The rejected name is echoed stripped, capped and ``JSON.stringify``-quoted.
    A non-string name crashes Caucus into a 500; parley answers 400 with a
    fixed message instead (deviation D5).
    """
    if not isinstance(name, str):
        raise InvalidChannelName("Invalid channel name: channel must be a string" + _SLUG_HINT)
    if SLUG_RE.fullmatch(name) is None:
        raise InvalidChannelName("Invalid channel name: " + js_quote(fragment(name)) + _SLUG_HINT)
    return name


def check_create_options(
    body: dict[str, Any], *, max_field_chars: int = MAX_FIELD_CHARS
) -> dict[str, Any]:
    """Validate the optional ``createChannel`` fields; returns the descriptor's settings.

    Runs steps (3)-(5) of §3 (slug and existence come first, limits and the
    throttle after). Over HTTP pass the body with ``created_by`` already
    anchored to the token owner. Unknown keys are ignored, as Caucus
    destructures. ``verbosity`` is stored unvalidated; absent or ``null``
    gives ``"quiet"`` (``??``). ``purpose`` is returned only when sent.
    """
    out: dict[str, Any] = {}
    if "purpose" in body:
        purpose = body["purpose"]
        if not isinstance(purpose, str):
            raise InvalidMessage(["purpose must be a string"])
        if utf16_len(purpose) > max_field_chars:
            raise InvalidMessage([f"purpose exceeds {max_field_chars} characters"])
        if has_control_except_ws(purpose):
            raise InvalidMessage(
                ["purpose must not contain control characters (tab and newline are allowed)"]
            )
        out["purpose"] = purpose
    if "created_by" in body:
        created_by = body["created_by"]
        if not isinstance(created_by, str):
            raise InvalidMessage(["created_by must be a string"])
        if has_control(created_by):
            raise InvalidMessage(["created_by must not contain control characters"])
    budget = body.get("renderBudgetChars", DEFAULT_RENDER_BUDGET_CHARS)
    if not (is_js_integer(budget) and 1 <= budget <= MAX_RENDER_BUDGET_CHARS):
        raise InvalidMessage(
            [f"renderBudgetChars must be an integer in [1, {MAX_RENDER_BUDGET_CHARS}]"]
        )
    verbosity = body.get("verbosity")
    out["verbosity"] = "quiet" if verbosity is None else verbosity
    out["renderBudgetChars"] = int(budget)
    return out


# --------------------------------------------------------------------------
# reads, stamps, read-layer sanitising (§2.4, §2.9, §3 readSince)
# --------------------------------------------------------------------------


def check_read_args(body: dict[str, Any], head: int, max_read_limit: int) -> tuple[int, int]:
    """``(cursor, effective_limit)`` for ``readSince``; raises :class:`InvalidCursor`.

    A missing cursor is invalid; a ``limit`` key that is present is checked
    even when ``null``. An over-cap or missing limit is clamped silently.
    """
    cursor = body.get("cursor")
    if not is_js_integer(cursor):
        raise InvalidCursor(f"cursor must be an integer in [0, {head}]")
    check_cursor_in_log(cursor, head)
    limit = body.get("limit")
    if "limit" in body and not (is_js_integer(limit) and limit > 0):
        raise InvalidCursor("limit must be a positive integer")
    effective = max_read_limit if limit is None else min(limit, max_read_limit)
    return int(cursor), int(effective)


def stamp(now_ms: int, seq: int) -> str:
    """The opaque ``ts``: ``Date#toISOString()`` + ``#`` + 12-digit sequence.

    Sorts as a string in append order; ``Date.parse`` of it is NaN by design.
    """
    t = _EPOCH + timedelta(milliseconds=now_ms)
    return (
        f"{t.year:04d}-{t.month:02d}-{t.day:02d}T{t.hour:02d}:{t.minute:02d}:{t.second:02d}"
        f".{t.microsecond // 1000:03d}Z#{seq:012d}"
    )


def sanitize_message_fields(msg: dict[str, Any]) -> dict[str, Any]:
    """The read-layer copy used for SSE/WebSocket frames (``sanitizeMessageFields``).

    Strips control characters from ``owner``, ``agent_id``, ``target``,
    ``artifact`` and each ``to[]`` entry, and from ``body`` keeping tab and
    newline. Key order and every other field are untouched; non-string values
    are left as they are.
    """
    out = dict(msg)
    for key in ("owner", "agent_id", "target", "artifact"):
        if isinstance(out.get(key), str):
            out[key] = strip_control(out[key])
    if isinstance(out.get("body"), str):
        out["body"] = strip_control_keep_ws(out["body"])
    if isinstance(out.get("to"), list):
        out["to"] = [strip_control(e) if isinstance(e, str) else e for e in out["to"]]
    return out
