"""``parley mcp`` (and ``parley serve``'s ``/mcp``) stay cheap to import: the SDK loads on use."""

from __future__ import annotations

import logging
import sys

import click


@click.command("mcp")
def mcp_command() -> None:
    """Run the MCP server over stdio (env PARLEY_URL, PARLEY_TOKEN, PARLEY_CHANNEL)."""
    logging.basicConfig(stream=sys.stderr, level=logging.WARNING, format="%(message)s")
    from .stdio import run

    run()
