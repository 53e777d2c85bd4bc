"""Sessions in the client SDK (contracts/sessions.md).

* ``start_session`` / ``continue_session`` / ``describe_session`` /
  ``close_session`` on both clients (mixins below). Every turn carries an
  ``Idempotency-Key`` (uuid4 unless given) that is reused when a lost answer
  is retried, so the server replays the committed turn instead of running it
  twice; a ``contended`` answer (another process holds the turn lease; the
  token did not rotate) is retried after its ``Retry-After``.
* :class:`Actions` builds turn actions (``append``/``claim``… get a ``msg_id``
  at build time, so a resent turn is byte-identical).
* :class:`SessionFile` persists ``(sessionId, continuationToken)`` — plus the
  turn in flight — atomically to a JSON file (temp file + ``os.replace``).
* :class:`ResumableSession` (sync client) / :class:`AsyncResumableSession`
  (async client): ``ResumableSession.open(path, client)`` resumes the
  session recorded in ``path`` if the file exists, else starts one on the
  first turn. Before a turn is sent its input and idempotency key are written
  to the file; after the answer the new token is. A script killed anywhere in
  between resends the recorded turn on restart with the same key and the
  token it consumed, and gets the original answer back: nothing is applied
  twice and the rotated token is recovered.
"""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, overload
from urllib.parse import quote

from ..atomic_file import atomic_write
from ._errors import ParleyError, parse_retry_after
from .types import SessionClosed, SessionDescription, SessionTurn

if TYPE_CHECKING:
    from ._async import AsyncParley
    from ._sync import Parley

FILE_VERSION = 1


@dataclass
class RequestSpec:
    method: str
    path: str
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)
    idempotency_key: str | None = None
    extra_timeout: float = 0.0


def _sid(session_id: str) -> str:
    return quote(str(session_id), safe="")


def turn_body(
    actions: Sequence[Mapping[str, Any]] | None = None,
    *,
    wait: int | None = None,
    max_messages: int | None = None,
    handler: str | None = None,
    extra: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """A turn input with only the given keys (an empty dict is a valid turn)."""
    body: dict[str, Any] = {}
    if actions is not None:
        body["actions"] = [dict(a) for a in actions]
    if wait is not None:
        body["wait"] = wait
    if max_messages is not None:
        body["max"] = max_messages
    if handler is not None:
        body["handler"] = handler
    if extra:
        body.update(extra)
    return body


def start_spec(body: Mapping[str, Any], key: str | None) -> RequestSpec:
    return RequestSpec("POST", "/v1/session", dict(body), idempotency_key=key, extra_timeout=_wait_of(body))


def continue_spec(session_id: str, token: str, body: Mapping[str, Any], key: str | None) -> RequestSpec:
    payload = {k: v for k, v in body.items() if k != "continuationToken"}
    payload["continuationToken"] = token
    return RequestSpec(
        "POST",
        f"/v1/session/{_sid(session_id)}/message",
        payload,
        idempotency_key=key,
        extra_timeout=_wait_of(body),
    )


def describe_spec(session_id: str) -> RequestSpec:
    return RequestSpec("GET", f"/v1/session/{_sid(session_id)}")


def close_spec(session_id: str, token: str) -> RequestSpec:
    return RequestSpec("DELETE", f"/v1/session/{_sid(session_id)}", headers={"x-continuation-token": token})


def _wait_of(body: Mapping[str, Any]) -> float:
    wait = body.get("wait")
    return float(wait) if isinstance(wait, int) and not isinstance(wait, bool) and wait > 0 else 0.0


def new_key() -> str:
    return str(uuid.uuid4())


class Actions:
    """Builders for turn actions (contracts/sessions.md, Turn input)."""

    @staticmethod
    def subscribe(channel: str, from_: str | int = "head") -> dict[str, Any]:
        """Deliver ``channel``'s messages after ``from_``: ``"head"`` (new only), ``"start"`` or a cursor."""
        return {"subscribe": {"channel": channel, "from": from_}}

    @staticmethod
    def unsubscribe(channel: str) -> dict[str, Any]:
        """Stop delivering ``channel`` (a no-op if not subscribed)."""
        return {"unsubscribe": {"channel": channel}}

    @staticmethod
    def append(channel: str, message: Mapping[str, Any] | None = None, /, **fields: Any) -> dict[str, Any]:
        """Append a message (as ``client.append``; ``msg_id`` minted now, so a resent turn is identical)."""
        from ._async import _message

        return {"append": {"channel": channel, "message": _message(message, fields, type="note")}}

    @staticmethod
    def claim(channel: str, target: str, message: Mapping[str, Any] | None = None, /, **fields: Any) -> dict[str, Any]:
        """Claim ``target`` (as ``client.claim``)."""
        from ._async import _claim_message

        return {"claim": {"channel": channel, "message": _claim_message(target, message, fields, f"claiming {target}")}}

    @staticmethod
    def reassign(
        channel: str,
        target: str,
        assignee: Mapping[str, str] | tuple[str, str],
        message: Mapping[str, Any] | None = None,
        /,
        **fields: Any,
    ) -> dict[str, Any]:
        """Hand the claim of ``target`` to ``assignee`` (as ``client.reassign``)."""
        from ._async import _assignee, _claim_message

        msg = _claim_message(target, message, fields, f"reassigning {target}")
        return {"reassign": {"channel": channel, "message": msg, "assignee": _assignee(assignee)}}

    @staticmethod
    def done(channel: str, target: str, message: Mapping[str, Any] | None = None, /, **fields: Any) -> dict[str, Any]:
        """Resolve the claim of ``target`` (as ``client.done``)."""
        from ._async import _claim_message

        return {"done": {"channel": channel, "message": _claim_message(target, message, fields, f"done {target}")}}


# -- client mixins ---------------------------------------------------------------


def _contended_wait(response: Any) -> float:
    return parse_retry_after(response.headers.get("retry-after")) or 1.0


class AsyncSessionsMixin:
    """Session methods of :class:`parley.client.AsyncParley`."""

    async def _turn(self, spec: RequestSpec, retry_contended: bool) -> SessionTurn:
        from ._async import _sleep, decode

        call = self._requests.session(spec)  # type: ignore[attr-defined]
        attempt = 0
        while True:
            response = await self._send(call)  # type: ignore[attr-defined]
            body = decode(call, response)
            if (
                retry_contended
                and isinstance(body, dict)
                and body.get("status") == "contended"
                and attempt < self.policy.retries  # type: ignore[attr-defined]
            ):
                attempt += 1
                await _sleep(_contended_wait(response))
                continue
            return body

    async def start_session(
        self,
        actions: Sequence[Mapping[str, Any]] | None = None,
        *,
        wait: int | None = None,
        max_messages: int | None = None,
        handler: str | None = None,
        idempotency_key: str | None = None,
        body: Mapping[str, Any] | None = None,
    ) -> SessionTurn:
        """``POST /v1/session`` → the first turn response (``sessionId``, ``continuationToken``, …).

        ``actions`` are built with :class:`Actions`; ``wait`` (seconds) parks
        the turn until a subscribed channel delivers a message.
        """
        payload = dict(body) if body is not None else turn_body(actions, wait=wait, max_messages=max_messages, handler=handler)
        return await self._turn(start_spec(payload, idempotency_key or new_key()), retry_contended=False)

    async def continue_session(
        self,
        session_id: str,
        continuation_token: str,
        actions: Sequence[Mapping[str, Any]] | None = None,
        *,
        wait: int | None = None,
        max_messages: int | None = None,
        idempotency_key: str | None = None,
        body: Mapping[str, Any] | None = None,
        retry_contended: bool = True,
    ) -> SessionTurn:
        """``POST /v1/session/{id}/message`` → the turn response (present its ``continuationToken`` next).

        A ``contended`` answer is retried after its ``Retry-After`` unless
        ``retry_contended=False``.
        """
        payload = dict(body) if body is not None else turn_body(actions, wait=wait, max_messages=max_messages)
        spec = continue_spec(session_id, continuation_token, payload, idempotency_key or new_key())
        return await self._turn(spec, retry_contended)

    async def describe_session(self, session_id: str) -> SessionDescription:
        """``GET /v1/session/{id}``: owner, handler, turns, subscriptions, status (never a token)."""
        return await self._do(self._requests.session(describe_spec(session_id)))  # type: ignore[attr-defined]

    async def close_session(self, session_id: str, continuation_token: str) -> SessionClosed:
        """``DELETE /v1/session/{id}`` → ``{"closed": True}``; later requests get :class:`UnknownSession`."""
        return await self._do(self._requests.session(close_spec(session_id, continuation_token)))  # type: ignore[attr-defined]


class SyncSessionsMixin:
    """Session methods of :class:`parley.client.Parley` (same semantics, blocking)."""

    def _turn(self, spec: RequestSpec, retry_contended: bool) -> SessionTurn:
        import time

        from ._async import decode

        call = self._requests.session(spec)  # type: ignore[attr-defined]
        attempt = 0
        while True:
            response = self._send(call)  # type: ignore[attr-defined]
            body = decode(call, response)
            if (
                retry_contended
                and isinstance(body, dict)
                and body.get("status") == "contended"
                and attempt < self.policy.retries  # type: ignore[attr-defined]
            ):
                attempt += 1
                time.sleep(_contended_wait(response))
                continue
            return body

    def start_session(
        self,
        actions: Sequence[Mapping[str, Any]] | None = None,
        *,
        wait: int | None = None,
        max_messages: int | None = None,
        handler: str | None = None,
        idempotency_key: str | None = None,
        body: Mapping[str, Any] | None = None,
    ) -> SessionTurn:
        """``POST /v1/session`` → the first turn response (see ``AsyncParley.start_session``)."""
        payload = dict(body) if body is not None else turn_body(actions, wait=wait, max_messages=max_messages, handler=handler)
        return self._turn(start_spec(payload, idempotency_key or new_key()), retry_contended=False)

    def continue_session(
        self,
        session_id: str,
        continuation_token: str,
        actions: Sequence[Mapping[str, Any]] | None = None,
        *,
        wait: int | None = None,
        max_messages: int | None = None,
        idempotency_key: str | None = None,
        body: Mapping[str, Any] | None = None,
        retry_contended: bool = True,
    ) -> SessionTurn:
        """``POST /v1/session/{id}/message`` → the turn response (present its ``continuationToken`` next)."""
        payload = dict(body) if body is not None else turn_body(actions, wait=wait, max_messages=max_messages)
        spec = continue_spec(session_id, continuation_token, payload, idempotency_key or new_key())
        return self._turn(spec, retry_contended)

    def describe_session(self, session_id: str) -> SessionDescription:
        """``GET /v1/session/{id}``: owner, handler, turns, subscriptions, status (never a token)."""
        return self._do(self._requests.session(describe_spec(session_id)))  # type: ignore[attr-defined]

    def close_session(self, session_id: str, continuation_token: str) -> SessionClosed:
        """``DELETE /v1/session/{id}`` → ``{"closed": True}``."""
        return self._do(self._requests.session(close_spec(session_id, continuation_token)))  # type: ignore[attr-defined]


# -- persistence -------------------------------------------------------------------


@dataclass
class Pending:
    """A turn written to the file before it was sent (``kind`` is ``start`` or ``continue``)."""

    kind: str
    idempotency_key: str
    body: dict[str, Any]

    def to_json(self) -> dict[str, Any]:
        return {"kind": self.kind, "idempotencyKey": self.idempotency_key, "body": self.body}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Pending:
        return cls(str(data["kind"]), str(data["idempotencyKey"]), dict(data["body"]))


@dataclass
class SessionState:
    session_id: str | None = None
    continuation_token: str | None = None
    turns: int = 0
    pending: Pending | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "version": FILE_VERSION,
            "sessionId": self.session_id,
            "continuationToken": self.continuation_token,
            "turns": self.turns,
            "pending": self.pending.to_json() if self.pending is not None else None,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> SessionState:
        pending = data.get("pending")
        return cls(
            session_id=data.get("sessionId"),
            continuation_token=data.get("continuationToken"),
            turns=int(data.get("turns") or 0),
            pending=Pending.from_json(pending) if pending else None,
        )


class SessionFile:
    """``(sessionId, continuationToken)`` (and the turn in flight) in one JSON file.

    Every :meth:`save` writes a temporary file in the same directory, fsyncs
    it and ``os.replace``-s it over the target, so a crash leaves either the
    old or the new state, never a torn file. The file holds a live bearer
    of the session: it is created with mode ``0600``.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)

    def exists(self) -> bool:
        """Is there a saved state?"""
        return self.path.exists()

    def load(self) -> SessionState | None:
        """The saved state, or None when there is no file."""
        try:
            text = self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return None
        return SessionState.from_json(json.loads(text))

    def save(self, state: SessionState) -> None:
        """Replace the file with ``state`` atomically (temp file, fsync, ``os.replace``)."""
        directory = self.path.parent if str(self.path.parent) else Path(".")
        directory.mkdir(parents=True, exist_ok=True)
        data = json.dumps(state.to_json(), indent=2, sort_keys=True).encode("utf-8")
        atomic_write(self.path, data, mode=0o600)

    def delete(self) -> None:
        """Remove the file (no error if it is already gone)."""
        try:
            self.path.unlink()
        except FileNotFoundError:
            pass



def _definitive(error: ParleyError) -> bool:
    """A refusal that proves the turn was not committed (4xx, except ambiguous ones)."""
    return 400 <= int(getattr(error, "status", 0) or 0) < 500


class _ResumableBase:
    def __init__(
        self,
        path: str | os.PathLike[str],
        client: Any,
        *,
        handler: str | None = None,
        file: SessionFile | None = None,
    ) -> None:
        #: Where the state lives; ``file`` replaces the JSON file at ``path`` (e.g. an in-memory store).
        self.file = file if file is not None else SessionFile(path)
        self.client = client
        self.handler = handler
        loaded = self.file.load()
        #: True when the state came from an existing file.
        self.resumed = loaded is not None
        self.state = loaded or SessionState()
        #: The answer of a recorded turn that was resent before a different turn (see ``turn``).
        self.recovered: SessionTurn | None = None
        #: The last turn response.
        self.last: SessionTurn | None = None

    @property
    def session_id(self) -> str | None:
        return self.state.session_id

    @property
    def continuation_token(self) -> str | None:
        return self.state.continuation_token

    @property
    def turns(self) -> int:
        return self.state.turns

    @property
    def pending(self) -> Pending | None:
        return self.state.pending

    def _next(self, body: dict[str, Any]) -> Pending:
        if self.state.session_id is None:
            if self.handler is not None and "handler" not in body:
                body = {**body, "handler": self.handler}
            return Pending("start", new_key(), body)
        return Pending("continue", new_key(), body)

    def _same(self, pending: Pending, body: dict[str, Any]) -> bool:
        """Is ``body`` the very turn recorded as ``pending`` (a re-run of the same step)?"""
        return pending.body == self._next(body).body

    def _record(self, pending: Pending) -> None:
        self.state.pending = pending
        self.file.save(self.state)

    def _commit(self, response: SessionTurn) -> SessionTurn:
        self.state.pending = None
        if response.get("status") != "contended":
            self.state.session_id = response.get("sessionId", self.state.session_id)
            self.state.continuation_token = response.get("continuationToken", self.state.continuation_token)
            self.state.turns += 1
        self.file.save(self.state)
        self.last = response
        return response

    def _failed(self, error: BaseException) -> None:
        if isinstance(error, ParleyError) and _definitive(error) and error.code != "transport_error":
            self.state.pending = None
            self.file.save(self.state)

    def _spec(self, pending: Pending) -> RequestSpec:
        if pending.kind == "start":
            return start_spec(pending.body, pending.idempotency_key)
        assert self.state.session_id is not None and self.state.continuation_token is not None
        return continue_spec(
            self.state.session_id, self.state.continuation_token, pending.body, pending.idempotency_key
        )


class ResumableSession(_ResumableBase):
    """A session whose identifiers survive the script (see the module docstring).

    ``turn(...)``: if the file records a turn that may not have been
    answered, it is resent first (same key, same token: the server replays
    it if it committed). If that recorded turn has exactly the input now
    asked for, its answer is returned (the step is not run twice); otherwise
    its answer is kept in :attr:`recovered` and the new turn runs.
    """

    @overload
    @classmethod
    def open(
        cls, path: str | os.PathLike[str], client: AsyncParley, *, handler: str | None = None
    ) -> AsyncResumableSession: ...

    @overload
    @classmethod
    def open(cls, path: str | os.PathLike[str], client: Parley, *, handler: str | None = None) -> ResumableSession: ...

    @classmethod
    def open(
        cls, path: str | os.PathLike[str], client: Any, *, handler: str | None = None
    ) -> ResumableSession | AsyncResumableSession:
        """Resume the session recorded at ``path`` if the file exists, else start one on the first turn.

        Returns an :class:`AsyncResumableSession` for an async client. No
        request is made until the first turn.
        """
        from ._async import AsyncParley

        if isinstance(client, AsyncParley):
            return AsyncResumableSession(path, client, handler=handler)
        return cls(path, client, handler=handler)

    def _send(self, pending: Pending) -> SessionTurn:
        self._record(pending)
        spec = self._spec(pending)
        try:
            response = self.client._turn(spec, retry_contended=pending.kind == "continue")
        except BaseException as error:
            self._failed(error)
            raise
        return self._commit(response)

    def recover(self) -> SessionTurn | None:
        """Resend the recorded turn (if any) and return its answer."""
        if self.state.pending is None:
            return None
        self.recovered = self._send(self.state.pending)
        return self.recovered

    def turn(
        self,
        actions: Sequence[Mapping[str, Any]] | None = None,
        *,
        wait: int | None = None,
        max_messages: int | None = None,
    ) -> SessionTurn:
        """Run one turn (resending a recorded unanswered one first; see the class docstring)."""
        body = turn_body(actions, wait=wait, max_messages=max_messages)
        pending = self.state.pending
        if pending is not None:
            same = self._same(pending, body)
            response = self._send(pending)
            if same:
                return response
            self.recovered = response
        return self._send(self._next(body))

    def describe(self) -> SessionDescription:
        """The server's description of this session (``ValueError`` before the first turn)."""
        if self.state.session_id is None:
            raise ValueError("no session yet")
        return self.client.describe_session(self.state.session_id)

    def close(self) -> SessionClosed | None:
        """Close the session on the server and delete the file."""
        result = None
        if self.state.pending is not None:
            self.recover()
        if self.state.session_id is not None and self.state.continuation_token is not None:
            result = self.client.close_session(self.state.session_id, self.state.continuation_token)
        self.file.delete()
        return result


class AsyncResumableSession(_ResumableBase):
    """:class:`ResumableSession` for :class:`parley.client.AsyncParley` (``await s.turn(...)``)."""

    @classmethod
    def open(
        cls, path: str | os.PathLike[str], client: Any, *, handler: str | None = None
    ) -> AsyncResumableSession:
        """Resume the session recorded at ``path`` if the file exists, else start one on the first turn."""
        return cls(path, client, handler=handler)

    async def _send(self, pending: Pending) -> SessionTurn:
        self._record(pending)
        spec = self._spec(pending)
        try:
            response = await self.client._turn(spec, retry_contended=pending.kind == "continue")
        except BaseException as error:
            self._failed(error)
            raise
        return self._commit(response)

    async def recover(self) -> SessionTurn | None:
        """Resend the recorded turn (if any) and return its answer."""
        if self.state.pending is None:
            return None
        self.recovered = await self._send(self.state.pending)
        return self.recovered

    async def turn(
        self,
        actions: Sequence[Mapping[str, Any]] | None = None,
        *,
        wait: int | None = None,
        max_messages: int | None = None,
    ) -> SessionTurn:
        """Run one turn (resending a recorded unanswered one first; see the class docstring)."""
        body = turn_body(actions, wait=wait, max_messages=max_messages)
        pending = self.state.pending
        if pending is not None:
            same = self._same(pending, body)
            response = await self._send(pending)
            if same:
                return response
            self.recovered = response
        return await self._send(self._next(body))

    async def describe(self) -> SessionDescription:
        """The server's description of this session (``ValueError`` before the first turn)."""
        if self.state.session_id is None:
            raise ValueError("no session yet")
        return await self.client.describe_session(self.state.session_id)

    async def close(self) -> SessionClosed | None:
        """Close the session on the server and delete the file."""
        result = None
        if self.state.pending is not None:
            await self.recover()
        if self.state.session_id is not None and self.state.continuation_token is not None:
            result = await self.client.close_session(self.state.session_id, self.state.continuation_token)
        self.file.delete()
        return result


__all__ = [
    "Actions",
    "AsyncResumableSession",
    "AsyncSessionsMixin",
    "Pending",
    "RequestSpec",
    "ResumableSession",
    "SessionFile",
    "SessionState",
    "SyncSessionsMixin",
    "turn_body",
]
