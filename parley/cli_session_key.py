"""``parley token rotate-session-key``: a new continuation-token key (ADR-0024).

The key file keeps the old key as the previous one, so tokens already issued
keep working and replays of old turns still answer the very token first
issued. Servers read the file when they start: restart them (every worker,
every host sharing the file) to sign with the new key. Never prints a key.
"""

from __future__ import annotations

import os

import click

from .cli_journal import database_url_option, fail


@click.command(name="rotate-session-key")
@database_url_option
@click.option(
    "--key-file",
    default=None,
    help="The session key file (default: $PARLEY_SESSION_KEY_FILE, else <sqlite file>.key, else ~/.parley/session.key).",
)
def rotate_session_key(database_url: str, key_file: str | None) -> None:
    """Make a new session key; the current one stays as the previous key."""
    from . import session_keys
    from .config import Settings

    if os.environ.get("PARLEY_SESSION_SECRET"):
        fail(
            "PARLEY_SESSION_SECRET is set, so servers ignore the key file: rotate by moving the old value "
            "to PARLEY_SESSION_SECRET_PREVIOUS and setting a new PARLEY_SESSION_SECRET"
        )
    settings = Settings(database_url=database_url, session_key_file=key_file or os.environ.get("PARLEY_SESSION_KEY_FILE"))
    path = session_keys.key_file_path(settings)
    try:
        kept = session_keys.rotate(path)
    except session_keys.SessionKeyError as exc:
        fail(str(exc))
    except OSError as exc:
        fail(f"cannot rotate the session key file {path}: {exc.strerror or type(exc).__name__}")
    previous = "the previous key still re-issues old tokens" if kept > 1 else "there was no previous key"
    click.echo(f"rotated the session key in {path} ({previous}); restart the server (every worker) to sign with it")
