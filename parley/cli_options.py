"""Click options whose flag and env var share one validator (:mod:`parley.config`).

A :class:`Setting` type runs the same parser as :func:`parley.config.from_env`
and names where the bad value came from: ``invalid --port "x": …`` for a flag,
``invalid PORT "x": …`` for the variable (click's ``envvar=`` reads it). The
error is a :class:`SettingError`, which the CLI prints as its one line.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

import click
from click.core import ParameterSource

from . import config
from .database_url import DEFAULT as DEFAULT_DATABASE_URL

#: ``ctx.meta`` key under which a command records its database URL (for error lines).
DATABASE_URL_META = "parley.database_url"


class SettingError(click.UsageError):
    """A bad flag or env var value; the message is the whole line (no usage banner).

    Exit status 1, as for every other configuration error (the bin contract's).
    """

    exit_code = 1

    def format_message(self) -> str:
        return self.message


def source_name(ctx: click.Context | None, param: click.Parameter | None) -> str:
    """The flag (``--port``) or env var (``PORT``) the value of ``param`` came from."""
    if param is None:
        return "value"
    if ctx is not None and ctx.get_parameter_source(param.name) is ParameterSource.ENVIRONMENT:
        names = [param.envvar] if isinstance(param.envvar, str) else list(param.envvar or ())
        for name in names:
            if os.environ.get(name):
                return name
    return max(param.opts, key=len) if param.opts else param.name


class Setting(click.ParamType):
    """A click type backed by one of :mod:`parley.config`'s ``parse_*(name, raw)`` functions."""

    def __init__(self, name: str, parse: Callable[[str, str], Any]) -> None:
        self.name = name
        self.parse = parse

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        if not isinstance(value, str):
            return value
        try:
            return self.parse(source_name(ctx, param), value)
        except config.ConfigError as exc:
            raise SettingError(str(exc), ctx) from None


def int_setting(field: str) -> Setting:
    _name, _default, low, high = config.INT_SETTINGS[field]
    return Setting("integer", lambda name, raw: config.parse_int(name, raw, low=low, high=high))


PORT = Setting("port", config.parse_port)
DATABASE_URL = Setting("url", config.parse_database_url)
READ_AUTH = Setting("open|token", config.parse_read_auth)


def int_option(field: str, help: str | None = None) -> Callable[[Any], Any]:
    """``--max-streams`` etc. with ``envvar=`` and the bounds of :data:`config.INT_SETTINGS`."""
    envvar, default, low, high = config.INT_SETTINGS[field]
    bound = f"{low}..{high}" if high is not None else f">= {low}"
    text = f"{help + ' ' if help else ''}({bound}, default {default})"
    return click.option(f"--{field.replace('_', '-')}", field, type=int_setting(field), default=None,
                        envvar=envvar, show_envvar=True, help=text)


def _remember_url(ctx: click.Context, _param: click.Parameter, value: str | None) -> str | None:
    if value is not None:
        ctx.meta[DATABASE_URL_META] = value
    return value


def database_url_option(fn: Callable[..., Any] | None = None, *, default: str | None = DEFAULT_DATABASE_URL):
    """``--database-url`` (env ``PARLEY_DATABASE_URL``), checked by the one URL parser."""
    option = click.option(
        "--database-url",
        type=DATABASE_URL,
        envvar="PARLEY_DATABASE_URL",
        default=default,
        show_default=default is not None,
        show_envvar=True,
        callback=_remember_url,
        help="SQLAlchemy URL of the journal database (sqlite:///FILE or postgresql://…).",
    )
    return option if fn is None else option(fn)
