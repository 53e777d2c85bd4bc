"""Running the real ``parley hook`` as a subprocess against a real ``parley serve``."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from tests.support.process import clean_env

TOKEN = "tok-a"  # sess-a:alice in tests.support.process.TOKENS
PREFIX = '{"hookSpecificOutput":{"hookEventName":"UserPromptSubmit","additionalContext":'


@dataclass
class HookResult:
    code: int
    stdout: str
    stderr: str
    seconds: float

    @property
    def block(self) -> str:
        """The injected block (asserts the envelope is exactly the contract's)."""
        assert self.stdout.startswith(PREFIX) and self.stdout.endswith("}}"), self.stdout
        data = json.loads(self.stdout)
        assert list(data) == ["hookSpecificOutput"]
        assert list(data["hookSpecificOutput"]) == ["hookEventName", "additionalContext"]
        return data["hookSpecificOutput"]["additionalContext"]


class Hook:
    """``python -m parley hook`` with HOME and PARLEY_STATE_DIR in ``tmp``."""

    def __init__(self, tmp: Path, url: str, channel: str = "war-room", **env: str) -> None:
        self.tmp = tmp
        self.channel = channel
        self.state_dir = tmp / "state"
        self.env = clean_env(
            HOME=str(tmp / "home"),
            PARLEY_STATE_DIR=str(self.state_dir),
            PARLEY_URL=url,
            PARLEY_CHANNEL=channel,
            PARLEY_TOKEN=TOKEN,
            **env,
        )
        (tmp / "home").mkdir(exist_ok=True)

    def run(self, stdin: str = '{"session_id":"s1","hook_event_name":"UserPromptSubmit"}', *args: str) -> HookResult:
        started = time.monotonic()
        proc = subprocess.run(
            [sys.executable, "-m", "parley", "hook", *args],
            input=stdin.encode("utf-8"),
            env=self.env,
            cwd=self.tmp,
            capture_output=True,
            timeout=60,
        )
        return HookResult(
            proc.returncode, proc.stdout.decode("utf-8"), proc.stderr.decode("utf-8"), time.monotonic() - started
        )

    def state_file(self, name: str | None = None) -> Path:
        return self.state_dir / "hook" / (name or f"s1__{self.channel}.json")

    def state(self, name: str | None = None) -> dict:
        return json.loads(self.state_file(name).read_text())


def quiet(result: HookResult, stderr: str = "") -> None:
    assert (result.code, result.stdout, result.stderr) == (0, "", stderr), result


def bodies(block: str) -> list[str]:
    """The body part of every message line (the tests post one-part notes)."""
    return [line.split("A\u00b7alice  ", 1)[1] for line in block.split("\n") if line.startswith("[parley] note")]
