"""``parley outbox …``: inspect and recover a client outbox file (docs/outbox.md, ADR-0018).

``list`` shows rows (``--pending``/``--inflight``/``--done``/``--dead``/
``--aborted``, ``--json``); ``requeue ID [--new-client-id ID]`` sends a dead
or aborted row again; ``abort ID`` gives up on one; ``drain`` delivers every
open row to ``--url``/``PARLEY_URL`` with ``--token``/``PARLEY_TOKEN``. The
file is ``--path FILE`` or ``PARLEY_OUTBOX``.
"""

from __future__ import annotations

import json
import sqlite3
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timezone
from typing import Any

import click



def _fail(message: str, code: int = 1) -> None:
    click.echo(f"parley outbox: {message}", err=True)
    sys.exit(code)


def _path_option(func):
    return click.option(
        "--path",
        "path",
        envvar="PARLEY_OUTBOX",
        required=True,
        show_envvar=True,
        type=click.Path(dir_okay=False),
        help="The outbox file.",
    )(func)


@contextmanager
def _open(path: str) -> Iterator[Any]:
    """The outbox at ``path``; any SQLite or OS failure becomes one line and exit 1."""
    from .client import Outbox

    try:
        with Outbox(path) as box:
            yield box
    except (sqlite3.Error, OSError) as exc:
        _fail(f"cannot use the outbox {path}: {exc}; check the path, its permissions and that it is an outbox file")


def _when(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    return datetime.fromtimestamp(seconds, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


@click.group()
def outbox() -> None:
    """A client outbox: posts kept on disk until delivered exactly once."""


@outbox.command("list")
@_path_option
@click.option("--pending", "states", flag_value="pending", multiple=True, help="Only pending rows.")
@click.option("--inflight", "states", flag_value="inflight", multiple=True, help="Only inflight rows.")
@click.option("--done", "states", flag_value="done", multiple=True, help="Only delivered rows.")
@click.option("--dead", "states", flag_value="dead", multiple=True, help="Only rows the server refused.")
@click.option("--aborted", "states", flag_value="aborted", multiple=True, help="Only aborted rows.")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line.")
def list_rows(path: str, states: tuple[str, ...], as_json: bool) -> None:
    """List rows in enqueue order (all states unless filtered)."""
    with _open(path) as box:
        rows = box.rows(states or None)
    for row in rows:
        if as_json:
            click.echo(json.dumps(row.to_json(), sort_keys=True))
            continue
        target = row.lane.partition(":")[2]
        detail = f"cursor {row.cursor}" if row.state == "done" and row.cursor is not None else (row.last_error or "")
        click.echo(
            f"{row.client_id}  {row.state:<8}  {row.kind:<6}  {target}  attempts={row.attempts}"
            f"  created={_when(row.created_at)}  delivered={_when(row.delivered_at)}  {detail}".rstrip()
        )
    if not as_json and not rows:
        click.echo("(no rows)", err=True)


@outbox.command()
@_path_option
@click.argument("client_id")
@click.option("--new-client-id", default=None, help="Send it as a new row with this msg_id (a ULID); the old row is aborted.")
def requeue(path: str, client_id: str, new_client_id: str | None) -> None:
    """Send a dead or aborted row again."""
    from .client import OutboxStateError

    with _open(path) as box:
        try:
            now_pending = box.requeue(client_id, new_client_id)
        except OutboxStateError as exc:
            _fail(exc.message)
    click.echo(f"{now_pending} pending")


@outbox.command()
@_path_option
@click.argument("client_id")
def abort(path: str, client_id: str) -> None:
    """Give up on a pending or dead row."""
    from .client import OutboxStateError

    with _open(path) as box:
        try:
            box.abort(client_id)
        except OutboxStateError as exc:
            _fail(exc.message)
    click.echo(f"{client_id} aborted")


@outbox.command()
@_path_option
@click.option("--url", envvar="PARLEY_URL", default="http://127.0.0.1:4317", show_default=True, show_envvar=True)
@click.option("--token", envvar="PARLEY_TOKEN", default=None, show_envvar=True, help="Bearer token.")
@click.option("--patience", type=float, default=60.0, show_default=True, help="Give up after this many seconds without delivering anything.")
@click.option("--quiet", is_flag=True, help="Do not print each settled row.")
def drain(path: str, url: str, token: str | None, patience: float, quiet: bool) -> None:
    """Deliver every open row; exit 0 when none is left, 1 if some stay pending, 2 if some went dead."""
    from .client import Parley

    def show(row) -> None:
        if not quiet:
            detail = f"cursor {row.cursor}" if row.state == "done" else row.last_error
            click.echo(f"{row.client_id} {row.state} {detail}", nl=True)
            sys.stdout.flush()

    if not token:
        _fail("no token: pass --token or set PARLEY_TOKEN")
    if not url.startswith(("http://", "https://")):
        _fail(f"--url {url!r} must start with http:// or https://")
    try:
        with _open(path) as box, Parley(url, token) as client:
            result = box.drain(client, patience=patience, on_settled=show)
    except KeyboardInterrupt:
        _fail("interrupted; undelivered rows stay in the outbox for the next drain", 130)
    if result.busy:
        _fail(f"another process is draining {path}; try again when it is done")
    click.echo(f"delivered {len(result.delivered)}, dead {len(result.dead)}, pending {result.pending}", err=True)
    if result.pending:
        _fail(f"{result.pending} row(s) still pending: {url} did not answer for {patience:g} s; run drain again later")
    if result.dead:
        sys.exit(2)


__all__ = ["outbox"]
