"""``Outbox(path)``: a durable client-side queue of appends and session turns (ADR-0018).

    box = Outbox("~/.parley/outbox.db")
    client_id = box.enqueue("war-room", {"body": "hello"})   # durable on return
    result = box.drain(Parley(url, token))                   # or: await box.drain(AsyncParley(...))

``enqueue`` writes a ``pending`` row (the message's ``msg_id`` is its client
id, minted when absent) and returns; ``drain`` sends every open row with its
stored ``msg_id`` and ``Idempotency-Key``, so a row re-sent after a crash
is replayed by the server, never stored twice. A lane (one channel, or one
session) is sent strictly in enqueue order: row n+1 is not sent before row
n is ``done`` or ``dead``. Network errors, 5xx, 408 and 429 are retried with
backoff (``Retry-After`` honoured); any other 4xx moves the row to ``dead``
with the wire error. Only one process drains a file at a time (an
``fcntl`` lock on ``<path>.lock``, released by the kernel if it dies), so a
row found ``inflight`` by a drain is one a dead drainer left mid-send, and
it is re-sent with the same key.

The drain loop is written once, as a generator of steps (``send`` a request,
``sleep``); :meth:`Outbox.drain` runs it blocking for :class:`Parley` and as
a coroutine for :class:`AsyncParley`.
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Callable, Generator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx

from ._async import Backoff, new_idempotency_key, new_ulid
from ._errors import ParleyError, TransportError, error_from_response, parse_retry_after
from ._outbox_rules import (
    Accepted,
    OutboxConflict,
    OutboxStateError,
    Verdict,
    decide,
    fingerprint,
    verdict,
)
from ._outbox_store import OPEN_STATES, STATES, OutboxStore, Row

#: Seconds a drain keeps retrying without settling any row before it returns (rows stay pending).
DEFAULT_PATIENCE = 60.0
#: The longest ``Retry-After`` obeyed as given; a longer one is clipped to this.
MAX_RETRY_AFTER = 60.0

#: Open appends of one lane sent together in one ``append_many`` (ADR-0039).
LANE_BATCH = 1024

_CHANNEL = "channel:"
_ULID = re.compile(r"^[0-9A-HJKMNP-TV-Z]{26}$")
_SESSION = "session:"


#: One step of the sans-IO drain: ``("sleep", seconds)``, ``("send", _Send)`` or
#: ``("send_many", (channel, bodies))`` (answered by ``(slots, replayed)``).
Step = tuple[str, Any]


@dataclass
class DrainResult:
    """What one drain did: the client ids it delivered and killed, and what is left."""

    delivered: list[str] = field(default_factory=list)
    dead: list[str] = field(default_factory=list)
    #: Open rows left (the server stayed unreachable for ``patience`` seconds).
    pending: int = 0
    #: Another process holds the drain lock; nothing was sent.
    busy: bool = False


@dataclass(frozen=True)
class Delivery:
    """:meth:`Outbox.deliver`'s answer: ``outcome`` is ``delivered``, ``queued``, ``dead`` or ``aborted``."""

    outcome: str
    row: Row


@dataclass
class _Send:
    row: Row
    method: str
    path: str
    body: Any
    headers: dict[str, str]


class _DrainLock:
    """An exclusive, non-blocking ``flock`` on ``<outbox>.lock`` (the kernel drops it if we die)."""

    def __init__(self, path: Path) -> None:
        self.path = path.with_name(path.name + ".lock")
        self._fd: int | None = None

    def acquire(self) -> bool:
        import fcntl  # POSIX only (ADR-0018); imported here so `import parley.client` works everywhere

        fd = os.open(self.path, os.O_CREAT | os.O_RDWR, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return False
        self._fd = fd
        return True

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


def _is_async(client: Any) -> bool:
    from ._async import AsyncParley

    return isinstance(client, AsyncParley)


class Outbox:
    """A durable outbox in one SQLite file; safe to share between processes (see the module docstring)."""

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        patience: float = DEFAULT_PATIENCE,
        backoff: Backoff | None = None,
    ) -> None:
        self.path = Path(path).expanduser()
        self.store = OutboxStore(self.path)
        self.patience = patience
        self.backoff = backoff or Backoff(base=0.1, cap=2.0)

    def close(self) -> None:
        self.store.close()

    def __enter__(self) -> Outbox:
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.close()

    # -- enqueue ------------------------------------------------------------------

    def enqueue(self, channel: str, message: Mapping[str, Any]) -> str:
        """Queue an append; returns the row's client id (= the message's ``msg_id``) once it is on disk."""
        return self.accept(channel, message).client_id

    def accept(self, channel: str, message: Mapping[str, Any]) -> Accepted:
        """:meth:`enqueue` with the §4.5.1 outcome; raises :class:`OutboxConflict` for a refused id."""
        if not isinstance(channel, str) or not channel:
            raise TypeError("channel must be a non-empty string")
        request = dict(message)
        request.setdefault("type", "note")
        client_id = request.get("msg_id") or new_ulid()
        if not isinstance(client_id, str):
            raise TypeError("msg_id must be a string")
        request["msg_id"] = client_id
        return self._accept(client_id, "append", _CHANNEL + channel, request, None)

    def enqueue_turn(
        self,
        session_id: str,
        continuation_token: str | None,
        body: Mapping[str, Any] | None = None,
        *,
        client_id: str | None = None,
    ) -> str:
        """Queue a continue turn of ``session_id``; returns its client id.

        The turn's ``Idempotency-Key`` is minted now and kept in the row, so a
        turn re-sent after a crash is the same turn (the server replays it).
        Turns of one session are sent in order. A turn presents
        ``continuation_token`` when given; with ``None`` it presents the
        token the previous delivered turn of that session in this outbox
        returned (so queue the first turn with the token, the later ones
        with ``None``).
        """
        request = {k: v for k, v in dict(body or {}).items() if k != "continuationToken"}
        cid = client_id or new_ulid()
        return self._accept(cid, "turn", _SESSION + session_id, request, continuation_token).client_id

    def _accept(self, client_id: str, kind: str, lane: str, request: dict[str, Any], secret: str | None) -> Accepted:
        offered = fingerprint(kind, lane, request)
        with self.store.transaction() as db:
            existing = self.store.get(client_id, db)
            if existing is None:
                self.store.insert(
                    db,
                    client_id=client_id,
                    kind=kind,
                    lane=lane,
                    request=request,
                    fingerprint=offered,
                    idempotency_key=new_idempotency_key(),
                    secret=secret,
                )
                return Accepted(client_id, "accepted_pending", self._get(client_id, db))
        return decide(existing, offered)

    # -- reading ------------------------------------------------------------------

    def get(self, client_id: str) -> Row | None:
        return self.store.get(client_id)

    def _get(self, client_id: str, db: Any = None) -> Row:
        row = self.store.get(client_id, db)
        if row is None:
            raise OutboxStateError(f"no row {client_id} in the outbox {self.path}")
        return row

    def rows(self, states: Sequence[str] | None = None) -> list[Row]:
        """Rows in enqueue order, optionally only those in ``states``."""
        unknown = set(states or ()) - set(STATES)
        if unknown:
            raise ValueError(f"unknown outbox state(s): {', '.join(sorted(unknown))}")
        return self.store.rows(tuple(states) if states else None)

    def counts(self) -> dict[str, int]:
        return self.store.counts()

    def continuation_token(self, session_id: str) -> str | None:
        """The token returned by the session's latest delivered turn in this outbox (None if none)."""
        for row in reversed(self.store.rows(("done",))):
            if row.lane == _SESSION + session_id and row.response:
                return row.response.get("continuationToken")
        return None

    # -- operator recovery --------------------------------------------------------------

    def requeue(self, client_id: str, new_client_id: str | bool | None = None) -> str:
        """Send a ``dead`` or ``aborted`` row again; returns the client id that is now pending.

        Without ``new_client_id`` the same row goes back to ``pending`` (same
        ``msg_id`` and key: right when the cause was outside the message, e.g.
        the channel did not exist yet). With one (``True`` mints a ULID) the
        old row is ``aborted`` and ``superseded_by`` a new row that carries the
        new id as its ``msg_id`` and a new key, queued at the end of its lane.
        """
        with self.store.transaction() as db:
            row = self._get(client_id, db)
            if row.state not in ("dead", "aborted"):
                raise OutboxStateError(
                    f"row {client_id} is {row.state}; only dead or aborted rows can be requeued"
                )
            if row.superseded_by is not None:
                raise OutboxStateError(
                    f"row {client_id} was requeued as {row.superseded_by}; requeue that row instead"
                )
            if not new_client_id:
                self.store.set_state(db, client_id, "pending", next_attempt_at=0, aborted_at=None)
                return client_id
            new_id = new_ulid() if new_client_id is True else str(new_client_id)
            if row.kind == "append" and not _ULID.match(new_id):
                raise OutboxStateError(f"--new-client-id {new_id!r} is not a ULID (26 Crockford base32 characters)")
            if self.store.get(new_id, db) is not None:
                raise OutboxStateError(f"client id {new_id} is already in the outbox; choose another")
            request = dict(row.request)
            if row.kind == "append":
                request["msg_id"] = new_id
            self.store.insert(
                db,
                client_id=new_id,
                kind=row.kind,
                lane=row.lane,
                request=request,
                fingerprint=row.fingerprint,
                idempotency_key=new_idempotency_key(),
                secret=row.secret,
                requeued_from=client_id,
            )
            aborted_at = row.aborted_at or time.time()
            self.store.set_state(db, client_id, "aborted", aborted_at=aborted_at, superseded_by=new_id)
            return new_id

    def abort(self, client_id: str) -> Row:
        """Give up on a ``pending`` or ``dead`` row (an ``inflight`` one may already be delivered)."""
        with self.store.transaction() as db:
            row = self._get(client_id, db)
            if row.state == "aborted":
                return row
            if row.state not in ("pending", "dead"):
                hint = (
                    "it may already be delivered; run `parley outbox drain` to settle it"
                    if row.state == "inflight"
                    else "it was delivered"
                )
                raise OutboxStateError(f"row {client_id} is {row.state} and cannot be aborted: {hint}")
            self.store.set_state(db, client_id, "aborted", aborted_at=time.time())
            return self._get(client_id, db)

    # -- sending ------------------------------------------------------------------

    def drain(
        self,
        client: Any,
        *,
        patience: float | None = None,
        on_settled: Callable[[Row], None] | None = None,
        on_retry: Callable[[Row], None] | None = None,
    ) -> Any:
        """Send every open row; a :class:`DrainResult` (a coroutine of one for an async client).

        Returns when no row is open, or when ``patience`` seconds (default
        the outbox's) pass without settling any row. ``on_settled`` is called
        with each row once it is ``done`` or ``dead``; ``on_retry`` with each
        row sent back to ``pending`` by a transient failure (its
        ``last_error`` and ``next_attempt_at`` set).
        """
        patience = self.patience if patience is None else patience
        steps = self._drain_steps(client, patience, on_settled, on_retry)
        return self._run_async(client, steps) if _is_async(client) else self._run_sync(client, steps)

    def deliver(self, client: Any, client_id: str) -> Any:
        """Try once to deliver ``client_id`` (and the earlier rows of its lane): a :class:`Delivery`.

        ``delivered`` / ``dead`` / ``aborted`` are final; ``queued`` means the
        server could not take it now (or another process is draining) and the
        row stays pending for the next drain. A coroutine for an async client.
        """
        steps = self._deliver_steps(client, client_id)
        return self._run_async(client, steps) if _is_async(client) else self._run_sync(client, steps)

    def _drain_steps(
        self,
        client: Any,
        patience: float,
        on_settled: Callable[[Row], None] | None,
        on_retry: Callable[[Row], None] | None,
    ) -> Generator[Step, Any, DrainResult]:
        lock = _DrainLock(self.path)
        if not lock.acquire():
            return DrainResult(busy=True, pending=sum(self.counts()[s] for s in OPEN_STATES))
        result = DrainResult()
        order: dict[str, int] = {}
        try:
            last_progress = time.monotonic()
            while True:
                heads = self.store.lane_heads()
                if not heads or time.monotonic() - last_progress > patience:
                    break
                now = time.time()
                ready = [row for row in heads if row.next_attempt_at <= now]
                if not ready:
                    wait = min(row.next_attempt_at for row in heads) - now
                    if time.monotonic() + wait - last_progress > patience:
                        break
                    yield ("sleep", wait)
                    continue
                for head in ready:
                    lane = self.store.lane_from(head, LANE_BATCH) if self._batches(client, head) else [head]
                    if len(lane) > 1:
                        settled_rows = yield from self._attempt_many(lane)
                    else:
                        settled_rows = [(yield from self._attempt(client, head))]
                    for settled in settled_rows:
                        if settled.state in ("done", "dead"):
                            last_progress = time.monotonic()
                            (result.delivered if settled.state == "done" else result.dead).append(settled.client_id)
                            order[settled.client_id] = settled.seq
                            if on_settled is not None:
                                on_settled(settled)
                        elif settled.state == "pending" and on_retry is not None:
                            on_retry(settled)
        finally:
            lock.release()
        # Reported in enqueue order (a lane's batch settles its rows together).
        result.delivered.sort(key=order.__getitem__)
        result.dead.sort(key=order.__getitem__)
        result.pending = sum(self.counts()[s] for s in OPEN_STATES)
        return result

    def _deliver_steps(self, client: Any, client_id: str) -> Generator[Step, Any, Delivery]:
        row = self._get(client_id)
        if row.state not in OPEN_STATES:
            return Delivery("delivered" if row.state == "done" else row.state, row)
        lock = _DrainLock(self.path)
        if not lock.acquire():
            return Delivery("queued", row)
        try:
            lane = [*self.store.open_before(row), self._get(client_id)]
            if len(lane) > 1 and self._batches(client, row):
                # The queued posts and this one in one append_many (ADR-0039).
                settled_rows = yield from self._attempt_many(lane)
                if any(settled.state in OPEN_STATES for settled in settled_rows):
                    return Delivery("queued", self._get(client_id))
                lane = []
            for earlier in lane:
                settled = yield from self._attempt(client, earlier)
                if settled.state in OPEN_STATES:
                    return Delivery("queued", self._get(client_id))
        finally:
            lock.release()
        row = self._get(client_id)
        return Delivery("delivered" if row.state == "done" else row.state, row)

    def _attempt(self, client: Any, row: Row) -> Generator[Step, Any, Row]:
        """Send one row and record the answer; yields one ``send`` step, returns the row as stored after."""
        if not self.store.mark_inflight(row.client_id):
            return self._get(row.client_id)
        answer = yield ("send", self._request(client, row))
        if isinstance(answer, httpx.TransportError):
            found = Verdict("retry", f"transport_error: {type(answer).__name__}: {answer}", "transport_error")
        else:
            found = self._verdict(row, answer)
        if found.kind == "done":
            body = _json(answer)
            cursor = body.get("cursor") if isinstance(body, dict) and row.kind == "append" else None
            replayed = answer.headers.get("idempotent-replayed") == "true"
            kept = {"cursor": cursor, "replayed": replayed} if row.kind == "append" else body
            self.store.mark_done(row.client_id, cursor if isinstance(cursor, int) else None, kept)
        else:
            self._record_failure(row, found)
        return self._get(row.client_id)

    @staticmethod
    def _batches(client: Any, row: Row) -> bool:
        """Whether ``row``'s lane goes as one ``append_many``: appends only, and
        only over the channel WebSocket (per request, each row keeps its own
        ``Idempotency-Key`` and its own retries, as before)."""
        from ._bulk import socket_usable

        return row.kind == "append" and socket_usable(client)

    def _attempt_many(self, lane: list[Row]) -> Generator[Step, Any, list[Row]]:
        """Send a lane's open appends as one ``append_many`` (one ``send_many``
        step) and record each answer like :meth:`_attempt`; the rows as stored
        after. Every row keeps its ``msg_id``, so a resend is a replay."""
        rows = []
        for row in lane:
            if not self.store.mark_inflight(row.client_id):
                break  # aborted meanwhile: the rows after it wait (lane order)
            rows.append(row)
        if not rows:
            return [self._get(lane[0].client_id)]
        channel = rows[0].lane[len(_CHANNEL):]
        slots, replayed = yield ("send_many", (channel, [row.request for row in rows]))
        for row, slot, was_replayed in zip(rows, slots, replayed):
            if isinstance(slot, TransportError):
                found = Verdict("retry", f"transport_error: {slot.message}", "transport_error")
            elif isinstance(slot, ParleyError):
                found = verdict(slot.status, slot, slot.retry_after)
            else:
                cursor = slot.get("cursor") if isinstance(slot, dict) else None
                kept = {"cursor": cursor, "replayed": was_replayed}
                self.store.mark_done(row.client_id, cursor if isinstance(cursor, int) else None, kept)
                continue
            self._record_failure(row, found)
        return [self._get(row.client_id) for row in rows]

    def _record_failure(self, row: Row, found: Verdict) -> None:
        if found.kind == "dead":
            self.store.mark_dead(row.client_id, found.error or "", found.code, found.status)
        else:
            delay = found.delay if found.delay is not None else self.backoff.delay(row.attempts)
            self.store.mark_retry(
                row.client_id, found.error or "", found.code, found.status, min(delay, MAX_RETRY_AFTER)
            )

    def _verdict(self, row: Row, response: httpx.Response) -> Verdict:
        retry_after = parse_retry_after(response.headers.get("retry-after"))
        if response.is_success:
            body = _json(response)
            if row.kind == "turn" and isinstance(body, dict) and body.get("status") == "contended":
                return Verdict("retry", "contended: another process holds the turn", "contended", 200, retry_after)
            return verdict(response.status_code, None, None)
        error = error_from_response(response.status_code, response.content, response.headers)
        return verdict(response.status_code, error, retry_after)

    def _request(self, client: Any, row: Row) -> _Send:
        headers = {"Idempotency-Key": row.idempotency_key}
        if client.token:
            headers["Authorization"] = f"Bearer {client.token}"
        if row.kind == "append":
            path = f"/channels/{quote(row.lane[len(_CHANNEL):], safe='')}/append"
            return _Send(row, "POST", path, row.request, headers)
        session_id = row.lane[len(_SESSION):]
        token = row.secret
        previous = self.store.last_done_turn(row) if token is None else None
        if previous is not None and previous.response:
            token = previous.response.get("continuationToken")
        body = {**row.request, "continuationToken": token}
        return _Send(row, "POST", f"/v1/session/{quote(session_id, safe='')}/message", body, headers)

    # -- the two shells ------------------------------------------------------------------

    @staticmethod
    def _run_sync(client: Any, steps: Generator[Step, Any, Any]) -> Any:
        answer: Any = None
        while True:
            try:
                step = steps.send(answer)
            except StopIteration as stop:
                return stop.value
            answer = None
            if step[0] == "sleep":
                time.sleep(max(0.0, step[1]))
                continue
            if step[0] == "send_many":
                from ._bulk import send_many_sync

                answer = send_many_sync(client, *step[1])
                continue
            send: _Send = step[1]
            try:
                answer = client._http.request(
                    send.method, send.path, json=send.body, headers=send.headers, timeout=client.timeout
                )
            except httpx.TransportError as exc:
                answer = exc

    @staticmethod
    async def _run_async(client: Any, steps: Generator[Step, Any, Any]) -> Any:
        import anyio

        answer: Any = None
        while True:
            try:
                step = steps.send(answer)
            except StopIteration as stop:
                return stop.value
            answer = None
            if step[0] == "sleep":
                await anyio.sleep(max(0.0, step[1]))
                continue
            if step[0] == "send_many":
                from ._bulk import send_many_async

                answer = await send_many_async(client, *step[1])
                continue
            send: _Send = step[1]
            try:
                answer = await client._http.request(
                    send.method, send.path, json=send.body, headers=send.headers, timeout=client.timeout
                )
            except httpx.TransportError as exc:
                answer = exc


def _json(response: httpx.Response) -> Any:
    try:
        return response.json()
    except ValueError:
        return None


__all__ = ["Accepted", "Delivery", "DrainResult", "Outbox", "OutboxConflict", "OutboxStateError", "Row"]
