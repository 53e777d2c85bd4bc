"""The backbone: every service of one server process, wired together.

It owns the journal, the actor registries, the token store, the shared
seatbelt and the commit signals, and offers the channel operations the HTTP
layer calls. It never speaks HTTP; it returns outcome values
(``domain/outcomes.py``) and raises :class:`~parley.errors.ParleyError`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import orjson
import trio

from ..clock import Clock
from ..config import Settings
from ..domain import channel as rules
from ..domain.identity import Identity
from ..domain.message import check_channel_name, check_read_args, sanitize_message_fields
from ..domain.outcomes import Outcome
from ..domain.seatbelt import Seatbelt
from ..errors import ParleyError, Unavailable, UnknownChannel
from ..journal.backend import JournalBackend
from ..journal.journal import Journal
from ..journal.types import StoredEvent
from .channel_actor import (
    Append,
    Archive,
    ChannelActor,
    Claim,
    PipelineCounts,
    PutArtifact,
    Query,
    stream_id,
)
from .creator import CREATOR, ChannelCreator, CreateChannel
from .directory import Directory
from .encoded_log import EncodedBudget
from .failures import map_journal_errors
from .presence import Presence
from .runtime import Registry
from .signals import CommitSignals, Stamper
from .tailer import JournalTailer
from .streams import StreamSlots
from .tokens import TokenStore

log = logging.getLogger("parley.backbone")

#: Commands one channel actor decides and commits together. Per-request
#: traffic never has this many waiting; ``append_many`` senders do, and a
#: bigger batch spreads one fsync over more messages (ADR-0039).
CHANNEL_BATCH_MAX = 1024


class Backbone:
    def __init__(
        self, settings: Settings, *, clock: Clock | None = None, journal: JournalBackend | None = None
    ) -> None:
        self.settings = settings
        self.clock = clock or Clock()
        self.journal: JournalBackend = journal or Journal.open(settings.database_url)
        self.seatbelt = Seatbelt(
            max_posts_per_minute=settings.max_posts_per_minute,
            global_max_posts_per_minute=settings.global_max_posts_per_minute,
            max_creates_per_minute=settings.max_channel_creates_per_minute,
        )
        #: On Postgres several processes share the journal: seatbelt windows are
        #: checked and recorded in the database with every append (ADR-0025).
        self.shared_windows = self.journal.shared and settings.shared_seatbelts
        self.limits = rules.Limits(
            max_messages_per_channel=settings.max_messages_per_channel,
            max_read_limit=settings.max_read_limit,
            max_artifact_bytes=settings.max_artifact_bytes,
            max_channel_artifact_bytes=settings.max_channel_artifact_bytes,
            max_total_artifact_bytes=settings.max_total_artifact_bytes,
        )
        self.tokens = TokenStore(self.journal, settings.tokens)
        self.presence = Presence(self.clock, settings.presence_ttl_s)
        self.tokens.on_resolve = self.presence.seen
        self.directory = Directory(self)
        self.signals = CommitSignals()
        self.stamper = Stamper(self.clock)
        self.artifact_bytes = 0
        #: Bytes of artifacts decided in batches whose commit is under way:
        #: they count against the global cap for every channel until the
        #: commit moves them into ``artifact_bytes`` or its failure drops them.
        self.pending_artifact_bytes = 0
        self.channels = Registry(
            lambda name: ChannelActor(name, self),
            mailbox_size=settings.mailbox_size,
            idle_timeout=settings.actor_idle_s,
            batch_max=CHANNEL_BATCH_MAX,
        )
        #: One actor decides every channel create of this process (ADR-0047).
        self.creates = Registry(
            lambda key: ChannelCreator(self), mailbox_size=settings.mailbox_size, idle_timeout=settings.actor_idle_s
        )
        self.streams = StreamSlots.from_settings(settings)
        #: The byte cap of every channel's encoded messages together (ADR-0041).
        self.encoded_budget = EncodedBudget(settings.read_cache_bytes)
        #: Channel commits lost to another process's append (then decided again).
        self.lost_races = 0
        #: Batches the channel actors decided while the one before committed (ADR-0057).
        self.pipeline = PipelineCounts()
        self.tailer = JournalTailer(self)
        from .session_service import SessionService

        self.sessions: Any = SessionService(self)
        self._stopped = trio.Event()
        self.shutting_down = False

    # -- lifecycle ---------------------------------------------------------------

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Start the journal, load what must be in memory, and host the actors."""
        await self.journal.start()
        try:
            await self.tokens.load()
            await self.directory.load()
            self.artifact_bytes = await self.journal.total_artifact_bytes()
            self.stamper.observe(await self.journal.last_position())
            async with trio.open_nursery() as nursery:
                await nursery.start(self.channels.run)
                await nursery.start(self.creates.run)
                await nursery.start(self.tailer.run)
                nursery.start_soon(self._heartbeat)
                # Tails wake after the committing actor's replies (ADR-0054).
                await nursery.start(self.signals.run_waker)
                if self.sessions is not None:
                    await nursery.start(self.sessions.run)
                task_status.started()
                await self._stopped.wait()
                self.shutting_down = True
                self.signals.notify_all()
                if self.sessions is not None:
                    await self.sessions.shutdown()
                await self.creates.shutdown()
                await self.channels.shutdown()
                nursery.cancel_scope.cancel()
        finally:
            with trio.CancelScope(shield=True):
                await self.journal.aclose()

    @property
    def open_streams(self) -> int:
        """Open SSE and WebSocket tails (their slots: :class:`StreamSlots`)."""
        return self.streams.open

    async def _heartbeat(self) -> None:
        """One timer for every live tail's keep-alive (``stream_heartbeat_s``).

        A timeout around each tail's every wait cost a cancel scope per
        delivered frame: 10% of the server's main thread when fanning out to
        64 subscribers (benchmarks/RESULTS.md).
        """
        while True:
            await trio.sleep(self.settings.stream_heartbeat_s)
            if self.open_streams:
                self.signals.beat()

    async def readiness(self) -> str | None:
        """Why this process cannot serve writes, or None: the schema, then the writer."""
        reason = await self.journal.readiness()
        if reason is None:
            failure = await self.journal.writer_failure()
            if failure is not None:
                reason = f"the journal writer cannot commit ({failure})"
        return reason

    def stop(self) -> None:
        self._stopped.set()

    # -- commit fan-out ----------------------------------------------------------

    def on_channel_commit(self, name: str, state: rules.ChannelState, committed: list[StoredEvent]) -> None:
        """After a commit (or a reload) of ``name``: heads, stamps, and wake its waiters."""
        actor = self.channels.peek(name)
        if actor is not None and actor.state is state:
            actor.committed_head = state.head
        self.directory.set_head(name, state.head, seq=state.seq, archived=state.archived)
        if committed:
            self.stamper.observe(committed[-1].position)
        self.signals.notify(name)

    # -- channel operations ------------------------------------------------------

    def _known(self, name: str) -> str:
        slug = check_channel_name(name)
        if not self.directory.exists(slug):
            raise UnknownChannel(f"Unknown channel: {rules.js_quote(rules.fragment(slug))}")
        return slug

    async def _resolve(self, name: str) -> str:
        """Like :meth:`_known`, but a channel another process created just now
        (not yet seen by the tailer) is looked up in the journal first."""
        slug = check_channel_name(name)
        if not self.directory.exists(slug):
            first = await self.journal.read_stream(stream_id(slug), 0, 1)
            if first and first[0].type == "channel_created":
                data = first[0].data
                self.directory.add(data["descriptor"], owner=data["descriptor"].get("created_by", ""), idem=data.get("idem"))
        return self._known(slug)

    async def _ask(self, name: str, command: Any) -> Any:
        return await self.channels.ask(await self._resolve(name), command)

    async def create_channel(self, body: dict[str, Any], identity: Identity, idem_key: str | None = None) -> Outcome:
        """Decided and committed by the one creator actor, in mailbox order (ADR-0047)."""
        return await self.creates.ask(CREATOR, CreateChannel(body, identity, idem_key))

    def list_channels(self) -> dict[str, Any]:
        return {"channels": self.directory.describe_all()}

    def describe(self, name: str) -> dict[str, Any]:
        slug = self._known(name)
        return self.directory.describe(slug)

    def subscribe(self, name: str) -> dict[str, Any]:
        slug = self._known(name)
        return {"cursor": self.directory.head(slug)}

    async def append(self, name: str, body: dict[str, Any], identity: Identity, idem_key: str | None = None) -> Outcome:
        return await self._ask(name, Append(body, identity, idem_key))

    async def append_many(self, name: str, bodies: list[Any], identity: Identity) -> list[Outcome | ParleyError]:
        """Append each of ``bodies`` as if each came alone (ADR-0039): one result
        or error per body, in order; a refused body does not stop the others."""
        return await self.collect(await self.deliver_many(name, bodies, identity))

    async def deliver_many(self, name: str, bodies: list[Any], identity: Identity) -> list[Any]:
        """Put an ``Append`` for each body in the channel actor's mailbox, in
        order, without yielding while there is room (so they are decided in
        one batch, in this order); a full mailbox makes this wait. Returns the
        reply slots (or the error of a body refused on the way) for
        :meth:`collect`."""
        from ..errors import InvalidRequest

        slug = await self._resolve(name)
        replies: list[Any] = []
        for body in bodies:
            if not isinstance(body, dict):
                replies.append(InvalidRequest("request body must be a JSON object"))
                continue
            try:
                replies.append(await self.channels.deliver(slug, Append(body, identity)))
            except ParleyError as error:
                replies.append(error)
        return replies

    async def collect(self, replies: list[Any]) -> list[Outcome | ParleyError]:
        """Wait for every reply of :meth:`deliver_many` (the ask timeout for them all)."""
        results: list[Outcome | ParleyError] = []
        timeout = self.channels.ask_timeout
        with trio.move_on_after(timeout if timeout is not None else float("inf")):
            for reply in replies:
                if isinstance(reply, ParleyError):
                    results.append(reply)
                    continue
                try:
                    # One commit answers a whole batch: wait only when needed.
                    results.append(reply.outcome() if reply.done else await reply.wait())
                except ParleyError as error:
                    results.append(error)
        late = Unavailable("the actor did not answer in time", retry_after=1)
        results.extend(late for _ in range(len(replies) - len(results)))
        return results

    async def claim(
        self,
        name: str,
        op: str,
        body: dict[str, Any],
        identity: Identity,
        assignee: dict[str, str] | None = None,
        idem_key: str | None = None,
    ) -> Outcome:
        return await self._ask(name, Claim(op, body, identity, assignee, idem_key))

    async def read_page(self, name: str, body: dict[str, Any], build: Callable[[list[bytes], int], bytes]) -> bytes:
        """``/read``'s page: ``build(the stored messages' JSON bytes, the cursor after them)``
        (ADR-0041); a page of a channel in memory is built once and kept (ADR-0058).

        The route's checks in their order: slug, channel, cursor, limit. Like
        :meth:`_committed_bytes`, a readable actor is read outside its mailbox.
        """
        slug = check_channel_name(name)
        max_limit = self.limits.max_read_limit

        def bounds(head: int) -> tuple[int, int]:
            cursor, limit = check_read_args(body, head, max_limit)
            return cursor, min(head, cursor + limit)

        actor = self.channels.peek(slug) if self.directory.exists(slug) else None
        if actor is not None and actor.readable:
            start, stop = bounds(actor.committed_head)
            return actor.committed_page(start, stop, build)

        def page(s: rules.ChannelState) -> bytes:
            start, stop = bounds(s.head)
            owner = self.channels.peek(slug)
            if owner is not None and owner.state is s and stop <= owner.committed_head:
                return owner.committed_page(start, stop, build)
            return build([orjson.dumps(m) for m in s.messages[start:stop]], stop)

        return await self._ask(slug, Query(page))

    async def read_frames_from(self, name: str, cursor: int, limit: int) -> tuple[list[bytes], int]:
        """The sanitised JSON of the committed messages after ``cursor`` (at most
        ``limit``) and the head: what a live tail sends, encoded once for all
        its subscribers (ADR-0041/0042)."""
        encoded, _stop, head = await self._committed_bytes(name, lambda h: (cursor, min(h, cursor + limit)), clean=True)
        return encoded, head

    async def _committed_bytes(self, slug: str, bounds, *, clean: bool) -> tuple[list[bytes], int, int]:
        """Encoded committed messages ``bounds(head) -> (start, stop)``, with ``stop`` and the head.

        A channel whose actor is in memory with a usable state is read without
        queueing behind its appends, from the committed prefix only (an
        acknowledged append is always in it: the head moves before the ack);
        otherwise the read goes through the actor, which activates or reloads it.
        """
        actor = self.channels.peek(slug) if self.directory.exists(slug) else None
        if actor is not None and actor.readable:
            head = actor.committed_head
            start, stop = bounds(head)
            return actor.committed_bytes(start, stop, clean=clean), stop, head

        def page(s: rules.ChannelState) -> tuple[list[bytes], int, int]:
            start, stop = bounds(s.head)
            owner = self.channels.peek(slug)
            if owner is not None and owner.state is s and stop <= owner.committed_head:
                return owner.committed_bytes(start, stop, clean=clean), stop, s.head
            view = (sanitize_message_fields(m) for m in s.messages[start:stop]) if clean else s.messages[start:stop]
            return [orjson.dumps(m) for m in view], stop, s.head

        return await self._ask(slug, Query(page))

    async def read_from(self, name: str, cursor: int, limit: int) -> tuple[list[dict[str, Any]], int]:
        """Messages after ``cursor`` (at most ``limit``) and the head, for tails and sessions."""

        actor = self.channels.peek(name)
        if actor is not None and not actor._stale:
            # Fast path for live tails: committed messages straight from the
            # actor's state, without queueing behind appends in its mailbox.
            head = actor.committed_head
            return actor.state.messages[cursor : min(head, cursor + limit)], head

        def page(s: rules.ChannelState) -> tuple[list[dict[str, Any]], int]:
            return s.messages[cursor : cursor + limit], s.head

        return await self._ask(name, Query(page))

    async def claims(self, name: str) -> dict[str, Any]:
        now_ms = self.clock.now_ms()
        return {"claims": await self._ask(name, Query(lambda s: rules.live_claims(s, now_ms)))}

    async def put_artifact(self, name: str, sha256: str, data: bytes) -> Outcome:
        return await self._ask(name, PutArtifact(sha256, data))

    async def get_artifact(self, name: str, sha256: str) -> bytes | None:
        slug = self._known(name)
        if len(sha256) != 64:
            return None
        with map_journal_errors():  # a hash mismatch is logged and counted by the journal (ADR-0023)
            return await self.journal.get_artifact(slug, sha256)

    async def archive(self, name: str, identity: Identity) -> Outcome:
        return await self._ask(name, Archive(identity))

    def check_channel(self, name: str) -> str:
        """Slug and existence checks (the first two checks of every channel operation)."""
        return self._known(name)


__all__ = ["Backbone", "ParleyError"]
