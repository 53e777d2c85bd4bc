"""``append_many``: many appends in one call, pipelined over the channel WebSocket.

One call sends its messages as ``append_many`` batch frames on
``GET /channels/:c/ws?tail=0`` (ADR-0009, ADR-0039): up to :data:`BATCH`
messages per frame, :data:`WINDOW` frames in flight, each answered by one
``acks`` frame after its commit. Every message gets exactly the HTTP route's
rules (validation, seatbelts, ``msg_id`` idempotency), so the result of each
is what :meth:`append` would return for it, or the :class:`ParleyError` it
would raise, in its slot: a refused message never stops the others.

What is not answered over the socket (WebSockets off: the upgrade answers
426; not running under trio; no token; a caller-given HTTP transport; the
connection broke) is sent as ordinary per-request appends, one at a time,
so the channel stores the messages in list order on either path. A message resent that way keeps its
``msg_id``, so a message the server had already stored is answered as a
replay, never stored twice. Slots refused with 429/503 and a
``Retry-After`` within ``max_retry_wait`` are sent again, like
:meth:`append`'s retries.

This module holds the steps both clients share; the clients drive them.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, cast

from ._errors import ParleyError, TransportError, build_error, error_from_body
from .types import AppendResult

#: Messages per ``append_many`` frame (the server's cap, ADR-0039).
BATCH = 256
#: Batch frames in flight on one socket.
WINDOW = 4

#: One slot of :meth:`append_many`'s answer: the stored message, or why it was refused.
Slot = AppendResult | ParleyError


class NoWebSocket(Exception):
    """The server (or the caller's event loop) cannot take the socket path: use HTTP."""


def prepare(messages: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """The bodies ``append`` would send: ``type`` defaults to note, ``msg_id`` minted once."""
    from ._async import _message

    bodies = []
    for message in messages:
        if not isinstance(message, Mapping):
            raise TypeError(f"append_many takes mappings, got {type(message).__name__}")
        bodies.append(_message(message, {}, type="note"))
    return bodies


def slot_from_wire(slot: Any) -> Slot:
    """One slot of an ``acks`` frame as the SDK's result: the body, or the typed error."""
    if not isinstance(slot, dict) or not isinstance(slot.get("status"), int):
        return ParleyError(f"malformed acks slot from the server: {str(slot)[:80]}")
    status = slot["status"]
    if 200 <= status < 300:
        return cast(AppendResult, slot.get("body"))
    retry = slot.get("retry_after")
    headers = {"retry-after": str(retry)} if retry is not None else None
    return error_from_body(status, slot, headers)


def resendable(results: list[Slot | None], max_wait: float) -> list[int]:
    """Indices of the slots refused as 429/503 with a ``Retry-After`` of at
    most ``max_wait`` seconds: the server did not apply them; send them again."""
    return [
        i
        for i, r in enumerate(results)
        if isinstance(r, ParleyError)
        and r.status in (429, 503)
        and r.retry_after is not None
        and r.retry_after <= max_wait
    ]


def ws_url(base_url: str, channel: str) -> str:
    from ._async import _seg

    if base_url.startswith("https://"):
        base_url = "wss://" + base_url[len("https://") :]
    elif base_url.startswith("http://"):
        base_url = "ws://" + base_url[len("http://") :]
    return f"{base_url}/channels/{_seg(channel)}/ws?tail=0"


def _dumps(value: Any) -> str:
    try:
        import orjson

        return orjson.dumps(value).decode()
    except ImportError:  # pragma: no cover - orjson is a parley dependency
        import json

        return json.dumps(value, separators=(",", ":"))


def _loads(text: str | bytes) -> Any:
    import orjson

    return orjson.loads(text)


async def over_websocket(
    base_url: str,
    token: str,
    channel: str,
    bodies: list[dict[str, Any]],
    indices: list[int],
    results: list[Slot | None],
    timeout: float,
    replayed: list[bool] | None = None,
) -> None:
    """Send ``bodies[i]`` for each ``i`` in ``indices`` as batch frames and fill
    ``results[i]`` from the acks. Raises :class:`NoWebSocket` when the socket
    path is not available; slots left None were not answered (the connection
    broke): the caller sends them over HTTP. Trio only."""
    import sniffio

    try:
        if sniffio.current_async_library() != "trio":
            raise NoWebSocket()
    except sniffio.AsyncLibraryNotFoundError:
        raise NoWebSocket() from None
    import trio
    import trio_websocket

    from ._errors import error_from_response

    chunks = [indices[k : k + BATCH] for k in range(0, len(indices), BATCH)]
    headers = [(b"authorization", f"Bearer {token}".encode())]
    try:
        with trio.fail_after(timeout + len(chunks)):  # a hung server: the rest goes over HTTP
            async with trio_websocket.open_websocket_url(
                ws_url(base_url, channel), extra_headers=headers, max_message_size=64 * 1024 * 1024
            ) as ws:
                window = trio.Semaphore(WINDOW)

                async def sender() -> None:
                    for number, chunk in enumerate(chunks):
                        await window.acquire()
                        await ws.send_message(_dumps({"id": number, "append_many": [bodies[i] for i in chunk]}))

                async with trio.open_nursery() as nursery:
                    nursery.start_soon(sender)
                    for _ in chunks:
                        frame = _loads(await ws.get_message())
                        chunk = chunks[frame.get("id")] if isinstance(frame.get("id"), int) else []
                        if frame.get("type") == "acks" and len(frame.get("results", ())) == len(chunk):
                            for i, slot in zip(chunk, frame["results"]):
                                results[i] = slot_from_wire(slot)
                                if replayed is not None and isinstance(slot, dict) and slot.get("replayed"):
                                    replayed[i] = True
                        elif frame.get("type") == "error":  # the whole frame refused (a revoked token)
                            error = build_error(str(frame.get("code")), str(frame.get("message")))
                            for i in chunk:
                                results[i] = error
                        window.release()
    except trio_websocket.ConnectionRejected as rejected:
        if rejected.status_code == 426:
            raise NoWebSocket() from None
        hdrs = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in rejected.headers}
        error = error_from_response(rejected.status_code, rejected.body or b"", hdrs)
        for i in indices:
            if results[i] is None:
                results[i] = error
    except (OSError, trio_websocket.HandshakeError, trio_websocket.ConnectionClosed, trio.TooSlowError, ValueError):
        pass  # unanswered slots stay None: the caller resends them per request


def unanswered(results: list[Slot | None], indices: list[int]) -> list[int]:
    return [i for i in indices if results[i] is None]


def finish(results: list[Slot | None]) -> list[Slot]:
    """Every slot filled (a slot no path could answer says so)."""
    missing = TransportError("no answer for this message")
    return [missing if r is None else r for r in results]


def _wait(results: list[Slot | None], indices: list[int]) -> float:
    return max(cast(ParleyError, results[i]).retry_after or 0.0 for i in indices)


def socket_usable(client: Any) -> bool:
    """The socket path needs a token and the client's own HTTP transport: a
    caller-given transport (a proxy, an in-process ASGI app, a test's fault
    injector) sees every request, so nothing may bypass it."""
    import httpx

    transport = getattr(client._http, "_transport", None)
    plain = type(transport) in (httpx.AsyncHTTPTransport, httpx.HTTPTransport)
    return client.token is not None and plain and not getattr(client._http, "_mounts", None)


def _http_slot(call: Any, response: Any, replayed: list[bool], i: int) -> Slot:
    from ._async import decode

    replayed[i] = response.headers.get("idempotent-replayed") == "true"
    return cast(Slot, decode(call, response))


def _undelivered(error: ParleyError) -> bool:
    return error.status == 0 or error.status == 429 or error.status >= 500


def _halted(results: list[Slot | None], rest: list[int], k: int) -> bool:
    """Per request, a message that could not be delivered (no answer, or a
    429/5xx left after the client's own retries) stops the ones after it:
    sending them would store them before it. Their slots say so."""
    previous = results[rest[k - 1]] if k else None
    failed = previous if isinstance(previous, ParleyError) and _undelivered(previous) else None
    if failed is None:
        return False
    for j in rest[k:]:
        results[j] = TransportError(f"not sent: an earlier message was not delivered ({failed.code})")
    return True


async def send_many_async(client: Any, channel: str, bodies: list[dict[str, Any]]) -> tuple[list[Slot], list[bool]]:
    """The slots of ``bodies`` (already prepared) and whether each was an
    idempotent replay; the engine of :meth:`AsyncParley.append_many` and of
    the outbox drain."""
    import anyio

    results: list[Slot | None] = [None] * len(bodies)
    replayed = [False] * len(bodies)
    pending = list(range(len(bodies)))
    use_ws = socket_usable(client)
    for attempt in range(client.policy.retries + 1):
        if use_ws:
            try:
                await over_websocket(
                    client.base_url, client.token, channel, bodies, pending, results, client.timeout, replayed
                )
            except NoWebSocket:
                use_ws = False
        rest = unanswered(results, pending)
        for k, i in enumerate(rest):  # one at a time, in order: the channel stores them in list order
            if _halted(results, rest, k):
                break
            call = client._requests.append(channel, bodies[i], {})
            try:
                results[i] = _http_slot(call, await client._send(call), replayed, i)
            except ParleyError as error:
                results[i] = error
        # A per-request append has already retried itself (client.policy).
        pending = [i for i in resendable(results, client.policy.max_retry_wait) if i not in set(rest)]
        if not pending or attempt == client.policy.retries:
            break
        await anyio.sleep(_wait(results, pending))
        for i in pending:
            results[i] = None
    return finish(results), replayed


def send_many_sync(client: Any, channel: str, bodies: list[dict[str, Any]]) -> tuple[list[Slot], list[bool]]:
    """:func:`send_many_async` for :class:`Parley`: the socket path runs under
    trio in a helper thread (the caller may have no event loop, or another
    one); the rest is sent per request on the client's own connection pool."""
    import time

    results: list[Slot | None] = [None] * len(bodies)
    replayed = [False] * len(bodies)
    pending = list(range(len(bodies)))
    use_ws = socket_usable(client)
    for attempt in range(client.policy.retries + 1):
        if use_ws:
            use_ws = _ws_in_thread(client, channel, bodies, pending, results, replayed)
        rest = unanswered(results, pending)
        for k, i in enumerate(rest):
            if _halted(results, rest, k):
                break
            call = client._requests.append(channel, bodies[i], {})
            try:
                results[i] = _http_slot(call, client._send(call), replayed, i)
            except ParleyError as error:
                results[i] = error
        pending = [i for i in resendable(results, client.policy.max_retry_wait) if i not in set(rest)]
        if not pending or attempt == client.policy.retries:
            break
        time.sleep(_wait(results, pending))
        for i in pending:
            results[i] = None
    return finish(results), replayed


def _ws_in_thread(
    client: Any,
    channel: str,
    bodies: list[dict[str, Any]],
    pending: list[int],
    results: list[Slot | None],
    replayed: list[bool],
) -> bool:
    """Run :func:`over_websocket` under ``trio.run`` in a new thread; False when
    the socket path is not available (the caller then uses HTTP from now on)."""
    import threading

    import trio

    outcome: list[BaseException | None] = [None]

    def run() -> None:
        try:
            trio.run(
                over_websocket, client.base_url, client.token, channel, bodies, pending, results, client.timeout, replayed
            )
        except BaseException as exc:  # handed to the calling thread
            outcome[0] = exc

    thread = threading.Thread(target=run, name="parley-append-many", daemon=True)
    thread.start()
    thread.join()
    if isinstance(outcome[0], NoWebSocket):
        return False
    if outcome[0] is not None:
        raise outcome[0]
    return True


async def append_many_async(client: Any, channel: str, messages: Iterable[Mapping[str, Any]]) -> list[Slot]:
    return (await send_many_async(client, channel, prepare(messages)))[0]


def append_many_sync(client: Any, channel: str, messages: Iterable[Mapping[str, Any]]) -> list[Slot]:
    return send_many_sync(client, channel, prepare(messages))[0]
