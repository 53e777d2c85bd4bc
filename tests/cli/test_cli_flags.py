"""Issue 16 item 4: flags and env vars share one validator; ``--version``; ``-h`` everywhere."""

from __future__ import annotations

from importlib.metadata import version

import click
import pytest

from parley.cli import main
from tests.support.process import clean_env, run_cli

from . import run

CASES = [
    # (flag, env var, value, bound)
    ("--max-posts-per-minute", "PARLEY_MAX_POSTS_PER_MINUTE", "-5", ">= 1"),
    ("--max-read-limit", "PARLEY_MAX_READ_LIMIT", "0", ">= 1"),
    ("--max-channels", "PARLEY_MAX_CHANNELS", "-1", ">= 1"),
    ("--max-messages-per-channel", "PARLEY_MAX_MESSAGES_PER_CHANNEL", "ten", ">= 1"),
    ("--max-streams", "PARLEY_MAX_STREAMS", "0", ">= 1"),
    ("--workers", "PARLEY_WORKERS", "0", ">= 1"),
    ("--port", "PORT", "70000", "in [0, 65535]"),
    ("--port", "PARLEY_PORT", "-1", "in [0, 65535]"),
]


@pytest.mark.parametrize(("flag", "variable", "value", "bound"), CASES)
def test_a_bad_flag_and_the_same_bad_variable_read_the_same(flag, variable, value, bound, tmp_path):
    db = f"sqlite:///{tmp_path / 'parley.db'}"
    by_flag = run_cli(["serve", flag, value], clean_env(PARLEY_DATABASE_URL=db), tmp_path)
    by_env = run_cli(["serve"], clean_env(PARLEY_DATABASE_URL=db, **{variable: value}), tmp_path)
    for result, name in ((by_flag, flag), (by_env, variable)):
        assert result.returncode == 1, result.stderr
        assert result.stdout == ""
        assert result.stderr.splitlines() == [f'parley: invalid {name} "{value}": must be an integer {bound}']
    assert not (tmp_path / "parley.db").exists()  # refused before touching the database


def test_read_auth_flag_and_variable_read_the_same(tmp_path):
    by_flag = run("serve", "--read-auth", "maybe")
    assert by_flag.exit_code == 1
    assert by_flag.stderr.splitlines() == ["parley: invalid --read-auth: must be 'open' or 'token'"]
    by_env = run_cli(["serve"], clean_env(PARLEY_READ_AUTH="maybe"), tmp_path)
    assert by_env.returncode == 1
    assert by_env.stderr.splitlines() == ["parley: invalid PARLEY_READ_AUTH: must be 'open' or 'token'"]


def test_a_bad_flag_is_refused_even_with_a_good_variable(tmp_path):
    result = run_cli(["serve", "--max-read-limit", "0"], clean_env(PARLEY_MAX_READ_LIMIT="5"), tmp_path)
    assert result.stderr.splitlines() == ['parley: invalid --max-read-limit "0": must be an integer >= 1']


def test_version_prints_the_package_version(tmp_path):
    result = run_cli(["--version"], clean_env(), tmp_path)
    assert result.returncode == 0
    assert result.stdout == f"parley {version('parley')}\n"


def _command_paths(group: click.Group, prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    paths = [prefix]
    for name, command in group.commands.items():
        if isinstance(command, click.Group):
            paths += _command_paths(command, (*prefix, name))
        else:
            paths.append((*prefix, name))
    return paths


@pytest.mark.parametrize("path", _command_paths(main), ids=lambda p: " ".join(p) or "parley")
def test_dash_h_is_help_on_every_command(path):
    result = run(*path, "-h")
    assert result.exit_code == 0, result.stderr
    assert result.stdout.lower().startswith("usage: ")  # `parley init` parses its flags with argparse (§7)
    assert "-h, --help" in result.stdout or "[-h]" in result.stdout


def test_a_flag_replaces_a_bad_variable(tmp_path):
    """The flag wins, so the variable it replaces is not validated (nor used)."""
    from parley.config import from_env

    env = {"PARLEY_MAX_READ_LIMIT": "0", "PORT": "abc", "PARLEY_DATABASE_URL": "sqlite://"}
    settings = from_env(env, max_read_limit=7, port=0, database_url="sqlite:///x.db")
    assert (settings.max_read_limit, settings.port, settings.database_url) == (7, 0, "sqlite:///x.db")


def test_the_cli_loads_no_server_or_client_stack_for_help(tmp_path):
    """`parley --help` stays fast: nothing heavy is imported at module level of the CLI."""
    import subprocess
    import sys

    probe = "import sys, parley.cli; print(sorted(m for m in ('httpx', 'sqlalchemy', 'trio', 'mcp', 'quart') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True, cwd=tmp_path).stdout
    assert out.strip() == "[]"
