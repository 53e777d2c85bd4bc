"""Bearer-token rules: the ``tokens`` stream's events, its fold, and what mint/revoke/rotate append.

Why one module: the server (:mod:`parley.actors.tokens`, under a lock, through
the journal writer) and the offline CLI (:mod:`parley.cli_token`, straight to
the store) both decide token changes against the folded stream. They must
write the same events and read them the same way, or a token minted by one
would not resolve (or not revoke) in the other. Only sha256 digests are ever
journaled (:func:`parley.domain.tokens.token_digest`).
"""

from __future__ import annotations

import base64
import secrets
from collections.abc import Iterable, Mapping, MutableMapping
from typing import Any, Final

from parley.domain.identity import Identity

__all__ = [
    "STREAM",
    "TOKEN_MINTED",
    "TOKEN_REVOKED",
    "apply",
    "minted",
    "new_bearer_token",
    "revoked",
    "rotation",
    "targets",
]

#: The journal stream that holds minted and revoked bearer tokens.
STREAM: Final = "tokens"
TOKEN_MINTED: Final = "token_minted"
TOKEN_REVOKED: Final = "token_revoked"

Event = tuple[str, dict[str, Any]]


def new_bearer_token() -> str:
    """``tok_`` + base64url(32 random bytes), unpadded."""
    return "tok_" + base64.urlsafe_b64encode(secrets.token_bytes(32)).rstrip(b"=").decode()


def apply(active: MutableMapping[str, Identity], event_type: str, data: Mapping[str, Any]) -> bool:
    """Fold one ``tokens`` event into ``active`` (digest → identity); True if it revoked.

    Unknown event types are ignored, so a newer writer's extra events do not
    break an older reader.
    """
    if event_type == TOKEN_MINTED:
        active[data["digest"]] = Identity(data["agent_id"], data["owner"])
    elif event_type == TOKEN_REVOKED:
        for digest in data["digests"]:
            active.pop(digest, None)
        return True
    return False


def targets(active: Mapping[str, Identity], agent_id: str | None, digest: str | None) -> list[str]:
    """The journaled tokens a revoke/rotate hits: the one ``digest`` (exact), else all of ``agent_id``'s."""
    if digest is not None:
        return [digest] if digest in active else []
    return [d for d, identity in active.items() if identity.agent_id == agent_id]


def minted(digest: str, agent_id: str, owner: str) -> Event:
    return TOKEN_MINTED, {"digest": digest, "agent_id": agent_id, "owner": owner}


def revoked(digests: Iterable[str]) -> Event:
    return TOKEN_REVOKED, {"digests": list(digests)}


def rotation(new_digest: str, agent_id: str, owner: str, old: list[str]) -> list[Event]:
    """A rotate's one append: the new token, then the revocation of the old ones (if any)."""
    events = [minted(new_digest, agent_id, owner)]
    if old:
        events.append(revoked(old))
    return events
