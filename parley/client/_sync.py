"""The blocking client :class:`Parley` (httpx.Client): the same calls as :class:`AsyncParley`.

Requests are built by the shared :class:`parley.client._async._Requests`, so
both clients send byte-identical requests, with the same retry and
``Idempotency-Key`` rules. There is no WebSocket tail here (use
:meth:`Parley.tail`, SSE, or the async client's ``tail_ws``).
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

import httpx

from . import _sessions
from ._async import (
    DEFAULT_TIMEOUT,
    Backoff,
    Call,
    SSEParser,
    _Requests,
    _seg,
    _since,
    decode,
    stored_artifact,
    tail_item,
    transport_error,
)
from ._errors import ParleyError, error_from_response
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


class Parley(_sessions.SyncSessionsMixin):
    """Synchronous parley client; see :class:`parley.client.AsyncParley` for the semantics."""

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
        transport: httpx.BaseTransport | None = None,
        http: httpx.Client | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.token = token
        self.timeout = timeout
        self.policy = Backoff(retries=retries, base=backoff, max_retry_wait=max_retry_wait)
        self._requests = _Requests(token, admin_token)
        self._owns_http = http is None
        self._http = http or httpx.Client(
            base_url=self.base_url, timeout=timeout, transport=transport, follow_redirects=False
        )

    @property
    def retries(self) -> int:
        """How many times a failed request is retried (``retries=`` of the constructor)."""
        return self.policy.retries

    def __enter__(self) -> Parley:
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.close()

    def close(self) -> None:
        """Close the connection pool (``with Parley(...) as client`` does it for you)."""
        if self._owns_http:
            self._http.close()

    # -- sending ---------------------------------------------------------------

    def _send(self, call: Call) -> httpx.Response:
        attempt = 0
        while True:
            try:
                response = self._http.request(
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
                time.sleep(wait)
                continue
            wait = self.policy.retry_after(response, attempt)
            if wait is not None:
                attempt += 1
                time.sleep(wait)
                continue
            return response

    def _do(self, call: Call) -> Any:
        return decode(call, self._send(call))

    def request(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        content: bytes | None = None,
        idempotency_key: str | bool | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> Any:
        """Any route: the decoded JSON answer, or the typed error (see ``AsyncParley.request``)."""
        return self._do(self._requests.raw(method, path, json, content, idempotency_key, headers))

    # -- channels --------------------------------------------------------------

    def health(self) -> Health:
        """``GET /healthz`` → ``{"ok": True}`` while the server answers."""
        return self._do(self._requests.health())

    def create_channel(
        self,
        channel: str,
        *,
        purpose: str | None = None,
        verbosity: str | None = None,
        render_budget_chars: int | None = None,
        created_by: str | None = None,
    ) -> ChannelDescriptor:
        """``POST /channels`` → the descriptor; :class:`ChannelExists` if the name is taken."""
        extra = {"verbosity": verbosity, "renderBudgetChars": render_budget_chars, "created_by": created_by}
        return self._do(self._requests.create_channel(channel, purpose, extra))

    def list_channels(self) -> list[ChannelDescriptor]:
        """Every channel's descriptor."""
        return self._do(self._requests.list_channels())["channels"]

    def describe(self, channel: str) -> ChannelDescriptor:
        """One channel's descriptor (``head`` is its live cursor); :class:`UnknownChannel` if none."""
        return self._do(self._requests.describe(channel))

    def subscribe(self, channel: str) -> int:
        """The channel head (the cursor to read or tail from for future messages only)."""
        return self._do(self._requests.subscribe(channel))["cursor"]

    def append(self, channel: str, message: Mapping[str, Any] | None = None, /, **fields: Any) -> AppendResult:
        """Append a message (a dict and/or keyword fields) → ``{"message", "cursor"}``.

        ``type`` defaults to ``note`` and ``msg_id`` to a fresh ULID (kept
        across retries, so a retried append is never stored twice).
        """
        return self._do(self._requests.append(channel, message, fields))

    def append_many(self, channel: str, messages: Iterable[Mapping[str, Any]], /) -> list[AppendResult | ParleyError]:
        """Append many messages at once → one slot per message, in order (see
        ``AsyncParley.append_many``). The WebSocket path runs under trio in a
        helper thread; the per-request fallback sends one request at a time."""
        from ._bulk import append_many_sync

        return append_many_sync(self, channel, messages)

    def read(self, channel: str, cursor: int = 0, limit: int | None = None) -> ReadPage:
        """One page ``{"messages", "cursor"}`` of messages strictly after ``cursor`` (empty: caught up)."""
        return self._do(self._requests.read(channel, cursor, limit))

    def read_all(self, channel: str, cursor: int = 0, limit: int | None = None) -> Iterator[ReadPage]:
        """Every non-empty *page* after ``cursor``, until the first empty page (caught up).

        For the messages one by one use :meth:`iter_messages`.
        """
        while True:
            page = self.read(channel, cursor, limit)
            if not page["messages"]:
                return
            yield page
            cursor = page["cursor"]

    def iter_messages(self, channel: str, cursor: int = 0, limit: int | None = None) -> Iterator[Message]:
        """Every message after ``cursor``, one by one, until caught up (pages of ``limit`` underneath).

        ``for message in client.iter_messages("war-room"): print(message["body"])``
        """
        for page in self.read_all(channel, cursor, limit):
            yield from page["messages"]

    def claim(
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
        """First-write-wins claim of ``target`` → ``{"outcome": "granted"|"already_claimed", …}``."""
        fields = {**fields, "lease_ttl": lease_ttl, "heartbeat": heartbeat}
        return self._do(self._requests.claim(channel, target, message, fields))

    def reassign(
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
        return self._do(self._requests.reassign(channel, target, assignee, message, fields))

    def done(self, channel: str, target: str, message: Mapping[str, Any] | None = None, /, **fields: Any) -> ClaimOutcome:
        """Mark the claim of ``target`` resolved → ``granted``, ``already_claimed`` or ``not_held``."""
        return self._do(self._requests.done(channel, target, message, fields))

    def claims(self, channel: str) -> list[ClaimEntry]:
        """The channel's live claims (expired leases left out)."""
        return self._do(self._requests.claims(channel))["claims"]

    def archive(self, channel: str) -> ChannelDescriptor:
        """Make the channel read-only (its owner only) → the descriptor, ``archived: True``."""
        return self._do(self._requests.archive(channel))

    def put_artifact(self, channel: str, data: bytes, sha256: str | None = None) -> StoredArtifact:
        """Store a blob → ``{"uri", "sha256", "size", "deduplicated"}`` (``sha256`` computed if not given)."""
        call = self._requests.put_artifact(channel, data, sha256)
        response = self._send(call)
        return stored_artifact(decode(call, response), response.status_code)

    def get_artifact(self, channel: str, sha256: str) -> bytes | None:
        """The blob's bytes, or None when the channel has no such blob."""
        try:
            return self._do(self._requests.get_artifact(channel, sha256))
        except ParleyError as error:
            if error.code == "not_found":
                return None
            raise

    # -- admin -----------------------------------------------------------------

    def mint(self, agent_id: str, owner: str) -> Token:
        """``{"token", "agent_id", "owner"}`` (the token is shown only once)."""
        return self._do(self._requests.mint(agent_id, owner))

    def revoke(self, *, agent_id: str | None = None, digest: str | None = None) -> bool:
        """Revoke minted tokens (one by ``digest``, or all of ``agent_id``'s); True if any was."""
        return self._do(self._requests.revoke(agent_id, digest))["revoked"]

    def rotate(self, agent_id: str, owner: str, *, digest: str | None = None) -> Token:
        """Mint a new token for the identity and revoke its old ones → the new token."""
        return self._do(self._requests.rotate(agent_id, owner, digest))

    # -- live tail ---------------------------------------------------------------

    def tail(self, channel: str, since: int | None = None, *, reconnect: bool = True) -> Iterator[TailItem]:
        """Blocking SSE tail: yields ``{"cursor", "message"}`` forever (resumes with ``Last-Event-ID``)."""
        cursor: int | None = since if since is not None else self.subscribe(channel)
        failures = 0
        path = f"/channels/{_seg(channel)}/stream"
        while True:
            headers = self._requests.stream_headers(cursor)
            try:
                timeout = httpx.Timeout(self.timeout, read=None)
                with self._http.stream(
                    "GET", path, params=_since(cursor), headers=headers, timeout=timeout
                ) as response:
                    if not response.is_success:
                        error = error_from_response(response.status_code, response.read(), response.headers)
                        wait = self.policy.retry_after(response, failures)
                        if wait is None or not reconnect:
                            raise error
                        failures += 1
                        time.sleep(wait)
                        continue
                    parser = SSEParser()
                    for text in response.iter_text():
                        for event in parser.feed(text):
                            item = tail_item(event)
                            if item is None:
                                continue
                            failures = 0
                            if item["cursor"] is None and cursor is not None:
                                item["cursor"] = cursor + 1  # a server without `id:` lines (Caucus)
                            cursor = item["cursor"]
                            yield item
            except httpx.TransportError as exc:
                if not reconnect or failures >= self.policy.retries:
                    raise transport_error(exc) from exc
                time.sleep(self.policy.delay(failures))
                failures += 1
                continue
            if not reconnect or failures >= self.policy.retries:
                return
            time.sleep(self.policy.delay(failures))
            failures += 1


__all__ = ["Parley"]
