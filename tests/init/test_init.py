"""``parley init`` as a real subprocess in a tmp dir: every plan, flag and message
(contracts/mcp.md §7). Outputs and files are asserted exactly."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.process import clean_env

PARLEY = os.path.abspath(Path(sys.executable).parent / "parley")
NOTE = 'note: no --channel given; using "dogfood" (override with --channel <name>).\n'
REFUSAL = "Refusing to modify existing files without --force (non-interactive). Re-run with --force.\n"
SECRET = "s3cret-value-never-written"


def init(cwd: Path, *args: str, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "parley", "init", *args],
        env=clean_env(USER="alice", HOME=str(cwd), PARLEY_TOKEN=SECRET, **env),
        cwd=cwd,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=60,
    )


def next_steps(agent: str = "alice-agent", owner: str = "alice", name: str = "PARLEY_TOKEN") -> list[str]:
    return [
        "",
        "Next steps:",
        f"  1. Give {agent} a token: add <secret>:{agent}:{owner} to PARLEY_TOKENS",
        f"     on the server, or mint one: parley token mint {agent} {owner}",
        f"  2. Paste the secret into parley.env (export {name}=<secret>).",
        "  3. source parley.env, then start Claude Code from that shell.",
    ]


def mcp(channel: str = "dogfood", url: str = "http://127.0.0.1:4317", name: str = "PARLEY_TOKEN") -> dict:
    return {
        "command": PARLEY,
        "args": ["mcp"],
        "env": {"PARLEY_URL": url, "PARLEY_CHANNEL": channel, "PARLEY_TOKEN": "${" + name + "}"},
    }


OUR_HOOK = {"matcher": "", "hooks": [{"type": "command", "command": f"{PARLEY} hook"}]}


def env_text(channel: str = "dogfood", agent: str = "alice-agent", owner: str = "alice", name: str = "PARLEY_TOKEN") -> str:
    return (
        "# parley: the environment of this project's agent (written by `parley init`).\n"
        "# Source it in the shell you start Claude Code from:  source parley.env\n"
        "# Never commit it: it holds the agent's token. The parley hook reads this\n"
        "# shell environment, not .mcp.json.\n"
        "export PARLEY_URL=http://127.0.0.1:4317\n"
        f"export PARLEY_CHANNEL={channel}\n"
        f"# The secret of {agent} ({owner}); paste it after the = sign:\n"
        f"export {name}=\n"
    )


def dumped(value: dict) -> str:
    return json.dumps(value, indent=2, ensure_ascii=False) + "\n"


def snapshot(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_a_fresh_project_gets_every_file(tmp_path):
    result = init(tmp_path)
    assert (result.returncode, result.stderr) == (0, NOTE)
    assert result.stdout.split("\n") == [
        "created    .mcp.json",
        "created    .claude/settings.local.json",
        "created    parley.env",
        "created  .gitignore (ignores parley.env, *.bak-*)",
        *next_steps(),
        "",
    ]
    assert (tmp_path / ".mcp.json").read_text() == dumped({"mcpServers": {"parley": mcp()}})
    assert (tmp_path / ".claude/settings.local.json").read_text() == dumped(
        {"enabledMcpjsonServers": ["parley"], "hooks": {"UserPromptSubmit": [OUR_HOOK]}}
    )
    assert (tmp_path / "parley.env").read_text() == env_text()
    assert (tmp_path / ".gitignore").read_text() == "parley.env\n*.bak-*\n"
    files = snapshot(tmp_path)
    assert all(SECRET.encode() not in content for content in files.values())
    assert b'"PARLEY_TOKEN": "${PARLEY_TOKEN}"' in files[".mcp.json"]


def test_a_second_run_changes_nothing(tmp_path):
    assert init(tmp_path, "--channel", "war-room").returncode == 0
    before = snapshot(tmp_path)
    result = init(tmp_path, "--channel", "war-room")
    assert (result.returncode, result.stderr) == (0, "")
    assert result.stdout.split("\n") == [
        "unchanged  .mcp.json (already up to date)",
        "unchanged  .claude/settings.local.json (already up to date)",
        "unchanged  parley.env (already up to date)",
        *next_steps(),
        "",
    ]
    assert snapshot(tmp_path) == before


def _existing(tmp_path: Path) -> dict[str, bytes]:
    (tmp_path / ".claude").mkdir()
    (tmp_path / ".mcp.json").write_text(
        json.dumps({"mcpServers": {"other": {"command": "x"}, "parley": {"command": "old"}}, "extra": [1, 2]})
    )
    settings = {
        "permissions": {"allow": ["Bash(ls)"]},
        "enabledMcpjsonServers": ["other"],
        "hooks": {
            "UserPromptSubmit": [
                {"matcher": "", "hooks": [{"type": "command", "command": f"{PARLEY} hook"}, {"type": "command", "command": "x"}]},
                {"matcher": "", "hooks": [{"type": "command", "command": "their-hook"}]},
            ],
            "Stop": [{"matcher": "", "hooks": []}],
        },
    }
    (tmp_path / ".claude/settings.local.json").write_text(json.dumps(settings, indent=4))
    return snapshot(tmp_path)


def test_existing_json_is_refused_without_force_and_nothing_is_written(tmp_path):
    before = _existing(tmp_path)
    result = init(tmp_path, "--channel", "war-room")
    assert (result.returncode, result.stdout, result.stderr) == (1, "", REFUSAL)
    assert snapshot(tmp_path) == before  # no backup, no parley.env, no .gitignore


def test_force_merges_keeping_other_keys_and_backs_up(tmp_path):
    before = _existing(tmp_path)
    result = init(tmp_path, "--channel", "war-room", "--force")
    assert result.returncode == 0, result.stderr
    assert result.stdout.split("\n")[:4] == [
        "merged     .mcp.json",
        "merged     .claude/settings.local.json",
        "created    parley.env",
        "created  .gitignore (ignores parley.env, *.bak-*)",
    ]
    backups = [line.split(" \u2192 ") for line in result.stderr.splitlines()]
    assert [b[0] for b in backups] == ["backed up  .mcp.json", "backed up  .claude/settings.local.json"]
    for (head, bak) in backups:
        label = head.removeprefix("backed up  ")
        assert bak.startswith(label + ".bak-") and bak.removeprefix(label + ".bak-").isdigit()
        assert (tmp_path / bak).read_bytes() == before[label]
    assert json.loads((tmp_path / ".mcp.json").read_text()) == {
        "mcpServers": {"other": {"command": "x"}, "parley": mcp("war-room")},
        "extra": [1, 2],
    }
    assert (tmp_path / ".claude/settings.local.json").read_text() == dumped(
        {
            "permissions": {"allow": ["Bash(ls)"]},
            "enabledMcpjsonServers": ["other", "parley"],
            "hooks": {
                "UserPromptSubmit": [
                    {"matcher": "", "hooks": [{"type": "command", "command": "their-hook"}]},
                    OUR_HOOK,
                ],
                "Stop": [{"matcher": "", "hooks": []}],
            },
        }
    )
    again = init(tmp_path, "--channel", "war-room")  # idempotent after the merge
    assert again.returncode == 0 and again.stdout.startswith("unchanged  .mcp.json (already up to date)\n")


def test_corrupt_json_is_rewritten_with_a_backup(tmp_path):
    (tmp_path / ".mcp.json").write_text("{not json")
    assert init(tmp_path, "--channel", "war-room").stderr == REFUSAL
    result = init(tmp_path, "--channel", "war-room", "--force")
    assert result.returncode == 0
    assert result.stdout.split("\n")[0] == "rewrote    .mcp.json"
    bak = result.stderr.strip().split(" \u2192 ")[1]
    assert (tmp_path / bak).read_text() == "{not json"
    assert (tmp_path / ".mcp.json").read_text() == dumped({"mcpServers": {"parley": mcp("war-room")}})


def test_a_differing_parley_env_is_left_as_is_without_backup(tmp_path):
    (tmp_path / "parley.env").write_text("export PARLEY_TOKEN=pasted\n")
    result = init(tmp_path, "--channel", "war-room")
    assert (result.returncode, result.stderr) == (0, "")
    assert result.stdout.split("\n")[2] == (
        "left as-is  parley.env (differs from what init would write; never overwritten: "
        "check its PARLEY_URL and PARLEY_CHANNEL)"
    )
    assert (tmp_path / "parley.env").read_text() == "export PARLEY_TOKEN=pasted\n"
    assert not list(tmp_path.glob("parley.env.bak-*"))


def test_dry_run_prints_the_plan_and_writes_nothing(tmp_path):
    before = _existing(tmp_path)
    result = init(tmp_path, "--channel", "war-room", "--dry-run")
    assert (result.returncode, result.stderr) == (0, "")
    assert result.stdout.split("\n") == [
        "dry run: nothing is written. The plan:",
        "merged     .mcp.json",
        "merged     .claude/settings.local.json",
        "created    parley.env",
        "created  .gitignore (ignores parley.env, *.bak-*)",
        "",
    ]
    assert snapshot(tmp_path) == before


def test_http_writes_the_streamable_http_entry(tmp_path):
    result = init(tmp_path, "--channel", "war-room", "--http", "--url", "https://parley.example:8443/", "--token-env", "MY_TOK")
    assert result.returncode == 0, result.stderr
    assert json.loads((tmp_path / ".mcp.json").read_text()) == {
        "mcpServers": {
            "parley": {
                "type": "http",
                "url": "https://parley.example:8443/mcp?channel=war-room",
                "headers": {"Authorization": "Bearer ${MY_TOK}"},
            }
        }
    }
    assert (tmp_path / "parley.env").read_text().endswith("export MY_TOK=\n")
    assert result.stdout.split("\n")[-3] == "  2. Paste the secret into parley.env (export MY_TOK=<secret>)."


def test_close_on_end_adds_the_session_end_hook_once(tmp_path):
    """ADR-0062: the same command at SessionEnd, replaced (not repeated) by a second run,
    other SessionEnd hooks kept; without the flag the settings are the contract's."""
    theirs = {"matcher": "", "hooks": [{"type": "command", "command": "notify-send bye"}]}
    settings = tmp_path / ".claude/settings.local.json"
    settings.parent.mkdir()
    settings.write_text(json.dumps({"hooks": {"SessionEnd": [theirs]}}))
    for _ in range(2):
        result = init(tmp_path, "--channel", "war-room", "--close-on-end", "--force")
        assert result.returncode == 0, result.stderr
        assert json.loads(settings.read_text())["hooks"] == {"SessionEnd": [theirs, OUR_HOOK], "UserPromptSubmit": [OUR_HOOK]}
    plain = tmp_path / "plain"
    plain.mkdir()
    assert init(plain, "--channel", "war-room").returncode == 0
    assert json.loads((plain / ".claude/settings.local.json").read_text())["hooks"] == {"UserPromptSubmit": [OUR_HOOK]}


def test_flags_choose_owner_agent_dir_and_settings(tmp_path):
    project = tmp_path / "proj"
    project.mkdir()
    result = init(
        tmp_path, "--dir", "proj", "--settings", "elsewhere.json", "--owner", "bob", "--agent-id", "bot-7", "-y"
    )
    assert (result.returncode, result.stderr) == (0, NOTE)
    assert result.stdout.split("\n")[1] == f"created    {tmp_path / 'elsewhere.json'}"
    assert (project / "parley.env").read_text() == env_text(agent="bot-7", owner="bob")
    assert json.loads((tmp_path / "elsewhere.json").read_text())["enabledMcpjsonServers"] == ["parley"]
    assert (project / ".mcp.json").exists() and not (project / ".claude").exists()
    assert result.stdout.split("\n")[-5] == "  1. Give bot-7 a token: add <secret>:bot-7:bob to PARLEY_TOKENS"


def test_a_non_array_enabled_list_is_left_alone(tmp_path):
    (tmp_path / ".claude").mkdir()
    (tmp_path / ".claude/settings.local.json").write_text('{"enabledMcpjsonServers": "all"}\n')
    assert init(tmp_path, "--channel", "c", "--force").returncode == 0
    settings = json.loads((tmp_path / ".claude/settings.local.json").read_text())
    assert settings == {"enabledMcpjsonServers": "all", "hooks": {"UserPromptSubmit": [OUR_HOOK]}}


@pytest.mark.parametrize(
    ("existing", "expected", "line"),
    [
        ("node_modules\n/parley.env", "node_modules\n/parley.env\n*.bak-*\n", "updated  .gitignore (ignores parley.env, *.bak-*)"),
        ("*.bak-*\nparley.env\n", "*.bak-*\nparley.env\n", None),
        ("/*.bak-*\n/parley.env\n", "/*.bak-*\n/parley.env\n", None),
    ],
)
def test_gitignore_gets_only_what_is_missing(tmp_path, existing, expected, line):
    (tmp_path / ".gitignore").write_text(existing)
    result = init(tmp_path, "--channel", "c")
    assert result.returncode == 0
    assert (tmp_path / ".gitignore").read_text() == expected
    lines = result.stdout.split("\n")
    assert lines[3] == (line if line else "")


@pytest.mark.parametrize("args", [["--token", SECRET], [f"--token={SECRET}"]])
def test_a_token_flag_is_refused_and_never_echoed(tmp_path, args):
    result = init(tmp_path, "--channel", "c", *args)
    assert result.returncode == 1 and result.stdout == ""
    assert result.stderr == (
        "error: --token is not accepted: init writes the env reference ${PARLEY_TOKEN}, never a secret "
        "(paste the token into parley.env)\n"
    )
    assert SECRET not in result.stderr and snapshot(tmp_path) == {}


@pytest.mark.parametrize(
    ("args", "stderr"),
    [
        (["--bogus"], "error: unrecognized arguments: --bogus\n"),
        (["--channel"], "error: argument --channel: expected one argument\n"),
        (["--channel", "c", "--url"], "error: argument --url: expected one argument\n"),
        (["--channel", "c", "stray"], "error: unrecognized arguments: stray\n"),
        (["--channel", "c", "--token-env", "1BAD"], "error: --token-env must be a variable name matching ^[A-Za-z_][A-Za-z0-9_]*$\n"),
        (["--channel", "war\x1broom"], "error: --channel must not contain control characters\n"),
        (["--channel", "c", "--owner", "al\nice"], "error: --owner must not contain control characters\n"),
        (["--channel", "c", "--agent-id", "a\x7f"], "error: --agent-id must not contain control characters\n"),
        (["--channel", "c", "--dir", "missing"], "error: --dir missing is not a directory\n"),
    ],
)
def test_bad_flags_exit_1_with_one_line(tmp_path, args, stderr):
    result = init(tmp_path, *args)
    assert (result.returncode, result.stdout, result.stderr) == (1, "", stderr)
    assert snapshot(tmp_path) == {}


def test_no_owner_at_all_is_an_error(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "parley", "init", "--channel", "c"],
        env={k: v for k, v in clean_env(HOME=str(tmp_path)).items() if k != "USER"},
        cwd=tmp_path,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert (result.returncode, result.stderr) == (1, "error: --owner must not be empty (no $USER is set)\n")


def test_help_exits_0(tmp_path):
    for flag in ("-h", "--help"):
        result = init(tmp_path, flag)
        assert result.returncode == 0 and result.stdout.startswith("usage: parley init")
    assert snapshot(tmp_path) == {}


@pytest.mark.parametrize("answer", ["y", "n"])
def test_on_a_terminal_it_prompts_for_the_channel_and_asks_before_modifying(tmp_path, answer):
    (tmp_path / ".mcp.json").write_text('{"mcpServers": {}}')
    master, slave = os.openpty()
    try:
        os.write(master, f"war-room\n{answer}\n".encode())
        result = subprocess.run(
            [sys.executable, "-m", "parley", "init"],
            env=clean_env(USER="alice", HOME=str(tmp_path)),
            cwd=tmp_path,
            stdin=slave,
            capture_output=True,
            text=True,
            timeout=60,
        )
    finally:
        os.close(slave)
        os.close(master)
    lines = result.stdout.split("\n")
    assert lines[:4] == [
        "Channel [dogfood]: merged     .mcp.json",
        "created    .claude/settings.local.json",
        "created    parley.env",
        "Modify the existing files above? A backup of each is kept. [y/N] " + ("merged     .mcp.json" if answer == "y" else ""),
    ]
    if answer == "y":
        assert result.returncode == 0
        assert json.loads((tmp_path / ".mcp.json").read_text())["mcpServers"]["parley"] == mcp("war-room")
        assert result.stderr.startswith("backed up  .mcp.json \u2192 .mcp.json.bak-")
    else:
        assert (result.returncode, result.stderr) == (1, "Nothing written.\n")
        assert (tmp_path / ".mcp.json").read_text() == '{"mcpServers": {}}'
        assert not (tmp_path / "parley.env").exists()
