"""The top-level guard (parley/cli_errors.py): any escaping exception is one safe line."""

from __future__ import annotations

import click
import pytest
from click.testing import CliRunner

from parley.cli_errors import GuardedGroup


def guarded(exc: BaseException) -> click.Group:
    @click.group(cls=GuardedGroup)
    def group() -> None:
        pass

    @group.command()
    def boom() -> None:
        raise exc

    return group


@pytest.mark.parametrize(
    ("exc", "expected"),
    [
        (RuntimeError("postgresql://u:hunter2@h/db"), "parley: unexpected RuntimeError; this is a bug, please report it (PARLEY_DEBUG=1 shows the traceback)"),
        (ModuleNotFoundError("no psycopg", name="psycopg"), "parley: the module psycopg is missing; reinstall parley (pip install parley)"),
        (PermissionError(13, "Permission denied", "/srv/x"), "parley: Permission denied: /srv/x"),
    ],
)
def test_an_unexpected_exception_is_one_line_without_its_arguments(exc, expected, monkeypatch):
    monkeypatch.delenv("PARLEY_DEBUG", raising=False)
    result = CliRunner().invoke(guarded(exc), ["boom"], catch_exceptions=False)
    assert result.exit_code == 1
    assert result.stderr.splitlines() == [expected]
    assert "hunter2" not in result.stderr


def test_parley_debug_shows_the_traceback(monkeypatch):
    monkeypatch.setenv("PARLEY_DEBUG", "1")
    with pytest.raises(RuntimeError):
        CliRunner().invoke(guarded(RuntimeError("x")), ["boom"], catch_exceptions=False)


def test_ctrl_c_exits_130_quietly():
    result = CliRunner().invoke(guarded(KeyboardInterrupt()), ["boom"], catch_exceptions=False)
    assert result.exit_code == 130
    assert "Traceback" not in result.stderr and "Aborted" not in result.stderr
