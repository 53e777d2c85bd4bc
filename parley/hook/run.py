"""One run of ``parley hook``: continue the agent's parley session and print what it delivered.

Contract: contracts/mcp.md §6 (stdin/env, framing, fail-open) and §8.4 (the
cursor is a parley session held by the server). Design: ADR-0016.

* First run (no usable state file): start a session subscribed to the channel
  at ``head``, store it, print nothing.
* Later runs: one ``wait: 0`` turn; render the oldest messages that fit the
  8000-character block; when the cap held some back, the next turn first
  re-subscribes from the last rendered cursor, so they come next turn.
* The turn is written to the state file (``pending``) before it is sent and
  resent with the same ``Idempotency-Key`` and token until an answer is
  stored, so a run killed or timed out mid-turn loses nothing: the server
  replays the committed turn.
* Claude Code's ``SessionEnd`` event (ADR-0062, opt-in in the settings) closes
  the session so it no longer counts against the identity's session limit, and
  parks the state file at the last cursor shown; if that Claude session is
  resumed, its next run starts a new session from there, so nothing is lost.
* It always fails open: no output, one stderr line, exit 0.
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from ..client import Actions, Parley, ParleyError, new_idempotency_key, turn_body
from ..errors import IdempotencyConflict, StaleToken, UnknownSession
from . import state as files
from .render import DEFAULT_BUDGET, render_block

DEFAULT_URL = "http://127.0.0.1:4317"
#: Every request times out after this many seconds (§6).
REQUEST_TIMEOUT = 4.0
#: Most messages one turn delivers; the block cap decides how many are shown (ADR-0016).
TURN_MAX = 100

SKIPPED = "parley-hook: skipped this turn (backbone unavailable or slow)"
NOT_PERSISTED = "parley-hook: could not persist checkpoint this turn"
NEW_SESSION = "parley-hook: started a new session"
NO_BUDGET = "parley-hook: render budget unavailable, using default"
NO_TOKEN = "parley-hook: PARLEY_TOKEN is required (a parley session belongs to a token's identity)"


@dataclass(frozen=True)
class HookConfig:
    url: str
    token: str | None
    channel: str
    state_dir: Path


def _env(env: Mapping[str, str], name: str) -> str:
    """``PARLEY_<name>``, else ``CAUCUS_<name>``, trimmed ("" when neither is set or both are blank)."""
    for prefix in ("PARLEY_", "CAUCUS_"):
        value = env.get(prefix + name, "").strip()
        if value:
            return value
    return ""


def config_from_env(env: Mapping[str, str]) -> HookConfig | None:
    """None when no channel is configured (the hook then does nothing at all)."""
    channel = _env(env, "CHANNEL")
    if not channel:
        return None
    return _config(env, channel)


def _config(env: Mapping[str, str], channel: str) -> HookConfig:
    state_dir = env.get("PARLEY_STATE_DIR", "").strip()
    home = Path(env.get("HOME") or Path.home())
    return HookConfig(
        url=_env(env, "URL") or DEFAULT_URL,
        token=_env(env, "TOKEN") or None,
        channel=channel,
        state_dir=Path(state_dir) if state_dir else home / ".parley",
    )


def _hook_input(stdin_text: str) -> dict[str, Any]:
    try:
        data = json.loads(stdin_text)
    except ValueError:
        return {}
    return data if isinstance(data, dict) else {}


def session_id_of(stdin_text: str) -> str:
    """The hook JSON's ``session_id`` when it is a non-empty string, else ``default``."""
    sid = _hook_input(stdin_text).get("session_id")
    return sid if isinstance(sid, str) and sid else "default"


def is_session_end(stdin_text: str) -> bool:
    """Claude Code ran the hook for ``SessionEnd`` (any other event, or none, is a prompt)."""
    return _hook_input(stdin_text).get("hook_event_name") == "SessionEnd"


def envelope(block: str) -> str:
    out = {"hookSpecificOutput": {"hookEventName": "UserPromptSubmit", "additionalContext": block}}
    return json.dumps(out, separators=(",", ":"), ensure_ascii=False)


def _now_iso() -> str:
    ms = time.time_ns() // 1_000_000
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ms // 1000)) + f".{ms % 1000:03d}Z"


class HookRun:
    """One invocation; :meth:`run` returns the stdout text ("" for none)."""

    def __init__(
        self, config: HookConfig, session_key: str, client: Parley, warn: Callable[[str], None], path: Path | None = None
    ) -> None:
        self.config = config
        self.client = client
        self.warn = warn
        self.path = path or files.state_path(config.state_dir, session_key, config.channel)

    def run(self) -> str:
        saved = files.load(self.path, self.config.channel)
        if saved is None:
            self.start()
            return ""
        if saved.parked_at is not None:
            return self.resume(saved)
        return self.continue_(saved)

    # -- starting ------------------------------------------------------------------

    def start(self, *, announce: str | None = None) -> None:
        """Start a session at ``head`` and store it; nothing is printed."""
        opened = self._open("head")
        if opened is None:
            return
        response, subscribed = opened
        fresh = files.HookState(response["sessionId"], response["continuationToken"], self.config.channel)
        if (response.get("output") or {}).get("messages"):
            # A message committed between the subscribe and the delivery: it is
            # past "head", so the next turn delivers it again (ADR-0016).
            fresh.resume_from = int(subscribed["cursor"])
        if self._save(fresh) and announce:
            self.warn(announce)

    def _open(self, from_: str | int) -> tuple[Mapping[str, Any], dict[str, Any]] | None:
        """A new session subscribed to the channel from ``from_``: its first turn's response and
        the subscribe's result, or None (one line said) when it could not be started."""
        try:
            response = self.client.start_session(
                [Actions.subscribe(self.config.channel, from_)], wait=0, max_messages=TURN_MAX
            )
        except ParleyError:
            self.warn(SKIPPED)
            return None
        subscribed = ((response.get("output") or {}).get("results") or [None])[0]
        if not isinstance(subscribed, dict) or "error" in subscribed:
            # Unknown channel (or refused): do not keep a session subscribed to nothing.
            self._close_quietly(response["sessionId"], response["continuationToken"])
            self.warn(SKIPPED)
            return None
        return response, subscribed

    def _close_quietly(self, session_id: str, token: str) -> None:
        try:
            self.client.close_session(session_id, token)
        except ParleyError:
            pass

    # -- ending and resuming (ADR-0062) ------------------------------------------

    def end(self) -> bool:
        """Park the state at the last cursor shown, then close the session (True when parked now).

        Parked first: a close that fails or is cut short leaves a file the next
        run (or the next end) finishes, never a file naming a closed session,
        which would restart at ``head`` and skip what came in between. A turn
        still pending is left alone: what it delivered was never shown, and
        only resending it can tell.
        """
        saved = files.load(self.path, self.config.channel)
        if saved is None or saved.pending is not None:
            return False
        parked_now = saved.parked_at is None
        if parked_now:
            try:
                described = self.client.describe_session(saved.session_id)
            except UnknownSession:
                return False  # already gone: the next run starts a new session, as for a lost file
            except ParleyError:
                self.warn(SKIPPED)
                return False
            cursor = saved.resume_from
            if cursor is None:
                cursor = files.as_cursor((described.get("subscriptions") or {}).get(self.config.channel))
            if cursor is None:
                return False
            saved.parked_at, saved.resume_from = cursor, None
            if not self._save(saved):
                return False
        self._close_quietly(saved.session_id, saved.token)
        return parked_now

    def resume(self, parked: files.HookState) -> str:
        """A parked Claude session is back: a new session from the parked cursor, its first turn shown."""
        self._close_quietly(parked.session_id, parked.token)
        assert parked.parked_at is not None
        opened = self._open(parked.parked_at)
        if opened is None:
            return ""
        response, _subscribed = opened
        fresh = files.HookState(
            response["sessionId"], response["continuationToken"], self.config.channel,
            last_injection=parked.last_injection,
        )
        return self._show(fresh, response)

    # -- continuing ----------------------------------------------------------------

    def continue_(self, saved: files.HookState) -> str:
        if saved.pending is None:
            actions = None
            if saved.resume_from is not None:
                actions = [Actions.subscribe(self.config.channel, saved.resume_from)]
            body = turn_body(actions, wait=0, max_messages=TURN_MAX)
            saved.pending = {"idempotencyKey": new_idempotency_key(), "body": body}
            if not self._save(saved):
                return ""
        pending = saved.pending
        try:
            response = self.client.continue_session(
                saved.session_id,
                saved.token,
                body=pending["body"],
                idempotency_key=pending["idempotencyKey"],
                retry_contended=False,
            )
        except (UnknownSession, StaleToken, IdempotencyConflict):
            self.start(announce=NEW_SESSION)
            return ""
        except ParleyError:
            self.warn(SKIPPED)  # the pending turn stays recorded: the next run resends it
            return ""
        if response.get("status") == "contended":
            self.warn(SKIPPED)
            return ""
        saved.token = response["continuationToken"]
        saved.pending = None
        saved.resume_from = None
        return self._show(saved, response)

    def _show(self, saved: files.HookState, response: Mapping[str, Any]) -> str:
        """Render what ``response`` delivered, store the state, and return the envelope ("" for none)."""
        output = response.get("output") or {}
        delivered = [m for m in output.get("messages") or [] if m.get("channel") == self.config.channel]
        if not delivered:
            self._save(saved)
            return ""
        budget, head = self._describe()
        last_cursor = int(delivered[-1]["cursor"])
        waiting = max(0, head - last_cursor) if head is not None else 0
        rendered = render_block(delivered, budget, waiting=waiting)
        if rendered.count < len(delivered):
            saved.resume_from = rendered.cursor
        saved.last_injection = {"cursor": rendered.cursor, "block": rendered.block, "ts": _now_iso()}
        self._save(saved)
        return envelope(rendered.block)

    def _describe(self) -> tuple[int, int | None]:
        """``(renderBudgetChars, head)`` of the channel; the default budget on failure."""
        try:
            descriptor = self.client.describe(self.config.channel)
        except ParleyError:
            self.warn(NO_BUDGET)
            return DEFAULT_BUDGET, None
        budget = descriptor.get("renderBudgetChars")
        head = descriptor.get("head")
        if not isinstance(budget, int) or isinstance(budget, bool) or budget < 1:
            budget = DEFAULT_BUDGET
        return budget, head if isinstance(head, int) and not isinstance(head, bool) else None

    def _save(self, saved: files.HookState) -> bool:
        try:
            files.save(self.path, saved)
        except OSError:
            self.warn(NOT_PERSISTED)
            return False
        return True


def end_idle(env: Mapping[str, str], days: float, warn: Callable[[str], None], now: float | None = None) -> int:
    """``parley hook --end-idle DAYS``: end (park and close, as at ``SessionEnd``) every hook
    session in the state directory whose file was not written for ``days``; the number ended.

    For sessions whose Claude session ended without ``SessionEnd`` (killed, or from before
    ``--close-on-end``). Safe for one still alive: its next prompt resumes from the parked
    cursor (ADR-0062). Files of any channel are taken; sessions of another token are left.
    """
    config = _config(env, "")
    if config.token is None:
        warn(NO_TOKEN)
        return 0
    cutoff = (time.time() if now is None else now) - days * 86_400
    ended = idle = 0
    said: dict[str, int] = {}  # a down server: its line once, with how many files it cost

    def note(line: str) -> None:
        said[line] = said.get(line, 0) + 1

    with Parley(config.url, config.token, retries=0, timeout=REQUEST_TIMEOUT) as client:
        for path in sorted((config.state_dir / "hook").glob("*.json")):
            try:
                if path.stat().st_mtime > cutoff:
                    continue
                channel = json.loads(path.read_text(encoding="utf-8")).get("channel")
            except (OSError, ValueError, AttributeError):
                continue
            if not isinstance(channel, str) or not channel:
                continue
            idle += 1
            hook = HookRun(replace(config, channel=channel), "", client, note, path)
            ended += hook.end()
    for line, times in said.items():
        warn(line if times == 1 else f"{line} (x{times})")
    warn(f"parley-hook: ended {ended} idle session(s) of {idle} state file(s) idle for {days:g} day(s) or more")
    return ended


def _stderr(line: str) -> None:
    sys.stderr.write(line + "\n")
    sys.stderr.flush()


#: At most this long per prompt is spent sending queued posts (the turn still fits the timeout).
OUTBOX_PATIENCE = 1.0


def flush_outbox(env: Mapping[str, str], client: Parley, warn: Callable[[str], None]) -> None:
    """With ``PARLEY_OUTBOX`` set, send the posts queued while parley was down.

    Every prompt is a chance to deliver what ``parley mcp`` queued, even after
    that process ended; a drain that cannot finish leaves the rest pending.
    """
    path = (env.get("PARLEY_OUTBOX") or "").strip()
    if not path:
        return
    from ..client import Outbox

    try:
        with Outbox(path) as outbox:
            result = outbox.drain(client, patience=OUTBOX_PATIENCE)
    except Exception as exc:  # the turn itself must still run
        warn(f"parley-hook: could not drain the outbox this turn ({type(exc).__name__})")
        return
    if result.dead:
        warn(f"parley-hook: {len(result.dead)} queued post(s) were refused; see `parley outbox list --dead`")


def run_hook(stdin_text: str, env: Mapping[str, str], warn: Callable[[str], None] = _stderr) -> str:
    """The whole hook: the stdout text ("" or one envelope). Never raises."""
    try:
        config = config_from_env(env)
        if config is None:
            return ""
        if config.token is None:
            warn(NO_TOKEN)
            return ""
        with Parley(config.url, config.token, retries=0, timeout=REQUEST_TIMEOUT) as client:
            flush_outbox(env, client, warn)
            hook = HookRun(config, session_id_of(stdin_text), client, warn)
            if is_session_end(stdin_text):
                hook.end()
                return ""
            return hook.run()
    except Exception as exc:  # fail open, always
        warn(f"parley-hook: fatal, skipped this turn ({type(exc).__name__})")
        return ""


def main(end_idle_days: float | None = None) -> None:
    """Entry point of ``parley hook``: read stdin, print at most one envelope, exit 0.
    With ``end_idle_days``, :func:`end_idle` instead (no stdin)."""
    if end_idle_days is not None:
        try:
            end_idle(os.environ, end_idle_days, _stderr)
        except Exception as exc:  # one line, as every hook failure
            _stderr(f"parley-hook: fatal, could not end idle sessions ({type(exc).__name__})")
        sys.exit(0)
    try:  # a terminal is not Claude Code: do not wait for input there
        stdin_text = "" if sys.stdin is None or sys.stdin.isatty() else sys.stdin.read()
    except (OSError, UnicodeDecodeError, ValueError):
        stdin_text = ""
    out = run_hook(stdin_text, os.environ)
    if out:
        sys.stdout.buffer.write(out.encode("utf-8", "backslashreplace"))
        sys.stdout.flush()
    sys.exit(0)


__all__ = ["HookConfig", "config_from_env", "end_idle", "envelope", "is_session_end", "main", "run_hook", "session_id_of"]
