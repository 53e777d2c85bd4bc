"""Every CLI failure as one line: ``parley: <cause>; <fix>`` (never a traceback).

:class:`GuardedGroup` is the ``parley`` command group: it prints click's usage
errors as one line and turns any exception a command lets escape into
:func:`explain`'s line with exit status 1. Exception arguments are never
printed wholesale (they can hold a URL with a password, a token or a
statement's values); a line is built from the exception's type and from the
causes :mod:`parley.journal.diagnose` recognises. ``PARLEY_DEBUG=1`` re-raises
for the traceback, for developers.
"""

from __future__ import annotations

import errno
import os
import sys
from typing import Any

import click

from .cli_options import DATABASE_URL_META

#: Exit status after Ctrl-C (128 + SIGINT), as shells report it.
INTERRUPTED = 130


def say(message: str) -> None:
    click.echo(f"parley: {message}", err=True)


def listen_failure(exc: BaseException, host: str, port: int) -> str | None:
    """The line for a socket that cannot be bound (port in use, no permission, foreign address)."""
    from .journal.diagnose import causes

    address = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    for cause in causes(exc):
        if not isinstance(cause, OSError):
            continue
        if cause.errno == errno.EADDRINUSE:
            return f"cannot listen on {address}: address already in use; stop the other server or pass --port"
        if cause.errno == errno.EACCES:
            return f"cannot listen on {address}: permission denied (ports below 1024 need privileges); pass --port 4317"
        if cause.errno == errno.EADDRNOTAVAIL:
            return f"cannot listen on {address}: {host} is not an address of this machine; pass --host 127.0.0.1"
        if type(cause).__name__ == "gaierror":
            return f"cannot listen on {address}: unknown host {host}; pass --host 127.0.0.1"
    return None


def explain(exc: BaseException, database_url: str | None) -> str:
    """One safe line for an unexpected exception."""
    try:
        from .journal import diagnose

        line = diagnose.explain(exc, database_url)
    except Exception:  # noqa: BLE001 - the diagnosis must never be the failure
        line = None
    if line is not None:
        return line
    if isinstance(exc, ModuleNotFoundError) and exc.name:
        return f"the module {exc.name} is missing; reinstall parley (pip install parley)"
    if isinstance(exc, PermissionError | FileNotFoundError | IsADirectoryError | NotADirectoryError):
        what = exc.strerror or type(exc).__name__
        return f"{what}: {exc.filename}" if exc.filename else what
    return (
        f"unexpected {type(exc).__name__}; this is a bug, please report it "
        "(PARLEY_DEBUG=1 shows the traceback)"
    )


def _usage_line(exc: click.UsageError) -> str:
    from .cli_options import SettingError

    message = " ".join(exc.format_message().split())
    if isinstance(exc, SettingError) or exc.ctx is None:
        return message
    return f"{message} (see `{exc.ctx.command_path} -h`)"


class GuardedGroup(click.Group):
    """The top-level guard: one line and a non-zero exit for every failure."""

    def main(self, args: Any = None, prog_name: str | None = None, complete_var: str | None = None,
             standalone_mode: bool = True, **extra: Any) -> Any:
        try:
            code = super().main(args, prog_name or "parley", complete_var, standalone_mode=False, **extra)
        except click.UsageError as exc:
            say(_usage_line(exc))
            sys.exit(exc.exit_code)
        except click.ClickException as exc:
            say(exc.format_message())
            sys.exit(exc.exit_code)
        except (click.Abort, KeyboardInterrupt):
            sys.exit(INTERRUPTED)
        sys.exit(code if isinstance(code, int) else 0)

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except (click.ClickException, click.exceptions.Exit, click.Abort, KeyboardInterrupt, SystemExit):
            raise
        except Exception as exc:
            if os.environ.get("PARLEY_DEBUG") == "1":
                raise
            say(explain(exc, ctx.meta.get(DATABASE_URL_META)))
            ctx.exit(1)


def silence_stdout() -> None:
    """After EPIPE (``parley read … | head``), stop Python from complaining when it flushes stdout at exit."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):
        pass
