"""The session service: starts, continues, describes and closes sessions.

It owns the session actor registry, the nursery the accepted turns run in,
the token secret, the per-identity open-session counts and the in-flight
marks. Turns reach channels only through the backbone's channel operations,
so an action has exactly the semantics of the channel route it mirrors.

Decisions the contract leaves open (ADR material):

* **Delivery order.** Messages of several channels are merged by their
  backbone stamp (the ``#``-suffixed counter of ``ts``), which is assigned in
  decision order and raised past every committed journal position; each
  channel's own order is exact (a k-way merge never reorders one input).
* **Action idempotency keys** are ``session/<id>/<turn>/<index>``: a retried
  turn N (after a crash or a lost commit, same token) replays the channel
  writes of the first attempt; a retry with a *different* action at the same
  index gets that channel route's ``idempotency_conflict`` as its result.
* **Turn lease.** Every continue takes the ``session_leases`` row by
  compare-and-set (TTL ``wait`` + 30 s, which covers the longest possible
  wait, so it is not renewed) and releases it in the commit's transaction,
  where a changed epoch rolls the commit back (→ ``contended``). The start
  turn takes no lease: nobody else knows the id yet. Close takes no lease; it
  appends with the expected seq, so a racing turn elsewhere loses its commit.
* **Start Idempotency-Key** is reserved in the ``meta`` table
  (``session-start/<sha256(agent, owner, key)>`` → session id) before the
  start turn runs, first writer wins across processes; a concurrent start
  with the same key gets ``turn_in_flight``.
* **Session limit** counts open sessions per identity in this process
  (loaded from the journal at start); on Postgres a start also reserves a
  slot in the database, counted against the identity's open sessions in the
  journal and every process's running starts, so the limit is exact across
  processes (ADR-0025).
"""

from __future__ import annotations

import hashlib
import heapq
import logging
import re
import socket
import os
import uuid
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import orjson
import sqlalchemy as sa
import trio

from .. import session_keys
from ..domain import session as S
from ..domain.handlers import Handler, TurnView, load_handlers
from ..domain.identity import Identity
from ..domain.text import fragment
from ..errors import (
    InvalidCursor,
    InvalidRequest,
    ParleyError,
    SessionLimit,
    TurnInFlight,
    Unavailable,
)
from ..journal import queries, schema
from ..journal.errors import ConcurrencyError
from ..journal.store import cas_lease, get_lease, last_event, put_meta_if_absent
from ..journal.windows import release_session_slot, reserve_session_slot
from ..session_keys import SessionKeys
from .runtime import Registry
from .session_actor import (
    Close,
    Continue,
    Describe,
    Peek,
    SessionActor,
    Start,
    TurnHandle,
    TurnRequest,
)
from .signals import wait_any

if TYPE_CHECKING:
    from .backbone import Backbone

log = logging.getLogger("parley.sessions")

LEASE_SLACK_S = 30.0
#: Most sessions ``GET /v1/sessions`` describes (the newest ones).
LIST_LIMIT = 100
SHUTDOWN_GRACE_S = 4.0
#: A start's database slot stops counting after this long even if its
#: process died before committing or giving it back (milliseconds).
SESSION_SLOT_TTL_MS = 300_000
_SESSION_ID = re.compile(r"^ses_[0-9A-HJKMNP-TV-Z]{26}$")
_HISTORY_ALL = 1 << 62


def _stamp_key(item: Mapping[str, Any]) -> tuple[int, str]:
    ts = item["message"].get("ts")
    if isinstance(ts, str) and "#" in ts:
        head, _, counter = ts.rpartition("#")
        if counter.isdigit():
            return int(counter), head
    return 0, str(ts)


class SessionService:
    def __init__(self, backbone: Backbone) -> None:
        self.backbone = backbone
        self.settings = backbone.settings
        self.journal = backbone.journal
        self.registry = Registry(
            lambda sid: SessionActor(sid, self),
            mailbox_size=backbone.settings.mailbox_size,
            idle_timeout=backbone.settings.actor_idle_s,
        )
        self.handlers: dict[str, Handler] = load_handlers()
        #: Continuation-token keys (ADR-0024), loaded by :meth:`run`.
        self.keys = SessionKeys(b"")
        self.holder = f"{_local_scope()}:{os.getpid()}:{uuid.uuid4().hex[:12]}"
        #: session id -> the handle of its running turn (steps 8, describe, passivation).
        self.in_flight: dict[str, TurnHandle] = {}
        #: open sessions known to this process: id -> identity, and the counts per identity.
        self.owners: dict[str, tuple[str, str]] = {}
        self.open_counts: dict[tuple[str, str], int] = {}
        #: open session id -> its cursors after its latest turn seen here (``/metrics`` lag, ADR-0016).
        self.cursors: dict[str, dict[str, int]] = {}
        self.pending_starts: dict[tuple[str, str], int] = {}
        self.starting: set[str] = set()
        self._nursery: trio.Nursery | None = None
        self._idle = trio.Event()
        self._idle.set()

    @property
    def secret(self) -> bytes:
        """The current token key (what new turns sign with)."""
        return self.keys.current

    # -- lifecycle -----------------------------------------------------------------

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        keys = await trio.to_thread.run_sync(session_keys.load, self.settings)
        # A secret the database still holds (servers before ADR-0024; `serve`
        # moves it out first) only re-issues the tokens it minted.
        legacy = await self.journal.get_meta(session_keys.LEGACY_META_KEY)
        if legacy is not None:
            keys = keys.with_previous(legacy.encode("utf-8"))
        self.keys = keys
        for sid, ident in (await self.backbone.read_model(_open_sessions)).items():
            self._opened(sid, ident)
        open_ids = list(self.owners)
        self.cursors = await self.backbone.read_model(lambda engine: queries.latest_subscriptions(engine, open_ids))
        async with trio.open_nursery() as nursery:
            await nursery.start(self.registry.run)
            async with trio.open_nursery() as turns:
                self._nursery = turns
                task_status.started()
                await trio.sleep_forever()

    async def shutdown(self) -> None:
        """Let running turns finish (waits end early: they commit ``parked``), then stop."""
        with trio.move_on_after(SHUTDOWN_GRACE_S):
            while self.in_flight:
                handles = list(self.in_flight.values())
                for handle in handles:
                    await handle.done.wait()
        await self.registry.shutdown()
        if self._nursery is not None:
            self._nursery.cancel_scope.cancel()

    def spawn(self, fn, *args: Any) -> None:
        if self._nursery is None:
            raise Unavailable("server is starting; retry shortly", retry_after=1)
        self._nursery.start_soon(fn, *args)

    # -- bookkeeping called by actors ----------------------------------------------

    def turn_committed(self, actor: SessionActor, *, start: bool, identity: Identity) -> None:
        if start:
            self._opened(actor.session_id, (identity.agent_id, identity.owner))
        if actor.state is not None:
            self.cursors[actor.session_id] = dict(actor.state.subscriptions)
        cell = self.registry._cells.get(actor.session_id)
        if cell is not None and cell.actor is not actor:
            # The actor was passivated and re-activated while the turn ran.
            cell.actor.stale = True  # type: ignore[attr-defined]

    def _opened(self, session_id: str, ident: tuple[str, str]) -> None:
        # Idempotent: our own commit and the tailer may both report a start.
        if session_id not in self.owners:
            self.owners[session_id] = ident
            self.open_counts[ident] = self.open_counts.get(ident, 0) + 1

    def _closed(self, session_id: str) -> None:
        ident = self.owners.pop(session_id, None)
        self.cursors.pop(session_id, None)
        if ident is not None:
            self.open_counts[ident] = max(0, self.open_counts.get(ident, 0) - 1)

    def observe(self, event) -> None:
        """A ``session:*`` event seen by the journal tailer (ours or another process's)."""
        sid = event.stream_id[len("session:") :]
        cell = self.registry._cells.get(sid)
        if cell is not None and event.seq > cell.actor.seq:  # type: ignore[attr-defined]
            cell.actor.stale = True  # type: ignore[attr-defined]  # reload before the next command
        if event.type == S.SESSION_STARTED:
            self._opened(sid, (event.data["agent_id"], event.data["owner"]))
        elif event.type == S.TURN_COMMITTED and sid in self.owners:
            self.cursors[sid] = dict(event.data.get("subscriptions") or {})
        elif event.type == S.SESSION_CLOSED:
            self._closed(sid)

    def lag(self) -> list[tuple[str, str, str, str, int]]:
        """``(agent_id, owner, session_id, channel, undelivered)`` per subscription of every open
        session whose latest turn this process has seen; read at scrape time (``/metrics``)."""
        head = self.backbone.directory.head
        rows = []
        for sid, subscriptions in list(self.cursors.items()):
            ident = self.owners.get(sid)
            if ident is None:
                continue
            for channel, cursor in subscriptions.items():
                rows.append((ident[0], ident[1], sid, channel, max(0, head(channel) - cursor)))
        return rows

    def start_finished(
        self, identity: Identity, start_key: str | None, *, committed: bool, session_id: str | None = None
    ) -> None:
        ident = (identity.agent_id, identity.owner)
        self.pending_starts[ident] = max(0, self.pending_starts.get(ident, 0) - 1)
        if not committed and session_id is not None and self.backbone.shared_windows:
            self.spawn(self._release_slot, identity, session_id)
        if start_key is not None:
            self.starting.discard(start_key)

    def session_closed(self, state: S.SessionState) -> None:
        self._closed(state.session_id)

    # -- the routes' operations -------------------------------------------------------

    @staticmethod
    def known_id(session_id: str) -> bool:
        return _SESSION_ID.match(session_id) is not None

    async def start(self, req: TurnRequest) -> TurnHandle:
        handler = req.input.handler or S.DEFAULT_HANDLER
        if handler not in self.handlers:
            raise InvalidRequest(f'unknown handler "{fragment(handler)}"')
        ident = (req.identity.agent_id, req.identity.owner)
        start_key: str | None = None
        if req.idem_key is not None:
            start_key = _start_key(req.identity, req.idem_key)
            if start_key in self.starting:
                raise TurnInFlight()
            self.starting.add(start_key)
        counted = False
        slotted: str | None = None
        try:
            expected_old: str | None = None
            if start_key is not None:
                existing = await self.journal.get_meta(start_key)
                if existing is not None:
                    state = await self.registry.ask(existing, Peek()) if self.known_id(existing) else None
                    decision = S.check_start_replay(
                        state, req.identity, idempotency_key=req.idem_key, request_fingerprint=req.fingerprint
                    )
                    if isinstance(decision, S.Replay):
                        digest = state.token_digest if state is not None and state.turns == 1 else None
                        token = self.keys.reissue(existing, 1, digest)
                        self.starting.discard(start_key)
                        return TurnHandle(existing).finish(
                            S.render_response(decision.response, token), replayed=True
                        )
                    expected_old = existing
            limit = self.settings.max_sessions_per_identity
            # On Postgres the database slot below is the exact count; this
            # process's own count may not have seen another's close yet.
            shared = self.backbone.shared_windows
            if not shared and self.open_counts.get(ident, 0) + self.pending_starts.get(ident, 0) >= limit:
                noun = "session" if limit == 1 else "sessions"
                raise SessionLimit(f"session limit reached: at most {limit} open {noun} per identity")
            self.pending_starts[ident] = self.pending_starts.get(ident, 0) + 1
            counted = True
            now_ms = self.backbone.clock.now_ms()
            sid = S.new_session_id(now_ms)
            if shared:
                reserve = reserve_session_slot(
                    *ident, sid, limit=limit, now_ms=now_ms, expires_ms=now_ms + SESSION_SLOT_TTL_MS
                )
                if not await self.journal.write(reserve):
                    noun = "session" if limit == 1 else "sessions"
                    raise SessionLimit(f"session limit reached: at most {limit} open {noun} per identity")
                slotted = sid
            if start_key is not None and not await self.journal.write(
                _reserve_start_key(start_key, expected_old, sid)
            ):
                raise TurnInFlight()  # another process is starting (or just started) it
            handle = TurnHandle(sid)
            return await self.registry.ask(sid, Start(req, handle, start_key))
        except BaseException:
            if counted:
                self.pending_starts[ident] = max(0, self.pending_starts.get(ident, 0) - 1)
            if slotted is not None:
                self.spawn(self._release_slot, req.identity, slotted)
            if start_key is not None:
                self.starting.discard(start_key)
            raise

    async def _release_slot(self, identity: Identity, session_id: str) -> None:
        """Give back the slot of a start that did not commit (else it lapses after its TTL)."""
        try:
            await self.journal.write(release_session_slot(identity.agent_id, identity.owner, session_id))
        except Exception:
            log.warning("could not release the session slot of %s; it lapses on its own", session_id)

    async def continue_(self, session_id: str, req: TurnRequest) -> TurnHandle:
        if not self.known_id(session_id):
            raise S.unknown_session(session_id)
        return await self.registry.ask(session_id, Continue(req, TurnHandle(session_id)))

    async def describe(self, session_id: str, identity: Identity) -> dict[str, Any]:
        if not self.known_id(session_id):
            raise S.unknown_session(session_id)
        now = self.backbone.clock.now()
        stream = f"session:{session_id}"

        def read(engine):
            with engine.connect() as conn:
                return get_lease(conn, session_id), last_event(conn, stream)[0]

        # One read answers both "is a turn leased anywhere" and "is our state current".
        lease, head = await self.backbone.read_model(read)
        state, in_flight = await self.registry.ask(session_id, Describe(identity, head))
        live = bool(
            lease is not None and lease.holder and lease.expires_at > now and not holder_is_dead(lease.holder)
        )
        return S.describe(state, in_turn=in_flight or live)

    async def list_for(self, identity: Identity, limit: int = LIST_LIMIT) -> list[dict[str, Any]]:
        """The identity's open sessions, newest first, each as :meth:`describe` shows it.

        The ids come from the open-session index this process already keeps
        (its own starts and closes plus the tailer's); session ids sort by
        their start time, so the newest ``limit`` are described.
        """
        ident = (identity.agent_id, identity.owner)
        ids = sorted((sid for sid, owner in self.owners.items() if owner == ident), reverse=True)
        out = []
        for sid in ids[:limit]:
            try:
                out.append(await self.describe(sid, identity))
            except ParleyError as error:
                if error.code != "unknown_session":  # closed meanwhile: leave it out
                    raise
        return out

    async def close(self, session_id: str, identity: Identity, token: str | None) -> dict[str, Any]:
        if not self.known_id(session_id):
            raise S.unknown_session(session_id)
        return await self.registry.ask(session_id, Close(identity, token))

    # -- leases --------------------------------------------------------------------

    async def take_lease(self, session_id: str, wait: int, base_seq: int) -> int | str | None:
        """Take the turn lease: the new epoch; ``None`` when another process holds a
        live lease; ``"moved"`` when the stream is past ``base_seq`` (this process's
        state of the session is behind: nothing is taken)."""
        holder = self.holder
        now = self.backbone.clock.now()
        expires = now + wait + LEASE_SLACK_S
        stream = f"session:{session_id}"

        def take(conn) -> int | str | None:
            lease = get_lease(conn, session_id)
            if (
                lease is not None
                and lease.holder
                and lease.holder != holder
                and lease.expires_at > now
                and not holder_is_dead(lease.holder)
            ):
                return None
            if last_event(conn, stream)[0] != base_seq:
                return "moved"
            expected = 0 if lease is None else lease.epoch
            return cas_lease(conn, session_id, expected_epoch=expected, holder=holder, expires_at=expires)

        try:
            return await self.journal.write(take)
        except ConcurrencyError:
            return None

    @staticmethod
    def lease_release(session_id: str, epoch: int):
        """A side effect that releases our lease, and fails the commit if the epoch moved."""

        def release(conn) -> None:
            t = schema.session_leases
            result = conn.execute(
                sa.update(t)
                .where(t.c.session_id == session_id, t.c.epoch == epoch)
                .values(holder="", expires_at=0.0)
            )
            if result.rowcount != 1:
                raise ConcurrencyError(f"lease:{session_id}", epoch, -1)

        return release

    async def release_lease_quietly(self, session_id: str, epoch: int) -> None:
        try:
            await self.journal.write(self.lease_release(session_id, epoch))
        except Exception:  # it expires anyway
            log.debug("lease release of %s failed", session_id, exc_info=True)

    # -- a turn's work -------------------------------------------------------------

    async def apply_actions(
        self, session_id: str, turn: int, req: TurnRequest, subscriptions: dict[str, int]
    ) -> list[Any]:
        """Run the actions in order; ``results[i]`` is the route body or its error envelope."""
        backbone = self.backbone
        identity = req.identity
        results: list[Any] = []
        for index, action in enumerate(req.input.actions):
            key = f"session/{session_id}/{turn}/{index}"
            try:
                if action.kind == "subscribe":
                    slug = backbone.check_channel(action.channel)
                    head = backbone.directory.head(slug)
                    if action.from_ == "head" or action.from_ is None:
                        cursor = head
                    elif action.from_ == "start":
                        cursor = 0
                    else:
                        cursor = int(action.from_)
                        if cursor > head:
                            raise InvalidCursor(f"cursor must be an integer in [0, {head}]")
                    subscriptions[slug] = cursor
                    result: Any = {"cursor": cursor}
                elif action.kind == "unsubscribe":
                    subscriptions.pop(action.channel, None)
                    result = {"channel": action.channel, "subscribed": False}
                elif action.kind == "append":
                    result = (await backbone.append(action.channel, action.message, identity, key)).body
                elif action.kind == "reassign":
                    assignee = action.assignee or {}
                    if (
                        not isinstance(assignee.get("agent_id"), str)
                        or not isinstance(assignee.get("owner"), str)
                        or assignee["agent_id"] == ""
                        or assignee["owner"] == ""
                    ):
                        raise InvalidRequest(
                            "reassign requires an assignee object with a non-empty agent_id and owner"
                        )
                    target = {"agent_id": assignee["agent_id"], "owner": assignee["owner"]}
                    result = (
                        await backbone.claim(action.channel, "reassign", action.message, identity, target, key)
                    ).body
                else:  # claim | done
                    result = (
                        await backbone.claim(action.channel, action.kind, action.message, identity, idem_key=key)
                    ).body
            except ParleyError as error:
                results.append(error.envelope())
                break
            results.append(result)
        return results

    async def deliver(
        self, subscriptions: Mapping[str, int], max_: int, wait: int
    ) -> tuple[list[dict[str, Any]], bool]:
        """``(messages, parked)``: what is deliverable now, or after waiting for one."""
        backbone = self.backbone
        deadline = trio.current_time() + wait
        while True:
            # Take the commit events *before* reading, so no wake-up is missed.
            events = [backbone.signals.event(c) for c in subscriptions]
            messages = await self._deliverable(subscriptions, max_)
            if messages or wait == 0 or not subscriptions:
                return messages, False
            remaining = deadline - trio.current_time()
            if backbone.shutting_down or remaining <= 0:
                return [], True
            await wait_any(events, remaining)

    async def _deliverable(self, subscriptions: Mapping[str, int], max_: int) -> list[dict[str, Any]]:
        per_channel = []
        for channel, cursor in subscriptions.items():
            page, _head = await self.backbone.read_from(channel, cursor, max_)
            per_channel.append(
                [S.delivered(channel, cursor + i + 1, message) for i, message in enumerate(page)]
            )
        merged = heapq.merge(*per_channel, key=_stamp_key)
        return [item for _, item in zip(range(max_), merged)]

    async def handler_output(
        self,
        name: str,
        session_id: str,
        turn: int,
        subscriptions: Mapping[str, int],
        results: list[Any],
        messages: list[dict[str, Any]],
    ) -> dict[str, Any]:
        handler = self.handlers.get(name)
        if handler is None:  # uninstalled since the session started: behave like inbox
            return {}
        history: dict[str, list[dict[str, Any]]] = {}
        if getattr(handler, "wants_history", False):
            for channel in subscriptions:
                history[channel], _ = await self.backbone.read_from(channel, 0, _HISTORY_ALL)
        view = TurnView(session_id, turn, dict(subscriptions), list(results), list(messages), history)
        extras = handler.decide(view)
        return {k: v for k, v in extras.items() if k not in ("results", "messages", "cursors")}


# -- lease holders -------------------------------------------------------------------


def _local_scope() -> str:
    """This host and PID namespace (``host/<pid-ns inode>``; ``host/0`` if unknown)."""
    try:
        namespace = os.stat("/proc/self/ns/pid").st_ino
    except OSError:
        namespace = 0
    return f"{socket.gethostname()}/{namespace}"


def holder_is_dead(holder: str) -> bool:
    """True when ``holder`` names a process of this host and PID namespace that is gone.

    After ``kill -9`` and a restart on the same host, the dead process's lease
    would otherwise make the session answer ``contended`` until the lease
    expires (``wait`` + 30 s). Only a holder we can check for certain is
    declared dead (same scope, known namespace, no such process or a zombie);
    anything else waits for the expiry. Taking a dead holder's lease is safe
    anyway: its commit would fail the epoch check.
    """
    parts = holder.rsplit(":", 2)
    if len(parts) != 3:
        return False
    scope, pid_text, _nonce = parts
    local = _local_scope()
    if scope != local or local.endswith("/0") or not pid_text.isdigit():
        return False
    pid = int(pid_text)
    if pid == os.getpid() or pid <= 1:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except OSError:  # exists (another user's): alive
        return False
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            state = f.read().rpartition(b")")[2].split()[0]
    except (OSError, IndexError):
        return False
    return state == b"Z"


# -- read models and meta helpers --------------------------------------------------


def _open_sessions(engine) -> dict[str, tuple[str, str]]:
    """Every open session's id and identity ``(agent_id, owner)``.

    Both queries carry ``schema.NOT_MESSAGE`` so SQLite reads them from the
    partial index ``ix_events_nonmessage`` instead of scanning every message
    (720 ms at start-up on a 1,000,000-event journal).
    """
    e = schema.events
    owners: dict[str, tuple[str, str]] = {}
    with engine.connect() as conn:
        closed = {
            row[0]
            for row in conn.execute(sa.select(e.c.stream_id).where(schema.NOT_MESSAGE, e.c.type == S.SESSION_CLOSED)).all()
        }
        for stream, data in conn.execute(
            sa.select(e.c.stream_id, e.c.data).where(schema.NOT_MESSAGE, e.c.type == S.SESSION_STARTED)
        ).all():
            if stream in closed:
                continue
            started = orjson.loads(data)
            owners[started["session_id"]] = (started["agent_id"], started["owner"])
    return owners


def _start_key(identity: Identity, key: str) -> str:
    digest = hashlib.sha256(
        b"\x00".join(s.encode("utf-8", "surrogatepass") for s in (identity.agent_id, identity.owner, key))
    ).hexdigest()
    return f"session-start/{digest}"


def _reserve_start_key(meta_key: str, expected_old: str | None, session_id: str):
    def reserve(conn) -> bool:
        if expected_old is None:
            return put_meta_if_absent(conn, meta_key, session_id) == session_id
        m = schema.meta
        result = conn.execute(
            sa.update(m).where(m.c.key == meta_key, m.c.value == expected_old).values(value=session_id)
        )
        return result.rowcount == 1

    return reserve


__all__ = ["SessionService"]
