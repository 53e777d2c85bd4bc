"""The asynchronous client :class:`AsyncParley` and the request logic both clients share.

Every public method builds a :class:`Call` (method, path, body, whether a
retry is safe, the ``Idempotency-Key``) with :class:`_Requests`; the async
and the sync client only differ in how they send it. Retries:

* a connection that could not be opened is always retried;
* a connection that broke after the request may have reached the server is
  retried only for calls that are safe to repeat: reads, and writes that
  carry an ``Idempotency-Key`` (one uuid4 per logical call, reused on every
  retry, so the server replays the first answer instead of writing twice);
* ``429``/``503`` answers carrying ``Retry-After`` are retried after that
  delay when it is at most ``max_retry_wait`` seconds (the server did not
  apply the request); otherwise the typed error is raised with
  ``.retry_after`` set.

Works under trio (and asyncio) for HTTP; :meth:`AsyncParley.tail_ws` needs
trio (trio-websocket).
"""

from __future__ import annotations

import json
import random
import uuid
from collections.abc import AsyncIterator, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, cast
from urllib.parse import quote

import httpx

from ..domain.ulid import new_ulid
from . import _sessions
from ._errors import ParleyError, TransportError, error_from_response, parse_retry_after
from .types import (
    AppendResult,
    ChannelDescriptor,
    ClaimEntry,
    ClaimOutcome,
    Health,
    Message,
    ReadPage,
    StoredArtifact,
    TailItem,
    Token,
)

DEFAULT_TIMEOUT = 30.0


def new_idempotency_key() -> str:
    """A fresh ``Idempotency-Key`` (uuid4); reuse it when resending the same logical write."""
    return str(uuid.uuid4())


def _seg(value: str) -> str:
    return quote(str(value), safe="")


def _json_or_none(response: httpx.Response) -> Any:
    try:
        return response.json()
    except ValueError:
        return None


@dataclass
class Call:
    """One logical request: sent once, or several times with the same ``Idempotency-Key``."""

    method: str
    path: str
    json: Any = None
    content: bytes | None = None
    headers: dict[str, str] = field(default_factory=dict)
    #: Safe to send again after the request may have reached the server.
    retry_safe: bool = True
    #: ``Idempotency-Key`` sent on every attempt (None: no header).
    idempotency_key: str | None = None
    #: ``json`` (decode the body), ``bytes`` (raw body).
    expect: str = "json"
    #: Extra seconds on top of the client timeout (long-polling turns).
    extra_timeout: float = 0.0
    #: Status codes that are *not* errors (default: any 2xx).
    ok: tuple[int, ...] | None = None

    def request_headers(self) -> dict[str, str]:
        headers = dict(self.headers)
        if self.idempotency_key is not None:
            headers["Idempotency-Key"] = self.idempotency_key
        return headers


@dataclass
class Backoff:
    """Retry policy shared by both clients."""

    retries: int = 3
    base: float = 0.1
    cap: float = 2.0
    max_retry_wait: float = 10.0

    def delay(self, attempt: int) -> float:
        raw = min(self.cap, self.base * (2**attempt))
        return raw * (0.5 + random.random() / 2)

    def retry_after(self, response: httpx.Response, attempt: int) -> float | None:
        """Seconds to wait before retrying a 429/503, or None if it must not be retried."""
        if attempt >= self.retries or response.status_code not in (429, 503):
            return None
        wait = parse_retry_after(response.headers.get("retry-after"))
        if wait is None or wait > self.max_retry_wait:
            return None
        return wait

    def transport(self, exc: httpx.TransportError, call: Call, attempt: int) -> float | None:
        """Seconds to wait before retrying after ``exc``, or None to give up."""
        if attempt >= self.retries:
            return None
        never_sent = isinstance(exc, (httpx.ConnectError, httpx.ConnectTimeout))
        if not never_sent and not call.retry_safe:
            return None
        return self.delay(attempt)


def transport_error(exc: BaseException) -> TransportError:
    return TransportError(f"could not reach the parley server ({type(exc).__name__}: {exc})")


def decode(call: Call, response: httpx.Response) -> Any:
    """The value a successful call returns, or raise the typed error."""
    ok = response.status_code in call.ok if call.ok is not None else response.is_success
    if not ok:
        raise error_from_response(response.status_code, response.content, response.headers)
    if call.expect == "bytes":
        return response.content
    return _json_or_none(response)


def stored_artifact(body: Any, status: int) -> StoredArtifact:
    """The artifact PUT answer plus ``deduplicated`` (200: the bytes were already stored; 201: new)."""
    return cast(StoredArtifact, {**body, "deduplicated": status == 200})


# -- SSE ---------------------------------------------------------------------------


@dataclass
class SSEEvent:
    event: str = "message"
    data: str = ""
    id: str | None = None


class SSEParser:
    """Incremental ``text/event-stream`` parser (comments and ``retry:`` ignored)."""

    def __init__(self) -> None:
        self._buffer = ""
        self._data: list[str] = []
        self._event = ""
        self._id: str | None = None

    def feed(self, text: str) -> Iterator[SSEEvent]:
        self._buffer += text
        while True:
            cut = self._next_line_end()
            if cut is None:
                return
            line, self._buffer = self._buffer[: cut[0]], self._buffer[cut[1] :]
            event = self._line(line)
            if event is not None:
                yield event

    def _next_line_end(self) -> tuple[int, int] | None:
        for i, ch in enumerate(self._buffer):
            if ch == "\n":
                return i, i + 1
            if ch == "\r":
                if i + 1 < len(self._buffer):
                    return i, i + (2 if self._buffer[i + 1] == "\n" else 1)
                return None  # wait: \r might be followed by \n
        return None

    def _line(self, line: str) -> SSEEvent | None:
        if line == "":
            if not self._data and not self._event:
                return None
            event = SSEEvent(self._event or "message", "\n".join(self._data), self._id)
            self._data, self._event = [], ""
            return event
        if line.startswith(":"):
            return None
        name, _, value = line.partition(":")
        if value.startswith(" "):
            value = value[1:]
        if name == "data":
            self._data.append(value)
        elif name == "event":
            self._event = value
        elif name == "id" and "\x00" not in value:
            self._id = value
        return None


def _since(cursor: int | None) -> dict[str, str] | None:
    """``?since=`` for a (re)connecting tail; sent with ``Last-Event-ID`` so Caucus resumes too."""
    return None if cursor is None else {"since": str(cursor)}


def tail_item(event: SSEEvent) -> TailItem | None:
    """``{"cursor", "message"}`` for a channel-stream frame (None for anything else)."""
    if event.event != "message" or event.data == "":
        return None
    message = json.loads(event.data)
    cursor = int(event.id) if event.id is not None and event.id.isdigit() else None
    return TailItem(cursor=cursor, message=message)


# -- request builders (shared by both clients) -------------------------------------


def _message(message: Mapping[str, Any] | None, fields: Mapping[str, Any], **defaults: Any) -> dict[str, Any]:
    out: dict[str, Any] = dict(defaults)
    if message is not None:
        out.update(message)
    out.update({k: v for k, v in fields.items() if v is not None})
    if "msg_id" not in out:
        out["msg_id"] = new_ulid()
    return out


def _claim_message(
    target: str,
    message: Mapping[str, Any] | None,
    fields: Mapping[str, Any],
    default_body: str,
) -> dict[str, Any]:
    base = {"type": "claim", "body": default_body, "target": target}
    return _message(message, fields, **base)


def _assignee(assignee: Any) -> dict[str, str]:
    if isinstance(assignee, Mapping):
        return {"agent_id": assignee["agent_id"], "owner": assignee["owner"]}
    agent_id, owner = assignee
    return {"agent_id": agent_id, "owner": owner}


class _Requests:
    """Builds the :class:`Call` of every operation; the clients only send them."""

    def __init__(self, token: str | None, admin_token: str | None) -> None:
        self.token = token
        self.admin_token = admin_token

    def _auth(self, token: str | None) -> dict[str, str]:
        return {"Authorization": f"Bearer {token}"} if token else {}

    def _write(self, method: str, path: str, body: Any = None, **kw: Any) -> Call:
        return Call(
            method,
            path,
            json=body,
            headers=self._auth(self.token),
            retry_safe=True,
            idempotency_key=new_idempotency_key(),
            **kw,
        )

    def _read(self, method: str, path: str, body: Any = None, **kw: Any) -> Call:
        return Call(method, path, json=body, headers=self._auth(self.token), retry_safe=True, **kw)

    # channels
    def health(self) -> Call:
        return self._read("GET", "/healthz")

    def create_channel(self, channel: str, purpose: str | None, extra: Mapping[str, Any]) -> Call:
        body: dict[str, Any] = {"channel": channel}
        if purpose is not None:
            body["purpose"] = purpose
        body.update({k: v for k, v in extra.items() if v is not None})
        return self._write("POST", "/channels", body)

    def list_channels(self) -> Call:
        return self._read("GET", "/channels")

    def describe(self, channel: str) -> Call:
        return self._read("GET", f"/channels/{_seg(channel)}")

    def subscribe(self, channel: str) -> Call:
        return self._read("POST", f"/channels/{_seg(channel)}/subscribe")

    def append(self, channel: str, message: Mapping[str, Any] | None, fields: Mapping[str, Any]) -> Call:
        body = _message(message, fields, type="note")
        return self._write("POST", f"/channels/{_seg(channel)}/append", body)

    def read(self, channel: str, cursor: int, limit: int | None) -> Call:
        body: dict[str, Any] = {"cursor": cursor}
        if limit is not None:
            body["limit"] = limit
        return self._read("POST", f"/channels/{_seg(channel)}/read", body)

    def claim(self, channel: str, target: str, message: Any, fields: Mapping[str, Any]) -> Call:
        body = _claim_message(target, message, fields, f"claiming {target}")
        return self._write("POST", f"/channels/{_seg(channel)}/claim", body)

    def reassign(self, channel: str, target: str, assignee: Any, message: Any, fields: Mapping[str, Any]) -> Call:
        body = _claim_message(target, message, fields, f"reassigning {target}")
        body["assignee"] = _assignee(assignee)
        return self._write("POST", f"/channels/{_seg(channel)}/reassign", body)

    def done(self, channel: str, target: str, message: Any, fields: Mapping[str, Any]) -> Call:
        body = _claim_message(target, message, fields, f"done {target}")
        return self._write("POST", f"/channels/{_seg(channel)}/done", body)

    def claims(self, channel: str) -> Call:
        return self._read("GET", f"/channels/{_seg(channel)}/claims")

    def archive(self, channel: str) -> Call:
        return self._write("POST", f"/channels/{_seg(channel)}/archive")

    def put_artifact(self, channel: str, data: bytes, sha256: str | None) -> Call:
        import hashlib

        digest = sha256 if sha256 is not None else hashlib.sha256(data).hexdigest()
        call = Call(
            "PUT",
            f"/channels/{_seg(channel)}/artifacts/{_seg(digest)}",
            content=bytes(data),
            headers={**self._auth(self.token), "Content-Type": "application/octet-stream"},
            retry_safe=True,  # content-addressed: a repeat is a dedup
        )
        return call

    def get_artifact(self, channel: str, sha256: str) -> Call:
        return self._read("GET", f"/channels/{_seg(channel)}/artifacts/{_seg(sha256)}", expect="bytes")

    # admin
    def _admin(self, path: str, body: dict[str, Any], retry_safe: bool) -> Call:
        token = self.admin_token if self.admin_token is not None else self.token
        return Call("POST", path, json=body, headers=self._auth(token), retry_safe=retry_safe)

    def mint(self, agent_id: str, owner: str) -> Call:
        # Minting twice mints two tokens: never repeated once it may have been sent.
        return self._admin("/admin/tokens", {"agent_id": agent_id, "owner": owner}, retry_safe=False)

    def revoke(self, agent_id: str | None, digest: str | None) -> Call:
        body = {k: v for k, v in (("agent_id", agent_id), ("digest", digest)) if v is not None}
        return self._admin("/admin/tokens/revoke", body, retry_safe=True)

    def rotate(self, agent_id: str, owner: str, digest: str | None) -> Call:
        body: dict[str, Any] = {"agent_id": agent_id, "owner": owner}
        if digest is not None:
            body["digest"] = digest
        return self._admin("/admin/tokens/rotate", body, retry_safe=False)

    def raw(
        self,
        method: str,
        path: str,
        body: Any,
        content: bytes | None,
        idempotency_key: str | bool | None,
        headers: Mapping[str, str] | None,
    ) -> Call:
        key = new_idempotency_key() if idempotency_key is True else (idempotency_key or None)
        method = method.upper()
        return Call(
            method,
            path,
            json=body,
            content=content,
            headers={**self._auth(self.token), **(headers or {})},
            retry_safe=key is not None or method in ("GET", "HEAD"),
            idempotency_key=key,
        )

    # sessions (bodies built by _sessions, per the sessions contract)
    def session(self, spec: _sessions.RequestSpec) -> Call:
        headers = {**self._auth(self.token), **spec.headers}
        return Call(
            spec.method,
            spec.path,
            json=spec.body,
            headers=headers,
            retry_safe=spec.idempotency_key is not None or spec.method == "GET",
            idempotency_key=spec.idempotency_key,
            extra_timeout=spec.extra_timeout,
        )

    def stream_headers(self, cursor: int | None) -> dict[str, str]:
        headers = {**self._auth(self.token), "Accept": "text/event-stream", "Cache-Control": "no-cache"}
        if cursor is not None:
            headers["Last-Event-ID"] = str(cursor)
        return headers


# -- the async client --------------------------------------------------------------


async def _sleep(seconds: float) -> None:
    import anyio

    await anyio.sleep(seconds)


class AsyncParley(_sessions.AsyncSessionsMixin):
    """Asynchronous parley client (httpx.AsyncClient; trio or asyncio).

    ``token`` is the bearer for writes (and reads when the server requires
    ``PARLEY_READ_AUTH=token``); ``admin_token`` (default ``token``) for the
    ``/admin/tokens`` routes. Every method raises the typed
    :mod:`parley.errors` class of the server's answer.
    """

    def __init__(
        self,
        base_url: str,
        token: str | None = None,
        *,
        retries: int = 3,
        admin_token: str | None = None,
        timeout: float = DEFAULT_TIMEOUT,
        max_retry_wait: float = 10.0,
        backoff: float = 0.1,
        transport: httpx.AsyncBaseTransport | None = None,
        http: httpx.AsyncClient | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.token = token
        self.timeout = timeout
        self.policy = Backoff(retries=retries, base=backoff, max_retry_wait=max_retry_wait)
        self._requests = _Requests(token, admin_token)
        self._owns_http = http is None
        self._http = http or httpx.AsyncClient(
            base_url=self.base_url, timeout=timeout, transport=transport, follow_redirects=False
        )

    @property
    def retries(self) -> int:
        """How many times a failed request is retried (``retries=`` of the constructor)."""
        return self.policy.retries

    async def __aenter__(self) -> AsyncParley:
        return self

    async def __aexit__(self, *exc_info: Any) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the connection pool (``async with AsyncParley(...)`` does it for you)."""
        if self._owns_http:
            await self._http.aclose()

    # -- sending ---------------------------------------------------------------

    async def _send(self, call: Call) -> httpx.Response:
        attempt = 0
        while True:
            try:
                response = await self._http.request(
                    call.method,
                    call.path,
                    json=call.json if call.content is None else None,
                    content=call.content,
                    headers=call.request_headers(),
                    timeout=self.timeout + call.extra_timeout,
                )
            except httpx.TransportError as exc:
                wait = self.policy.transport(exc, call, attempt)
                if wait is None:
                    raise transport_error(exc) from exc
                attempt += 1
                await _sleep(wait)
                continue
            wait = self.policy.retry_after(response, attempt)
            if wait is not None:
                attempt += 1
                await _sleep(wait)
                continue
            return response

    async def _do(self, call: Call) -> Any:
        return decode(call, await self._send(call))

    async def request(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        content: bytes | None = None,
        idempotency_key: str | bool | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> Any:
        """Any route: the decoded JSON answer, or the typed error.

        ``idempotency_key=True`` sends a fresh uuid4 key (reused on retries);
        without a key only GETs are retried once the request may have been sent.
        """
        return await self._do(self._requests.raw(method, path, json, content, idempotency_key, headers))

    # -- channels --------------------------------------------------------------

    async def health(self) -> Health:
        """``GET /healthz`` → ``{"ok": True}`` while the server answers."""
        return await self._do(self._requests.health())

    async def create_channel(
        self,
        channel: str,
        *,
        purpose: str | None = None,
        verbosity: str | None = None,
        render_budget_chars: int | None = None,
        created_by: str | None = None,
    ) -> ChannelDescriptor:
        """``POST /channels`` → the descriptor (idempotent across retries).

        Raises :class:`ChannelExists` if the name is taken (by anyone).
        ``created_by`` is a placeholder: parley anchors it to the token's owner.
        """
        extra = {"verbosity": verbosity, "renderBudgetChars": render_budget_chars, "created_by": created_by}
        return await self._do(self._requests.create_channel(channel, purpose, extra))

    async def list_channels(self) -> list[ChannelDescriptor]:
        """Every channel's descriptor."""
        return (await self._do(self._requests.list_channels()))["channels"]

    async def describe(self, channel: str) -> ChannelDescriptor:
        """One channel's descriptor (``head`` is its live cursor); :class:`UnknownChannel` if none."""
        return await self._do(self._requests.describe(channel))

    async def subscribe(self, channel: str) -> int:
        """The channel head (the cursor to read or tail from for future messages only)."""
        return (await self._do(self._requests.subscribe(channel)))["cursor"]

    async def append(
        self, channel: str, message: Mapping[str, Any] | None = None, /, **fields: Any
    ) -> AppendResult:
        """Append a message → ``{"message", "cursor"}``.

        Give the message as a dict, as keyword fields (``body="hi"``), or
        both (the keywords win).

        ``type`` defaults to ``note`` and ``msg_id`` to a fresh ULID (kept
        across retries, so a retried append is never stored twice).
        """
        return await self._do(self._requests.append(channel, message, fields))

    async def append_many(
        self, channel: str, messages: Iterable[Mapping[str, Any]], /
    ) -> list[AppendResult | ParleyError]:
        """Append many messages at once → one slot per message, in order.

        Each slot is what :meth:`append` returns for that message, or the
        :class:`ParleyError` it would raise (check with ``isinstance(slot,
        ParleyError)``): a refused message never stops the others. Messages
        go as batch frames over the channel WebSocket (trio, with a token);
        otherwise, or for what a broken socket left unanswered, as
        per-request appends. ``type`` defaults to ``note`` and ``msg_id`` to
        a fresh ULID, kept on every resend, so nothing is stored twice
        (docs/sdk.md, ADR-0039).
        """
        from ._bulk import append_many_async

        return await append_many_async(self, channel, messages)

    async def read(self, channel: str, cursor: int = 0, limit: int | None = None) -> ReadPage:
        """One page ``{"messages", "cursor"}`` of messages strictly after ``cursor``.

        Pass the page's ``cursor`` to the next call; an empty page means caught up.
        """
        return await self._do(self._requests.read(channel, cursor, limit))

    async def read_all(
        self, channel: str, cursor: int = 0, limit: int | None = None
    ) -> AsyncIterator[ReadPage]:
        """Every non-empty *page* after ``cursor``, until the first empty page (caught up).

        Each page is a :class:`ReadPage` (``page["messages"]``,
        ``page["cursor"]``); for the messages one by one use :meth:`iter_messages`.
        """
        while True:
            page = await self.read(channel, cursor, limit)
            if not page["messages"]:
                return
            yield page
            cursor = page["cursor"]

    async def iter_messages(
        self, channel: str, cursor: int = 0, limit: int | None = None
    ) -> AsyncIterator[Message]:
        """Every message after ``cursor``, one by one, until caught up (pages of ``limit`` underneath).

        ``async for message in client.iter_messages("war-room"): print(message["body"])``
        """
        async for page in self.read_all(channel, cursor, limit):
            for message in page["messages"]:
                yield message

    async def claim(
        self,
        channel: str,
        target: str,
        message: Mapping[str, Any] | None = None,
        /,
        *,
        lease_ttl: int | None = None,
        heartbeat: bool | None = None,
        **fields: Any,
    ) -> ClaimOutcome:
        """First-write-wins claim of ``target`` → ``{"outcome": "granted"|"already_claimed", …}``.

        ``lease_ttl`` (seconds) lets the claim expire unless renewed.
        """
        fields = {**fields, "lease_ttl": lease_ttl, "heartbeat": heartbeat}
        return await self._do(self._requests.claim(channel, target, message, fields))

    async def reassign(
        self,
        channel: str,
        target: str,
        assignee: Mapping[str, str] | tuple[str, str],
        message: Mapping[str, Any] | None = None,
        /,
        *,
        lease_ttl: int | None = None,
        **fields: Any,
    ) -> ClaimOutcome:
        """Hand the claim of ``target`` to ``assignee`` (``(agent_id, owner)`` or a mapping)."""
        fields = {**fields, "lease_ttl": lease_ttl}
        return await self._do(self._requests.reassign(channel, target, assignee, message, fields))

    async def done(
        self, channel: str, target: str, message: Mapping[str, Any] | None = None, /, **fields: Any
    ) -> ClaimOutcome:
        """Mark the claim of ``target`` resolved → ``granted``, ``already_claimed`` or ``not_held``."""
        return await self._do(self._requests.done(channel, target, message, fields))

    async def claims(self, channel: str) -> list[ClaimEntry]:
        """The channel's live claims (expired leases left out)."""
        return (await self._do(self._requests.claims(channel)))["claims"]

    async def archive(self, channel: str) -> ChannelDescriptor:
        """Make the channel read-only (its owner only) → the descriptor, ``archived: True``."""
        return await self._do(self._requests.archive(channel))

    async def put_artifact(self, channel: str, data: bytes, sha256: str | None = None) -> StoredArtifact:
        """Store a blob → ``{"uri", "sha256", "size", "deduplicated"}`` (``sha256`` computed if not given)."""
        call = self._requests.put_artifact(channel, data, sha256)
        response = await self._send(call)
        return stored_artifact(decode(call, response), response.status_code)

    async def get_artifact(self, channel: str, sha256: str) -> bytes | None:
        """The blob's bytes, or None when the channel has no such blob."""
        try:
            return await self._do(self._requests.get_artifact(channel, sha256))
        except ParleyError as error:
            if error.code == "not_found":
                return None
            raise

    # -- admin -----------------------------------------------------------------

    async def mint(self, agent_id: str, owner: str) -> Token:
        """``{"token", "agent_id", "owner"}`` (the token is shown only once)."""
        return await self._do(self._requests.mint(agent_id, owner))

    async def revoke(self, *, agent_id: str | None = None, digest: str | None = None) -> bool:
        """Revoke minted tokens (one by ``digest``, or all of ``agent_id``'s); True if any was."""
        return (await self._do(self._requests.revoke(agent_id, digest)))["revoked"]

    async def rotate(self, agent_id: str, owner: str, *, digest: str | None = None) -> Token:
        """Mint a new token for the identity and revoke its old ones → the new token."""
        return await self._do(self._requests.rotate(agent_id, owner, digest))

    # -- live tails ------------------------------------------------------------

    def tail(self, channel: str, since: int | None = None, *, reconnect: bool = True) -> SSETail:
        """Live tail over SSE: an async iterator of ``{"cursor", "message"}``.

        With ``since=None`` the tail starts at the current head (future
        messages only). The cursor of the last frame is remembered and sent
        as ``Last-Event-ID`` on reconnect, so a broken connection loses and
        repeats nothing. Use as ``async with client.tail(c) as t: async for
        item in t`` (or iterate directly and ``aclose()``).
        """
        return SSETail(self, channel, since, reconnect)

    def tail_ws(self, channel: str, since: int | None = None, *, reconnect: bool = True) -> WSTail:
        """Live tail over ``GET /channels/:c/ws`` (trio only).

        ``async with client.tail_ws(c) as t: async for item in t`` — items are
        ``{"cursor", "message"}``; reconnects resume with ``?since=<cursor>``.
        """
        return WSTail(self, channel, since, reconnect)


class SSETail:
    """The SSE tail iterator (see :meth:`AsyncParley.tail`)."""

    def __init__(self, client: AsyncParley, channel: str, since: int | None, reconnect: bool) -> None:
        self.client = client
        self.channel = channel
        #: Cursor after the last message yielded (None until known).
        self.cursor = since
        self.reconnect = reconnect
        self.connections = 0
        self._gen: AsyncIterator[TailItem] | None = None

    def __aiter__(self) -> SSETail:
        return self

    async def __anext__(self) -> TailItem:
        if self._gen is None:
            self._gen = self._run()
        return await self._gen.__anext__()

    async def __aenter__(self) -> SSETail:
        return self

    async def __aexit__(self, *exc_info: Any) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Stop tailing and close the stream (``async with`` does it for you)."""
        if self._gen is not None:
            await cast(Any, self._gen).aclose()

    async def _run(self) -> AsyncIterator[TailItem]:
        client = self.client
        if self.cursor is None:
            self.cursor = await client.subscribe(self.channel)
        failures = 0
        path = f"/channels/{_seg(self.channel)}/stream"
        while True:
            headers = client._requests.stream_headers(self.cursor)
            try:
                timeout = httpx.Timeout(client.timeout, read=None)
                async with client._http.stream(
                    "GET", path, params=_since(self.cursor), headers=headers, timeout=timeout
                ) as response:
                    if not response.is_success:
                        content = await response.aread()
                        error = error_from_response(response.status_code, content, response.headers)
                        wait = client.policy.retry_after(response, failures)
                        if wait is None or not self.reconnect:
                            raise error
                        failures += 1
                        await _sleep(wait)
                        continue
                    self.connections += 1
                    parser = SSEParser()
                    async for text in response.aiter_text():
                        for event in parser.feed(text):
                            item = tail_item(event)
                            if item is None:
                                continue
                            failures = 0
                            if item["cursor"] is None and self.cursor is not None:
                                item["cursor"] = self.cursor + 1  # a server without `id:` lines (Caucus)
                            self.cursor = item["cursor"]
                            yield item
            except httpx.TransportError as exc:
                if not self.reconnect or failures >= client.policy.retries:
                    raise transport_error(exc) from exc
                await _sleep(client.policy.delay(failures))
                failures += 1
                continue
            # The server ended the stream (shutdown): resume from the cursor.
            if not self.reconnect or failures >= client.policy.retries:
                return
            await _sleep(client.policy.delay(failures))
            failures += 1


class WSTail:
    """The WebSocket tail (see :meth:`AsyncParley.tail_ws`); trio only."""

    def __init__(self, client: AsyncParley, channel: str, since: int | None, reconnect: bool) -> None:
        self.client = client
        self.channel = channel
        self.cursor = since
        self.reconnect = reconnect
        self.connections = 0
        self._nursery_cm: Any = None
        self._nursery: Any = None
        self._ws: Any = None

    async def __aenter__(self) -> WSTail:
        import trio

        if self.cursor is None:
            self.cursor = await self.client.subscribe(self.channel)
        self._nursery_cm = trio.open_nursery()
        self._nursery = await self._nursery_cm.__aenter__()
        try:
            await self._connect()
        except BaseException as exc:
            await self._nursery_cm.__aexit__(type(exc), exc, exc.__traceback__)
            raise
        return self

    async def __aexit__(self, *exc_info: Any) -> Any:
        if self._ws is not None:
            await self._ws.aclose()
            self._ws = None
        self._nursery.cancel_scope.cancel()
        return await self._nursery_cm.__aexit__(*exc_info)

    def _url(self) -> str:
        base = self.client.base_url
        if base.startswith("https://"):
            base = "wss://" + base[len("https://") :]
        elif base.startswith("http://"):
            base = "ws://" + base[len("http://") :]
        url = f"{base}/channels/{_seg(self.channel)}/ws"
        if self.cursor is not None:
            url += f"?since={self.cursor}"
        return url

    async def _connect(self) -> None:
        import trio_websocket

        headers = []
        if self.client.token:
            headers.append((b"authorization", f"Bearer {self.client.token}".encode()))
        attempt = 0
        while True:
            try:
                self._ws = await trio_websocket.connect_websocket_url(
                    self._nursery, self._url(), extra_headers=headers, max_message_size=8 * 1024 * 1024
                )
                self.connections += 1
                return
            except trio_websocket.ConnectionRejected as rejected:
                hdrs = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in rejected.headers}
                error = error_from_response(rejected.status_code, rejected.body or b"", hdrs)
                wait = None
                if rejected.status_code in (429, 503) and attempt < self.client.policy.retries:
                    wait = error.retry_after
                    if wait is not None and wait > self.client.policy.max_retry_wait:
                        wait = None
                if wait is None:
                    raise error from None
            except (OSError, trio_websocket.HandshakeError) as exc:
                if attempt >= self.client.policy.retries:
                    raise transport_error(exc) from exc
                wait = self.client.policy.delay(attempt)
            attempt += 1
            await _sleep(wait)

    def __aiter__(self) -> WSTail:
        return self

    async def __anext__(self) -> TailItem:
        import trio_websocket

        if self._ws is None:
            raise RuntimeError("use `async with client.tail_ws(...) as tail`")
        while True:
            try:
                text = await self._ws.get_message()
            except trio_websocket.ConnectionClosed as exc:
                if not self.reconnect:
                    raise StopAsyncIteration from exc
                await self._connect()
                continue
            frame: TailItem = json.loads(text)
            if frame.get("cursor") is not None:
                self.cursor = frame["cursor"]
            return frame


__all__ = ["AsyncParley", "Call", "SSEParser", "SSETail", "WSTail", "new_idempotency_key", "new_ulid"]
