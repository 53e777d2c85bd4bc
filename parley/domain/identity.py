"""Who is speaking: the identity a bearer token resolves to.

A token's at-rest form is :func:`parley.domain.tokens.token_digest` (one
digest rule for bearer and continuation tokens).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Identity:
    agent_id: str
    owner: str

    def as_dict(self) -> dict[str, str]:
        return {"agent_id": self.agent_id, "owner": self.owner}

