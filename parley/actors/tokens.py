"""Bearer tokens: seed tokens from the environment plus a journaled dynamic layer.

Only sha256 digests are kept, in memory and in the journal (stream
``tokens``). Seed tokens are immutable and cannot be revoked (Caucus
semantics); minted, rotated and revoked tokens are journaled so they survive
a restart (D9). Changes are serialised by a lock and committed before they
are answered; a lost cross-process race reloads the stream and decides again.

A revocation also reaches what was authorized earlier: :meth:`revoked_event`
gives an open connection an event that is set the moment its token stops
resolving, here or (through the journal tailer) in another process.
"""

from __future__ import annotations

import trio

from ..config import SeedToken
from ..domain import bearer
from ..domain.identity import Identity
from ..domain.tokens import token_digest
from ..journal.errors import ConcurrencyError
from ..journal.types import NewEvent

STREAM = bearer.STREAM


class TokenStore:
    def __init__(self, journal, seeds: tuple[SeedToken, ...] = ()) -> None:
        self._journal = journal
        self._seed = {token_digest(s.token): Identity(s.agent_id, s.owner) for s in seeds}
        self._dynamic: dict[str, Identity] = {}
        self._seq = 0
        self._lock = trio.Lock()
        #: Token digest → the event set when that token stops resolving.
        self._watchers: dict[str, trio.Event] = {}
        #: Called with every identity a token resolves to (presence).
        self.on_resolve = None

    async def load(self) -> None:
        """Fold the ``tokens`` stream into the dynamic layer."""
        self._dynamic = {}
        self._seq = 0
        for event in await self._journal.read_stream(STREAM):
            self._apply(event.type, event.data)
            self._seq = event.seq
        self._fire_revoked()

    def _apply(self, type_: str, data: dict) -> None:
        if bearer.apply(self._dynamic, type_, data):
            self._fire_revoked()

    def _fire_revoked(self) -> None:
        for digest in [d for d in self._watchers if not self.is_current(d)]:
            self._watchers.pop(digest).set()

    def is_current(self, digest: str) -> bool:
        """The token with this digest still resolves (no presence side effect)."""
        return digest in self._dynamic or digest in self._seed

    def revoked_event(self, token: str) -> trio.Event:
        """An event set once ``token`` no longer resolves (already set if it does not now)."""
        digest = token_digest(token)
        event = self._watchers.get(digest)
        if event is None:
            event = self._watchers[digest] = trio.Event()
            if not self.is_current(digest):
                self._watchers.pop(digest).set()
        return event

    def observe(self, event) -> None:
        """An event of the ``tokens`` stream committed by another process."""
        if event.seq == self._seq + 1:
            self._apply(event.type, event.data)
            self._seq = event.seq

    def resolve(self, token: str | None) -> Identity | None:
        """The identity of a bearer token, dynamic layer first; ``None`` if unknown."""
        if not token:
            return None
        digest = token_digest(token)
        identity = self._dynamic.get(digest) or self._seed.get(digest)
        if identity is not None and self.on_resolve is not None:
            self.on_resolve(identity)
        return identity

    def configured(self) -> bool:
        return bool(self._seed or self._dynamic)

    def list(self) -> list[dict[str, str]]:
        """Dynamic tokens by digest prefix (never the tokens themselves)."""
        return [
            {"digest": d, "agent_id": i.agent_id, "owner": i.owner, "kind": "minted"}
            for d, i in self._dynamic.items()
        ] + [
            {"digest": d, "agent_id": i.agent_id, "owner": i.owner, "kind": "seed"}
            for d, i in self._seed.items()
        ]

    async def _commit(self, decide) -> object:
        """Decide against current state and append; reload and retry on a lost race."""
        async with self._lock:
            for _ in range(5):
                events, result = decide()
                if not events:
                    return result
                try:
                    await self._journal.append(STREAM, events, self._seq)
                except ConcurrencyError:
                    await self.load()
                    continue
                for event in events:
                    self._apply(event.type, event.data)
                self._seq += len(events)
                return result
            raise ConcurrencyError(STREAM, self._seq, None)

    async def mint(self, agent_id: str, owner: str) -> str:
        token = bearer.new_bearer_token()
        event = NewEvent(*bearer.minted(token_digest(token), agent_id, owner))
        await self._commit(lambda: ([event], None))
        return token

    async def revoke(self, *, agent_id: str | None = None, digest: str | None = None) -> bool:
        def decide():
            targets = bearer.targets(self._dynamic, agent_id, digest)
            if not targets:
                return [], False
            return [NewEvent(*bearer.revoked(targets))], True

        return bool(await self._commit(decide))

    async def rotate(self, agent_id: str, owner: str, digest: str | None = None) -> str:
        """Mint a new token for the identity and revoke the target's old ones, atomically."""
        token = bearer.new_bearer_token()
        new_digest = token_digest(token)

        def decide():
            old = bearer.targets(self._dynamic, agent_id, digest)
            return [NewEvent(*e) for e in bearer.rotation(new_digest, agent_id, owner, old)], None

        await self._commit(decide)
        return token
