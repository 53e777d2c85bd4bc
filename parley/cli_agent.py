"""``parley hook`` and ``parley init``: thin click shells around :mod:`parley.hook` and :mod:`parley.scaffold`."""

from __future__ import annotations

import click

_PASS_THROUGH = {"ignore_unknown_options": True, "allow_extra_args": True}


@click.command(context_settings=_PASS_THROUGH)
@click.option(
    "--end-idle", "end_idle_days", type=click.FloatRange(min=0), metavar="DAYS", default=None,
    help="Instead of a turn: end (park and close) the hook sessions in PARLEY_STATE_DIR whose state file "
    "was not written for DAYS; a resumed Claude session continues where it stopped.",
)
def hook(end_idle_days: float | None) -> None:
    """Claude Code UserPromptSubmit (and SessionEnd) hook: reads the hook JSON on stdin; always exits 0.

    Env: PARLEY_URL, PARLEY_CHANNEL, PARLEY_TOKEN (or CAUCUS_*), PARLEY_STATE_DIR
    (default ~/.parley). See docs/hook-and-init.md.
    """
    from .hook.run import main

    main(end_idle_days)


@click.command(context_settings={**_PASS_THROUGH, "help_option_names": []}, add_help_option=False)
@click.pass_context
def init(ctx: click.Context) -> None:
    """Write .mcp.json and the Claude Code hook settings for this project (see --help)."""
    from .scaffold.cli import main

    main(list(ctx.args))
