"""Who is speaking: the identity a bearer token resolves to."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Identity:
    agent_id: str
    owner: str

    def as_dict(self) -> dict[str, str]:
        return {"agent_id": self.agent_id, "owner": self.owner}


def token_digest(token: str) -> str:
    """The at-rest form of a bearer token (sha256 hex); tokens are never stored."""
    return hashlib.sha256(token.encode("utf-8")).hexdigest()
