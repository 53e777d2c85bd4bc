"""Turn input: a session turn's JSON body, parsed into a frozen value.

Why a pure parser: refusal step 3 of the sessions contract ("bad turn input →
400 invalid_request") is decided before the session is looked up, so it must
not need any state. Exactly one error is raised, the first found in this fixed
order: start-only/continue-only keys, unknown keys (body order), ``wait``,
``max``, ``continuationToken``, ``handler``, ``sessionId``, ``idempotencyKey``,
then ``actions`` in index order. Messages name the field and never echo a
value; echoed keys go through :func:`parley.domain.text.fragment` (re-exported
here), the one fragment rule of the codebase.

Channel slugs and message contents are deliberately not checked here: each
action is run by the channel actor, which reports a per-action result.

Numbers follow JSON/JS semantics (as the channel routes do): ``2.0`` is the
integer 2, ``true`` is not a number, ``null`` is not "absent".
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Final, Literal, cast

from parley.domain.text import MAX_ERROR_FRAGMENT_CHARS, fragment, is_js_integer
from parley.errors import InvalidRequest

__all__ = [
    "ACTION_KINDS",
    "DEFAULT_HANDLER",
    "DEFAULT_MAX",
    "DEFAULT_WAIT",
    "MAX_ACTIONS",
    "MAX_ERROR_FRAGMENT_CHARS",
    "REST_FINGERPRINT_EXCLUDE",
    "WS_FINGERPRINT_EXCLUDE",
    "Action",
    "ActionKind",
    "TurnInput",
    "canonical_json",
    "check_idempotency_key",
    "fingerprint",
    "fragment",
    "parse_turn_input",
    "presented_token",
]

ActionKind = Literal["subscribe", "unsubscribe", "append", "claim", "reassign", "done"]
ACTION_KINDS: Final[tuple[str, ...]] = ("subscribe", "unsubscribe", "append", "claim", "reassign", "done")

MAX_ACTIONS: Final = 100
DEFAULT_WAIT: Final = 0
MAX_WAIT: Final = 60
DEFAULT_MAX: Final = 100
MAX_MAX: Final = 500
DEFAULT_HANDLER: Final = "inbox"
MAX_IDEMPOTENCY_KEY_CHARS: Final = 255

REST_FINGERPRINT_EXCLUDE: Final[tuple[str, ...]] = ("continuationToken",)
WS_FINGERPRINT_EXCLUDE: Final[tuple[str, ...]] = ("continuationToken", "sessionId", "idempotencyKey")

_VISIBLE_ASCII = re.compile("[\x21-\x7e]+")
_BASE_KEYS: Final = frozenset({"actions", "wait", "max", "continuationToken"})
_WS_KEYS: Final = frozenset({"sessionId", "idempotencyKey"})
# kind -> (required fields, optional fields) of the action's object.
_ACTION_FIELDS: Final[dict[str, tuple[tuple[str, ...], tuple[str, ...]]]] = {
    "subscribe": (("channel",), ("from",)),
    "unsubscribe": (("channel",), ()),
    "append": (("channel", "message"), ()),
    "claim": (("channel", "message"), ()),
    "reassign": (("channel", "message", "assignee"), ()),
    "done": (("channel", "message"), ()),
}
_ACTION_SHAPE_TAIL = " must be an object with exactly one of " + ", ".join(ACTION_KINDS)


@dataclass(frozen=True, slots=True)
class Action:
    """One action of a turn, shape-checked only.

    ``from_`` is set for ``subscribe`` only (``"head"`` by default, else
    ``"start"`` or a non-negative int); ``message`` for append, claim,
    reassign and done; ``assignee`` for reassign. Dicts are the caller's own
    objects, handed unchanged to the channel layer.
    """

    kind: ActionKind
    channel: str
    from_: str | int | None = None
    message: dict[str, Any] | None = None
    assignee: dict[str, Any] | None = None


@dataclass(frozen=True, slots=True)
class TurnInput:
    """A parsed turn body.

    ``handler`` is ``"inbox"`` when starting without one and ``None`` when
    continuing. ``session_id``/``idempotency_key`` come only from WebSocket
    frames (``allow_ws_fields=True``).
    """

    actions: tuple[Action, ...] = ()
    wait: int = DEFAULT_WAIT
    max: int = DEFAULT_MAX
    continuation_token: str | None = None
    handler: str | None = None
    session_id: str | None = None
    idempotency_key: str | None = None


def _js_int(value: object) -> int | None:
    """The integer a JSON number denotes (``2.0`` → 2), else ``None``; bools are not numbers."""
    return int(value) if is_js_integer(value) else None  # type: ignore[call-overload]


def _int_in(body: Mapping[str, Any], key: str, default: int, lo: int, hi: int) -> int:
    if key not in body:
        return default
    value = _js_int(body[key])
    if value is None or not lo <= value <= hi:
        raise InvalidRequest(f"{key} must be an integer between {lo} and {hi}")
    return value


def parse_turn_input(body: object, *, start: bool, allow_ws_fields: bool = False) -> TurnInput:
    """Parse and shape-check a turn body; raise :class:`InvalidRequest` on the first problem."""
    if not isinstance(body, Mapping):
        raise InvalidRequest("request body must be a JSON object")
    if start and "continuationToken" in body:
        raise InvalidRequest("continuationToken is not allowed when starting a session")
    allowed = _BASE_KEYS | ({"handler"} if start else set()) | (_WS_KEYS if allow_ws_fields else set())
    for key in body:
        if key not in allowed:
            raise InvalidRequest(f'unknown field "{fragment(str(key))}"')

    wait = _int_in(body, "wait", DEFAULT_WAIT, 0, MAX_WAIT)
    max_ = _int_in(body, "max", DEFAULT_MAX, 1, MAX_MAX)

    token = body.get("continuationToken")
    if "continuationToken" in body and not isinstance(token, str):
        raise InvalidRequest("continuationToken must be a string")

    handler: str | None = None
    if start:
        handler = body.get("handler", DEFAULT_HANDLER)
        if not isinstance(handler, str) or not handler:
            raise InvalidRequest("handler must be a non-empty string")

    session_id = body.get("sessionId")
    if "sessionId" in body and not isinstance(session_id, str):
        raise InvalidRequest("sessionId must be a string")
    idem = None
    if "idempotencyKey" in body:  # a JSON null is a bad key here, not an absent one
        raw_key = body["idempotencyKey"]
        idem = check_idempotency_key("" if raw_key is None else raw_key, field="idempotencyKey")

    actions = _parse_actions(body["actions"]) if "actions" in body else ()
    return TurnInput(actions, wait, max_, token, handler, session_id, idem)


def _parse_actions(raw: object) -> tuple[Action, ...]:
    if not isinstance(raw, list):
        raise InvalidRequest(f"actions must be an array of at most {MAX_ACTIONS} actions")
    if len(raw) > MAX_ACTIONS:
        raise InvalidRequest(f"actions has more than {MAX_ACTIONS} entries ({len(raw)})")
    return tuple(_parse_action(i, item) for i, item in enumerate(raw))


def _parse_action(index: int, item: object) -> Action:
    where = f"actions[{index}]"
    if not isinstance(item, Mapping) or len(item) != 1:
        raise InvalidRequest(where + _ACTION_SHAPE_TAIL)
    (kind,) = item.keys()
    if kind not in _ACTION_FIELDS:
        raise InvalidRequest(where + _ACTION_SHAPE_TAIL)
    where = f"{where}.{kind}"
    spec = item[kind]
    if not isinstance(spec, Mapping):
        raise InvalidRequest(f"{where} must be an object")
    required, optional = _ACTION_FIELDS[kind]
    for key in spec:
        if key not in required and key not in optional:
            raise InvalidRequest(f'unknown field "{where}.{fragment(str(key))}"')
    channel = spec.get("channel")
    if not isinstance(channel, str):
        raise InvalidRequest(f"{where}.channel must be a string")
    if kind == "subscribe":
        return Action("subscribe", channel, from_=_parse_from(where, spec))
    if kind == "unsubscribe":
        return Action("unsubscribe", channel)
    message = spec.get("message")
    if not isinstance(message, dict):
        raise InvalidRequest(f"{where}.message must be an object")
    if kind != "reassign":
        return Action(cast(ActionKind, kind), channel, message=message)
    assignee = spec.get("assignee")
    if not isinstance(assignee, dict):
        raise InvalidRequest(f"{where}.assignee must be an object")
    return Action("reassign", channel, message=message, assignee=assignee)


def _parse_from(where: str, spec: Mapping[str, Any]) -> str | int:
    if "from" not in spec:
        return "head"
    raw = spec["from"]
    if raw == "head" or raw == "start":
        return str(raw)
    cursor = _js_int(raw)
    if cursor is None or cursor < 0:
        raise InvalidRequest(f'{where}.from must be "head", "start" or a non-negative integer')
    return cursor


def presented_token(body_token: object, header_token: str | None) -> str | None:
    """The token a request presents, or ``None`` when it presents none (→ missing_token).

    The body's ``continuationToken`` wins when present (``None`` means
    absent: the parser refuses a JSON ``null``); an empty body string is
    missing even if the ``x-continuation-token`` header holds a valid token.
    An empty header is missing too.
    """
    if body_token is not None:
        if not isinstance(body_token, str):
            raise InvalidRequest("continuationToken must be a string")
        return body_token or None
    return header_token or None


def check_idempotency_key(raw: object, *, field: str = "Idempotency-Key") -> str | None:
    """``None`` when absent; else the key if it is 1–255 visible ASCII chars (0x21–0x7e)."""
    if raw is None:
        return None
    if (
        not isinstance(raw, str)
        or len(raw) > MAX_IDEMPOTENCY_KEY_CHARS
        or _VISIBLE_ASCII.fullmatch(raw) is None
    ):
        raise InvalidRequest(f"{field} must be 1-{MAX_IDEMPOTENCY_KEY_CHARS} visible ASCII characters")
    return raw


def canonical_json(value: object) -> bytes:
    """Sorted keys, no whitespace, UTF-8 (not ``\\u`` escapes): the fingerprint form."""
    text = json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return text.encode("utf-8", "surrogatepass")


def fingerprint(body: Mapping[str, Any], *, exclude: Iterable[str] = REST_FINGERPRINT_EXCLUDE) -> str:
    """sha256 hex of the canonical JSON of ``body`` minus the ``exclude`` keys.

    The raw body is fingerprinted (not the parsed :class:`TurnInput`), so
    ``{"wait": 2}`` and ``{"wait": 2.0}`` are different requests.
    """
    skip = frozenset(exclude)
    kept = {k: v for k, v in body.items() if k not in skip}
    return hashlib.sha256(canonical_json(kept)).hexdigest()
