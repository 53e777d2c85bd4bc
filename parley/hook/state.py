"""The hook's state file: ``$PARLEY_STATE_DIR/hook/<sid>__<channel>.json`` (contracts/mcp.md §8.4).

The cursor lives on the server (a parley session); the file holds only what
is needed to continue it: ``sessionId``, ``continuationToken``, ``channel``,
``lastInjection``, and two keys of ADR-0016: ``pending`` (the turn in flight,
so a hook killed by its timeout resends the same turn and gets the original
answer back instead of a ``stale_token``) and ``resumeFrom`` (where the next
turn re-subscribes when the 8000-character cap held messages back); and one of
ADR-0062: ``parkedAt``, written when Claude Code's ``SessionEnd`` closes the
session, the cursor a new session starts from if the Claude session resumes.

The file holds a live bearer of the session, so it is written ``0600``, to
``<path>.<pid>.tmp`` and renamed over the target (never a torn file).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..atomic_file import atomic_write

VERSION = 1
_UNSAFE_RUN = re.compile(r"[^A-Za-z0-9_-]+")


def state_path(state_dir: Path, session_id: str, channel: str) -> Path:
    """Each run of characters outside ``[A-Za-z0-9_-]`` becomes one ``-`` (``s/1 x`` → ``s-1-x``)."""
    name = f"{_UNSAFE_RUN.sub('-', session_id)}__{_UNSAFE_RUN.sub('-', channel)}.json"
    return state_dir / "hook" / name


@dataclass
class HookState:
    session_id: str
    token: str
    channel: str
    #: Cursor the next turn re-subscribes from (messages after it were held back by the cap).
    resume_from: int | None = None
    #: The turn sent but not yet answered: ``{"idempotencyKey", "body"}``.
    pending: dict[str, Any] | None = None
    last_injection: dict[str, Any] | None = None
    #: The session was closed at its Claude session's end (ADR-0062): a resumed run starts a new
    #: session from this cursor (everything after it was not yet shown).
    parked_at: int | None = None

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "sessionId": self.session_id,
            "continuationToken": self.token,
            "channel": self.channel,
            "v": VERSION,
        }
        if self.resume_from is not None:
            data["resumeFrom"] = self.resume_from
        if self.pending is not None:
            data["pending"] = self.pending
        if self.last_injection is not None:
            data["lastInjection"] = self.last_injection
        if self.parked_at is not None:
            data["parkedAt"] = self.parked_at
        return data


def as_cursor(value: Any) -> int | None:
    """``value`` when it is a cursor (an integer ≥ 0, not a bool), else None."""
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else None


def parse(text: str, channel: str) -> HookState | None:
    """The state in ``text``, or None when it is unusable (unparseable, another channel's, incomplete)."""
    try:
        data = json.loads(text)
    except ValueError:
        return None
    if not isinstance(data, dict) or data.get("channel") != channel:
        return None
    sid, token = data.get("sessionId"), data.get("continuationToken")
    if not isinstance(sid, str) or not sid or not isinstance(token, str) or not token:
        return None
    pending = data.get("pending")
    if not (
        isinstance(pending, dict)
        and isinstance(pending.get("idempotencyKey"), str)
        and isinstance(pending.get("body"), dict)
    ):
        pending = None
    last = data.get("lastInjection")
    return HookState(
        session_id=sid,
        token=token,
        channel=channel,
        resume_from=as_cursor(data.get("resumeFrom")),
        pending=pending,
        last_injection=last if isinstance(last, dict) else None,
        parked_at=as_cursor(data.get("parkedAt")),
    )


def load(path: Path, channel: str) -> HookState | None:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return None
    return parse(text, channel)


def save(path: Path, state: HookState) -> None:
    """Write atomically (temp file + rename), mode 0600; raises OSError on failure."""
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, json.dumps(state.to_json(), separators=(",", ":")).encode("ascii"), mode=0o600)


__all__ = ["HookState", "as_cursor", "load", "parse", "save", "state_path"]
