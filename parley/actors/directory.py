"""The channel directory: which channels exist, in creation order, with live heads.

``list`` and ``describe`` must not activate every channel actor, so the
directory keeps each descriptor and its head in memory. It is loaded from
the journal at start (the first event of every ``channel:*`` stream and a
count of its messages) and kept current by channel commits. Creations are
serialised by :attr:`lock`; across processes ``UNIQUE(stream_id, seq)`` on
the first event decides who created a channel.
"""

from __future__ import annotations

import hashlib
from typing import Any

import orjson

from ..domain.identity import Identity
from ..errors import IdempotencyConflict
from ..domain.outcomes import Replayed


class Directory:
    def __init__(self, backbone) -> None:
        self._backbone = backbone
        self._descriptors: dict[str, dict[str, Any]] = {}
        self._heads: dict[str, int] = {}
        self._seqs: dict[str, int] = {}
        self._archived: set[str] = set()
        self._create_keys: dict[tuple[str, str], tuple[str, str]] = {}

    async def load(self) -> None:
        self._descriptors.clear()
        self._heads.clear()
        self._seqs.clear()
        self._archived.clear()
        self._create_keys.clear()
        for _stream, data, head, archived, seq in await self._backbone.journal.channel_index():
            descriptor = data["descriptor"]
            self.add(descriptor, owner=descriptor.get("created_by", ""), idem=data.get("idem"))
            self._heads[descriptor["channel"]] = head
            self._seqs[descriptor["channel"]] = seq
            if archived:
                self._archived.add(descriptor["channel"])

    def add(self, descriptor: dict[str, Any], *, owner: str, idem: dict[str, Any] | None) -> None:
        slug = descriptor["channel"]
        self._descriptors[slug] = descriptor
        self._heads.setdefault(slug, 0)
        self._seqs.setdefault(slug, 1)
        if idem is not None:
            self._create_keys[(owner, idem["key"])] = (idem["fp"], slug)

    def exists(self, slug: str) -> bool:
        return slug in self._descriptors

    def count(self) -> int:
        return len(self._descriptors)

    def head(self, slug: str) -> int:
        return self._heads.get(slug, 0)

    def set_head(self, slug: str, head: int, *, seq: int | None = None, archived: bool = False) -> None:
        self._heads[slug] = head
        if seq is not None:
            self._seqs[slug] = seq
        if archived:
            self._archived.add(slug)

    def observe(self, slug: str, seq: int, type_: str) -> bool:
        """Account for an event another process committed; True if it was new here."""
        if seq <= self._seqs.get(slug, 0):
            return False
        self._seqs[slug] = seq
        if type_ == "message":
            self._heads[slug] = self._heads.get(slug, 0) + 1
        elif type_ == "channel_archived":
            self._archived.add(slug)
        return True

    def describe(self, slug: str) -> dict[str, Any]:
        out = dict(self._descriptors[slug])
        out["head"] = self._heads.get(slug, 0)
        if slug in self._archived:
            out["archived"] = True
        return out

    def describe_all(self) -> list[dict[str, Any]]:
        return [self.describe(slug) for slug in self._descriptors]

    @staticmethod
    def create_fingerprint(identity: Identity, body: dict[str, Any]) -> str:
        payload = {**body, "created_by": identity.owner}
        return hashlib.sha256(orjson.dumps(payload, option=orjson.OPT_SORT_KEYS)).hexdigest()

    def replay_create(self, identity: Identity, key: str, body: dict[str, Any]) -> Replayed | None:
        """An ``Idempotency-Key`` already used by this owner for a create."""
        known = self._create_keys.get((identity.owner, key))
        if known is None:
            return None
        fp, slug = known
        if fp != self.create_fingerprint(identity, body):
            raise IdempotencyConflict("Idempotency-Key was already used with a different request")
        out = dict(self._descriptors[slug])
        out["head"] = 0
        return Replayed("create", out)
