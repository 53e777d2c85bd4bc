"""``parley token …``: mint, revoke, rotate and list bearer tokens offline.

These commands append to the journal's ``tokens`` stream directly (the same
``token_minted {digest, agent_id, owner}`` / ``token_revoked {digests}``
events as :mod:`parley.actors.tokens`), deciding against the folded stream
and appending with the matching ``expected_seq``; a lost race with another
writer reloads and decides again. Only sha256 digests are journaled: a
minted token is printed once and can never be shown again.

The commands work with the server stopped or running. A server loads the
``tokens`` stream when it starts, and a running server also folds token events
committed by other processes (this CLI included) through its journal tailer
within a poll interval (ADR-0007); so a change made here while the server is
stopped takes effect on its next start, and one made while it runs takes
effect within moments, with no restart. (The admin API, ``POST /admin/tokens``,
does the same through the server.)
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import click

from .cli_journal import database_url_option, fail, opened_store
from .domain import bearer
from .domain.identity import Identity

if TYPE_CHECKING:
    from .journal.store import JournalStore

#: The stream of :mod:`parley.actors.tokens` (its rules: :mod:`parley.domain.bearer`).
STREAM = bearer.STREAM
#: Digest characters shown by ``list`` and the minimum accepted by ``--digest``.
PREFIX_LEN = 12
MIN_PREFIX_LEN = 8
_RETRIES = 5

_RESTART_NOTE = "a running server applies this within moments; a stopped one on its next start"


class TokenError(Exception):
    """A token command cannot proceed; the message is one safe line."""


def load(store: JournalStore) -> tuple[int, dict[str, Identity]]:
    """``(last seq, {digest: identity})`` folded from the ``tokens`` stream."""
    active: dict[str, Identity] = {}
    seq = 0
    for event in store.read_stream(STREAM):
        bearer.apply(active, event.type, event.data)
        seq = event.seq
    return seq, active


def _commit(store: JournalStore, decide: Callable[[dict[str, Identity]], tuple[list, Any]]) -> Any:
    """Decide against the current stream and append; on a lost race, reload and retry."""
    from .journal.errors import ConcurrencyError

    for _ in range(_RETRIES):
        seq, active = load(store)
        events, result = decide(active)
        if not events:
            return result
        try:
            store.append(STREAM, events, seq)
        except ConcurrencyError:
            continue
        return result
    raise TokenError("the tokens stream kept changing under us; try again")


def match_digest(active: dict[str, Any], prefix: str) -> str | None:
    """The active digest starting with ``prefix`` (None if none; error if ambiguous/too short)."""
    prefix = prefix.strip().lower()
    if len(prefix) < MIN_PREFIX_LEN or any(c not in "0123456789abcdef" for c in prefix):
        raise TokenError(f"--digest needs at least {MIN_PREFIX_LEN} hex characters of a digest")
    found = [d for d in active if d.startswith(prefix)]
    if len(found) > 1:
        raise TokenError(f"digest prefix {prefix} is ambiguous ({len(found)} tokens); give more characters")
    return found[0] if found else None


def _targets(active: dict[str, Identity], agent_id: str | None, digest: str | None) -> list[str]:
    """As the server decides, after resolving a ``--digest`` prefix to one digest."""
    if digest is not None:
        match = match_digest(active, digest)
        if match is None:
            return []
        digest = match
    return bearer.targets(active, agent_id, digest)


def mint(store: JournalStore, agent_id: str, owner: str) -> tuple[str, str]:
    """Mint a token; returns ``(token, digest)``."""
    from .domain.tokens import token_digest
    from .journal.types import NewEvent

    token = bearer.new_bearer_token()
    digest = token_digest(token)
    event = NewEvent(*bearer.minted(digest, agent_id, owner))
    _commit(store, lambda _active: ([event], None))
    return token, digest


def revoke(store: JournalStore, *, agent_id: str | None = None, digest: str | None = None) -> list[str]:
    """Revoke the tokens of ``agent_id`` or the one matching ``digest``; returns revoked digests."""
    from .journal.types import NewEvent

    def decide(active):
        targets = _targets(active, agent_id, digest)
        if not targets:
            return [], []
        return [NewEvent(*bearer.revoked(targets))], targets

    return _commit(store, decide)


def rotate(store: JournalStore, agent_id: str, owner: str, digest: str | None = None) -> tuple[str, str, list[str]]:
    """Mint a new token and revoke the old ones (of ``agent_id``, or ``digest``) in one append."""
    from .domain.tokens import token_digest
    from .journal.types import NewEvent

    token = bearer.new_bearer_token()
    new_digest = token_digest(token)

    def decide(active):
        old = _targets(active, agent_id, digest)
        return [NewEvent(*e) for e in bearer.rotation(new_digest, agent_id, owner, old)], old

    revoked = _commit(store, decide)
    return token, new_digest, revoked


def _identity_arg(value: str, what: str) -> str:
    if not value.strip():
        fail(f"{what} must not be empty")
    if any(ord(c) < 32 for c in value):
        fail(f"{what} must not contain control characters")
    return value


@click.group()
def token() -> None:
    """Mint, revoke, rotate and list bearer tokens (journaled as sha256 digests).

    Changes are appended to the journal's 'tokens' stream. A stopped server
    picks them up on its next start; a running one within moments (its
    journal tailer follows the stream), no restart needed.
    """


def _guarded(fn: Callable[[], Any]) -> Any:
    try:
        return fn()
    except TokenError as e:
        fail(str(e))


@token.command(name="mint")
@database_url_option
@click.argument("agent_id")
@click.argument("owner")
def mint_cmd(database_url: str, agent_id: str, owner: str) -> None:
    """Mint a token for AGENT_ID of OWNER and print it ONCE on stdout."""
    _identity_arg(agent_id, "AGENT_ID")
    _identity_arg(owner, "OWNER")
    with opened_store(database_url) as store:
        tok, digest = _guarded(lambda: mint(store, agent_id, owner))
    click.echo(tok)
    click.echo(
        f"parley: minted a token for {agent_id} ({owner}), digest {digest[:PREFIX_LEN]}; "
        f"this token will NOT be shown again, store it now ({_RESTART_NOTE})",
        err=True,
    )


@token.command(name="revoke")
@database_url_option
@click.option("--agent-id", default=None, help="Revoke every journaled token of this agent.")
@click.option("--digest", default=None, help=f"Revoke the token whose digest starts with this (>= {MIN_PREFIX_LEN} hex).")
def revoke_cmd(database_url: str, agent_id: str | None, digest: str | None) -> None:
    """Revoke journaled tokens (seed tokens from PARLEY_TOKENS cannot be revoked)."""
    if (agent_id is None) == (digest is None):
        fail("give exactly one of --agent-id or --digest")
    with opened_store(database_url) as store:
        revoked = _guarded(lambda: revoke(store, agent_id=agent_id, digest=digest))
    if not revoked:
        target = f"agent {agent_id}" if agent_id is not None else f"digest {digest}"
        fail(f"no journaled token matches {target}")
    for d in revoked:
        click.echo(f"revoked {d[:PREFIX_LEN]}")
    click.echo(f"parley: {len(revoked)} token(s) revoked; {_RESTART_NOTE}", err=True)


@token.command(name="rotate")
@database_url_option
@click.argument("agent_id")
@click.argument("owner")
@click.option("--digest", default=None, help="Revoke only this token (digest prefix) instead of all of AGENT_ID's.")
def rotate_cmd(database_url: str, agent_id: str, owner: str, digest: str | None) -> None:
    """Mint a new token for AGENT_ID of OWNER and revoke the old one(s), atomically.

    Prints the new token ONCE on stdout.
    """
    _identity_arg(agent_id, "AGENT_ID")
    _identity_arg(owner, "OWNER")
    with opened_store(database_url) as store:
        tok, new_digest, revoked = _guarded(lambda: rotate(store, agent_id, owner, digest))
    click.echo(tok)
    old = ", ".join(d[:PREFIX_LEN] for d in revoked) or "none"
    click.echo(
        f"parley: new token digest {new_digest[:PREFIX_LEN]} (revoked: {old}); "
        f"this token will NOT be shown again, store it now ({_RESTART_NOTE})",
        err=True,
    )


@token.command(name="list")
@database_url_option
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def list_cmd(database_url: str, as_json: bool) -> None:
    """List journaled tokens: digest prefix, agent and owner (never the tokens).

    Seed tokens from PARLEY_TOKENS live only in the server's environment and
    are not listed.
    """
    with opened_store(database_url) as store:
        _seq, active = load(store)
    rows = [
        {"digest": d[:PREFIX_LEN], "agent_id": identity.agent_id, "owner": identity.owner}
        for d, identity in active.items()
    ]
    if as_json:
        import orjson

        click.echo(orjson.dumps(rows, option=orjson.OPT_INDENT_2).decode())
        return
    if not rows:
        click.echo("no journaled tokens")
        return
    width = max(len(r["agent_id"]) for r in rows)
    for r in rows:
        click.echo(f"{r['digest']}  {r['agent_id']:<{width}}  {r['owner']}")


from .cli_session_key import rotate_session_key  # noqa: E402 - registered last, kept in its own module

token.add_command(rotate_session_key)
