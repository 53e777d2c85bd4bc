"""``parley init`` flags, prompts, writes and output (contracts/mcp.md §7).

Flag errors exit 1 with one ``error: …`` line (not click/argparse's 2), a
token is refused (secrets only by env reference), and nothing contacts the
backbone. Every backup-needing change wants ``--force`` (or a yes on a TTY);
``--yes`` only skips prompts, it never consents to modifying files.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import sys
import time
from pathlib import Path

from ..atomic_file import atomic_write
from ..domain.text import has_control
from . import files

DEFAULT_URL = "http://127.0.0.1:4317"
DEFAULT_CHANNEL = "dogfood"
_TOKEN_ENV = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
REFUSAL = "Refusing to modify existing files without --force (non-interactive). Re-run with --force."


class InitError(Exception):
    """One ``error: …`` line on stderr, exit 1."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # argparse would exit 2
        raise InitError(message)


def _parser() -> _Parser:
    p = _Parser(
        prog="parley init",
        description="Write .mcp.json, the Claude Code hook settings and parley.env for this project. "
        "The token is referenced as ${PARLEY_TOKEN}, never written.",
        allow_abbrev=False,
    )
    p.add_argument("--url", default=DEFAULT_URL, help=f"backbone base URL (default {DEFAULT_URL})")
    p.add_argument("--channel", help=f'home channel (prompted; "{DEFAULT_CHANNEL}" with --yes or without a TTY)')
    p.add_argument("--owner", help="owner of the agent (default $USER)")
    p.add_argument("--agent-id", help="agent id (default <owner>-agent)")
    p.add_argument("--token-env", default="PARLEY_TOKEN", help="env var holding the token (default PARLEY_TOKEN)")
    p.add_argument("--dir", default=None, help="project directory (default the current one)")
    p.add_argument("--settings", default=None, help="Claude Code settings (default <dir>/.claude/settings.local.json)")
    p.add_argument("--http", action="store_true", help="use the Streamable HTTP transport at <url>/mcp")
    p.add_argument(
        "--close-on-end",
        action="store_true",
        help="also run the hook at Claude Code's SessionEnd: it closes the agent's parley session "
        "(a resumed Claude session continues where it stopped)",
    )
    p.add_argument("--force", action="store_true", help="modify existing files (a backup of each is kept)")
    p.add_argument("-y", "--yes", action="store_true", help="no prompts: take the defaults")
    p.add_argument("--dry-run", action="store_true", help="print the plan, write nothing")
    return p


def _refuse_token(argv: list[str]) -> None:
    if any(arg == "--token" or arg.startswith("--token=") for arg in argv):
        raise InitError(
            "--token is not accepted: init writes the env reference ${PARLEY_TOKEN}, never a secret "
            "(paste the token into parley.env)"
        )


def _executable() -> str:
    """The absolute path of the ``parley`` executable (next to this Python first)."""
    beside = Path(sys.executable).parent / "parley"
    if beside.is_file() and os.access(beside, os.X_OK):
        return os.path.abspath(beside)
    found = shutil.which("parley")
    if found:
        return os.path.abspath(found)
    raise InitError("cannot find the parley executable on PATH; install parley (pip install parley) and retry")


def _interactive(args: argparse.Namespace) -> bool:
    return not args.yes and sys.stdin.isatty()


def _options(args: argparse.Namespace, env: dict[str, str]) -> files.Options:
    channel = args.channel
    if channel is None:
        if _interactive(args):
            channel = input(f"Channel [{DEFAULT_CHANNEL}]: ").strip() or DEFAULT_CHANNEL
        else:
            channel = DEFAULT_CHANNEL
            print(f'note: no --channel given; using "{DEFAULT_CHANNEL}" (override with --channel <name>).', file=sys.stderr)
    owner = args.owner if args.owner is not None else env.get("USER", "")
    agent_id = args.agent_id if args.agent_id is not None else f"{owner}-agent"
    for flag, value in (("--channel", channel), ("--owner", owner), ("--agent-id", agent_id)):
        if has_control(value):
            raise InitError(f"{flag} must not contain control characters")
    for flag, value in (("--channel", channel), ("--owner", owner), ("--agent-id", agent_id)):
        if not value.strip():
            hint = " (no $USER is set)" if flag == "--owner" and args.owner is None else ""
            raise InitError(f"{flag} must not be empty{hint}")
    if not _TOKEN_ENV.match(args.token_env):
        raise InitError("--token-env must be a variable name matching ^[A-Za-z_][A-Za-z0-9_]*$")
    url = args.url.strip().rstrip("/")
    if has_control(url) or not url:
        raise InitError("--url must be a non-empty URL without control characters")
    return files.Options(url, channel, owner, agent_id, args.token_env, _executable(), http=args.http, close_on_end=args.close_on_end)


def _read(path: Path) -> bytes | None:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise InitError(f"cannot read {path}: {exc.strerror}") from None


def _label(path: Path, root: Path) -> str:
    try:
        return str(path.relative_to(root))
    except ValueError:
        return str(path)


def _confirm() -> bool:
    answer = input("Modify the existing files above? A backup of each is kept. [y/N] ")
    return answer.strip().lower() in ("y", "yes")


def _write(path: Path, content: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, content)


def run(argv: list[str], env: dict[str, str]) -> int:
    _refuse_token(argv)
    args = _parser().parse_args(argv)
    root = Path(args.dir).expanduser() if args.dir else Path.cwd()
    if not root.is_dir():
        raise InitError(f"--dir {root} is not a directory")
    root = root.resolve()
    settings = Path(args.settings).expanduser().absolute() if args.settings else root / ".claude" / "settings.local.json"
    opts = _options(args, env)

    targets = [
        (root / ".mcp.json", files.plan_json(".mcp.json", _read(root / ".mcp.json"), lambda d: files.merge_mcp(d, opts))),
        (settings, files.plan_json(_label(settings, root), _read(settings), lambda d: files.merge_settings(d, opts))),
        (root / "parley.env", files.plan_env("parley.env", _read(root / "parley.env"), opts)),
    ]
    gitignore = root / ".gitignore"
    gitignore_now = _read(gitignore)
    gitignore_new = files.gitignore_update(gitignore_now)
    gitignore_line = None
    if gitignore_new is not None:
        word = "created" if gitignore_now is None else "updated"
        gitignore_line = f"{word}  .gitignore (ignores {', '.join(files.GITIGNORE_ENTRIES)})"

    if args.dry_run:
        print("dry run: nothing is written. The plan:")
        for _, plan in targets:
            print(plan.line())
        if gitignore_line:
            print(gitignore_line)
        return 0
    if any(plan.needs_backup for _, plan in targets) and not args.force:
        if not _interactive(args):
            print(REFUSAL, file=sys.stderr)
            return 1
        for _, plan in targets:
            print(plan.line())
        if not _confirm():
            print("Nothing written.", file=sys.stderr)
            return 1

    stamp = time.time_ns() // 1_000_000
    for path, plan in targets:
        if plan.needs_backup:
            backup = path.with_name(f"{path.name}.bak-{stamp}")
            shutil.copy2(path, backup)
            print(f"backed up  {plan.label} \u2192 {plan.label}.bak-{stamp}", file=sys.stderr)
        if plan.writes:
            _write(path, plan.content)
        print(plan.line())
    if gitignore_new is not None:
        _write(gitignore, gitignore_new)
        print(gitignore_line)
    print(_next_steps(opts))
    return 0


def _next_steps(opts: files.Options) -> str:
    return "\n".join(
        [
            "",
            "Next steps:",
            f"  1. Give {opts.agent_id} a token: add <secret>:{opts.agent_id}:{opts.owner} to PARLEY_TOKENS",
            f"     on the server, or mint one: parley token mint {opts.agent_id} {opts.owner}",
            f"  2. Paste the secret into parley.env (export {opts.token_env}=<secret>).",
            "  3. source parley.env, then start Claude Code from that shell.",
        ]
    )


def main(argv: list[str]) -> None:
    try:
        code = run(argv, dict(os.environ))
    except InitError as exc:
        print(f"error: {exc}", file=sys.stderr)
        code = 1
    except OSError as exc:
        print(f"error: could not write the files: {exc.strerror or type(exc).__name__}", file=sys.stderr)
        code = 1
    except (EOFError, KeyboardInterrupt):
        print("error: cancelled; nothing written", file=sys.stderr)
        code = 1
    sys.exit(code)


__all__ = ["main", "run"]
