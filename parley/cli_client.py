"""``parley post`` / ``parley read``: a running server from a shell, through the SDK.

Humans cannot mint ULIDs by hand; ``post`` lets the SDK mint the ``msg_id``
(kept across its retries, so a retried post is stored once) and prints
``CURSOR MSG_ID``. ``read`` prints one line per message, or ``--json`` one
compact JSON object per line, and ``--follow`` keeps tailing over SSE until
Ctrl-C (exit 0). The server comes from ``--url`` / ``PARLEY_URL``; the bearer
token only from ``PARLEY_TOKEN`` (a flag would land in shell history and in
``ps``; ADR-0019). Every failure is one line: the server's own message for a
wire error, a cause and a fix when the server cannot be reached.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import click

from .cli_errors import silence_stdout

DEFAULT_URL = "http://127.0.0.1:4317"
MESSAGE_TYPES = ("note", "finding", "status", "question", "answer", "steer", "claim")


def _fail(message: str) -> None:
    click.echo(f"parley: {message}", err=True)
    sys.exit(1)


url_option = click.option(
    "--url", envvar="PARLEY_URL", default=DEFAULT_URL, show_default=True, show_envvar=True,
    help="The parley server.",
)


#: What to do about the refusals a newcomer meets first (the wire message names only the cause).
_FIXES = {
    "unauthorized": "check PARLEY_TOKEN: the server knows the tokens in its PARLEY_TOKENS and those "
    "`parley token mint AGENT OWNER` made",
    "unknown_channel": "check the name, or create it with `parley post --create CHANNEL BODY`",
}


@contextmanager
def connected(url: str, *, token_needed: bool) -> Iterator[Any]:
    """A :class:`parley.client.Parley`; SDK errors inside become one line and exit 1."""
    from parley.client import Parley, ParleyError, TransportError

    token = os.environ.get("PARLEY_TOKEN") or None
    if token_needed and token is None:
        _fail("posting needs a token: set PARLEY_TOKEN (mint one with `parley token mint AGENT OWNER`)")
    try:
        with Parley(url, token, retries=2, backoff=0.05) as client:
            yield client
    except TransportError:
        _fail("cannot reach the parley server (connection failed); is `parley serve` running? (--url / PARLEY_URL)")
    except ParleyError as exc:
        fix = _FIXES.get(exc.code)
        _fail(f"{exc.message} ({exc.code}); {fix}" if fix else f"{exc.message} ({exc.code})")
    except ValueError as exc:  # httpx refuses a malformed --url
        _fail(f"invalid --url: {type(exc).__name__}; use http://HOST:PORT")


@click.command()
@url_option
@click.argument("channel")
@click.argument("body")
@click.option("--type", "type_", type=click.Choice(MESSAGE_TYPES), default="note", show_default=True)
@click.option("--target", default=None, help="What a claim claims (with --type claim).")
@click.option("--thread", default=None, help="ULID of the thread's first message.")
@click.option("--reply-to", default=None, help="ULID of the message answered.")
@click.option("--create", is_flag=True, help="Create CHANNEL first if it does not exist.")
def post(url: str, channel: str, body: str, type_: str, target: str | None, thread: str | None,
         reply_to: str | None, create: bool) -> None:
    """Append BODY to CHANNEL (msg_id minted here); print 'CURSOR MSG_ID'."""
    from parley.client import ChannelExists, UnknownChannel, new_ulid

    fields: dict[str, Any] = {"body": body, "msg_id": new_ulid()}
    for name, value in (("thread", thread), ("reply_to", reply_to)):
        if value is not None:
            fields[name] = value
    if type_ == "claim" and target is None:
        _fail("--type claim needs --target WHAT")
    with connected(url, token_needed=True) as client:

        def send() -> dict[str, Any]:
            if type_ == "claim":
                return client.claim(channel, target, **fields)
            if target is not None:
                fields["target"] = target  # the server refuses it on non-claims, in its own words
            return client.append(channel, type=type_, **fields)

        try:
            result = send()
        except UnknownChannel as exc:
            if not create:
                _fail(f"{exc.message} ({exc.code}); pass --create to create it")
            try:
                client.create_channel(channel)
            except ChannelExists:  # created meanwhile by someone else: fine
                pass
            result = send()
    if result.get("outcome") == "already_claimed":
        by = result["by"]
        _fail(f"{target} is already claimed by {by['owner']}/{by['agent_id']} (msg_id {by['msg_id']})")
    click.echo(f"{result['cursor']} {result['message']['msg_id']}")


def _line(cursor: int | None, message: dict[str, Any], as_json: bool) -> str:
    if as_json:
        import orjson

        return orjson.dumps({"cursor": cursor, "message": message}).decode()
    body = str(message.get("body", "")).replace("\\", "\\\\").replace("\n", "\\n").replace("\t", "\\t")
    who = f"{message.get('owner', '?')}/{message.get('agent_id', '?')}"
    return f"{cursor} {message.get('ts', '')} {message.get('type', '?')} {who} {body}"


@click.command()
@url_option
@click.argument("channel")
@click.option("--since", type=click.IntRange(min=0), default=0, show_default=True,
              help="Print the messages after this cursor.")
@click.option("--follow", "-f", is_flag=True, help="Keep printing new messages until Ctrl-C.")
@click.option("--json", "as_json", is_flag=True, help="One compact JSON object {cursor, message} per line.")
def read(url: str, channel: str, since: int, follow: bool, as_json: bool) -> None:
    """Print CHANNEL's messages: 'CURSOR TS TYPE OWNER/AGENT BODY' per line."""
    cursor = since
    try:
        with connected(url, token_needed=False) as client:
            for page in client.read_all(channel, cursor):
                for offset, message in enumerate(page["messages"], start=1):
                    click.echo(_line(cursor + offset, message, as_json))
                cursor = page["cursor"]
            if follow:
                sys.stdout.flush()
                for item in client.tail(channel, since=cursor):
                    click.echo(_line(item["cursor"], item["message"], as_json))
                    sys.stdout.flush()
    except KeyboardInterrupt:
        sys.exit(0)
    except BrokenPipeError:
        silence_stdout()
