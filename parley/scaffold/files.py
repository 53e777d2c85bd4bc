"""What ``parley init`` writes, and the plan for each file (pure: bytes in, bytes out).

A plan compares what a file holds now with what init wants there:
``created`` (absent), ``unchanged`` (byte-identical), ``merged`` (valid JSON
object that differs: our keys merged in, every other key kept, a backup
taken), ``rewrote`` (not a JSON object: a fresh file, a backup taken) and
``left as-is`` (``parley.env`` differs: it may hold the pasted secret, so it
is never overwritten nor backed up).
"""

from __future__ import annotations

import json
import shlex
from dataclasses import dataclass
from typing import Any

SERVER_NAME = "parley"
GITIGNORE_ENTRIES = ("parley.env", "*.bak-*")


@dataclass(frozen=True)
class Options:
    url: str
    channel: str
    owner: str
    agent_id: str
    token_env: str
    executable: str
    http: bool = False
    #: Also run the hook at Claude Code's ``SessionEnd``: it closes the session (ADR-0062).
    close_on_end: bool = False


@dataclass(frozen=True)
class Plan:
    label: str
    action: str  # created | unchanged | merged | rewrote | left as-is
    content: bytes  # what is written (unused for unchanged / left as-is)

    @property
    def writes(self) -> bool:
        return self.action in ("created", "merged", "rewrote")

    @property
    def needs_backup(self) -> bool:
        return self.action in ("merged", "rewrote")

    def line(self) -> str:
        if self.action == "unchanged":
            return f"{self.action:<9}  {self.label} (already up to date)"
        if self.action == "left as-is":
            return f"{self.action:<9}  {self.label} (differs from what init would write; never overwritten: check its PARLEY_URL and PARLEY_CHANNEL)"
        return f"{self.action:<9}  {self.label}"


def dump_json(value: Any) -> bytes:
    """2-space indent and a trailing newline (``JSON.stringify(v, null, 2) + "\\n"``)."""
    return (json.dumps(value, indent=2, ensure_ascii=False) + "\n").encode("utf-8")


def mcp_entry(opts: Options) -> dict[str, Any]:
    """The ``mcpServers.parley`` entry: stdio, or the Streamable HTTP endpoint with ``--http``."""
    reference = "${" + opts.token_env + "}"  # the literal reference, never the value
    if opts.http:
        return {
            "type": "http",
            "url": f"{opts.url}/mcp?channel={opts.channel}",
            "headers": {"Authorization": f"Bearer {reference}"},
        }
    return {
        "command": opts.executable,
        "args": ["mcp"],
        "env": {"PARLEY_URL": opts.url, "PARLEY_CHANNEL": opts.channel, "PARLEY_TOKEN": reference},
    }


def hook_command(opts: Options) -> str:
    return f"{shlex.quote(opts.executable)} hook"


def merge_mcp(existing: dict[str, Any], opts: Options) -> dict[str, Any]:
    data = dict(existing)
    servers = data.get("mcpServers")
    servers = dict(servers) if isinstance(servers, dict) else {}
    servers[SERVER_NAME] = mcp_entry(opts)
    data["mcpServers"] = servers
    return data


def merge_settings(existing: dict[str, Any], opts: Options) -> dict[str, Any]:
    """Enable the server; replace our UserPromptSubmit hook (matcher ``""``) and append it last;
    with ``close_on_end``, the same for ``SessionEnd``."""
    data = dict(existing)
    enabled = data.get("enabledMcpjsonServers")
    if enabled is None:
        data["enabledMcpjsonServers"] = [SERVER_NAME]
    elif isinstance(enabled, list) and SERVER_NAME not in enabled:
        data["enabledMcpjsonServers"] = [*enabled, SERVER_NAME]
    command = hook_command(opts)
    hooks = data.get("hooks")
    hooks = dict(hooks) if isinstance(hooks, dict) else {}
    for event in ("UserPromptSubmit", "SessionEnd") if opts.close_on_end else ("UserPromptSubmit",):
        entries = hooks.get(event)
        entries = list(entries) if isinstance(entries, list) else []
        kept = [entry for entry in entries if not _is_ours(entry, command)]
        kept.append({"matcher": "", "hooks": [{"type": "command", "command": command}]})
        hooks[event] = kept
    data["hooks"] = hooks
    return data


def _is_ours(entry: Any, command: str) -> bool:
    if not isinstance(entry, dict) or entry.get("matcher") != "":
        return False
    inner = entry.get("hooks")
    return isinstance(inner, list) and any(isinstance(h, dict) and h.get("command") == command for h in inner)


def _shell_value(value: str) -> str:
    return shlex.quote(value)


def env_file(opts: Options) -> bytes:
    lines = [
        "# parley: the environment of this project's agent (written by `parley init`).",
        "# Source it in the shell you start Claude Code from:  source parley.env",
        "# Never commit it: it holds the agent's token. The parley hook reads this",
        "# shell environment, not .mcp.json.",
        f"export PARLEY_URL={_shell_value(opts.url)}",
        f"export PARLEY_CHANNEL={_shell_value(opts.channel)}",
        f"# The secret of {opts.agent_id} ({opts.owner}); paste it after the = sign:",
        f"export {opts.token_env}=",
    ]
    return ("\n".join(lines) + "\n").encode("utf-8")


def plan_json(label: str, current: bytes | None, merge) -> Plan:
    """``merge(existing_object) -> object``: the plan for a JSON file holding ``current``."""
    if current is None:
        return Plan(label, "created", dump_json(merge({})))
    try:
        existing = json.loads(current.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        existing = None
    if not isinstance(existing, dict):
        return Plan(label, "rewrote", dump_json(merge({})))
    content = dump_json(merge(existing))
    return Plan(label, "unchanged" if content == current else "merged", content)


def plan_env(label: str, current: bytes | None, opts: Options) -> Plan:
    content = env_file(opts)
    if current is None:
        return Plan(label, "created", content)
    return Plan(label, "unchanged" if current == content else "left as-is", content)


def gitignore_update(current: bytes | None) -> bytes | None:
    """The new ``.gitignore`` (ours appended), or None when both entries are there (``/x`` counts)."""
    text = "" if current is None else current.decode("utf-8", "replace")
    present = {line.strip().lstrip("/") for line in text.splitlines()}
    missing = [entry for entry in GITIGNORE_ENTRIES if entry not in present]
    if not missing:
        return None
    prefix = current or b""
    if prefix and not prefix.endswith(b"\n"):
        prefix += b"\n"
    return prefix + "".join(f"{entry}\n" for entry in missing).encode("utf-8")


__all__ = [
    "GITIGNORE_ENTRIES",
    "Options",
    "Plan",
    "dump_json",
    "env_file",
    "gitignore_update",
    "hook_command",
    "mcp_entry",
    "merge_mcp",
    "merge_settings",
    "plan_env",
    "plan_json",
]
