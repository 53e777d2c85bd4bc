"""Client SDK tests, all against a live server (``server`` fixture / ``running_server``).

Helpers: :class:`Faulty` wraps a real httpx transport and injects the network
faults the SDK must survive — a response lost after the server handled the
request, a refused connection, a synthetic 503 with ``Retry-After`` — and
:class:`CutStreams` breaks SSE streams after their first frame.
"""

from __future__ import annotations

from collections.abc import Callable

import httpx


class Faulty(httpx.AsyncBaseTransport):
    """A real transport that misbehaves for the first ``times`` requests ``match`` accepts.

    ``mode``: ``lose`` (the server handles the request, the client never sees
    the answer), ``refuse`` (connection refused: never sent), ``unavailable``
    (a 503 ``Retry-After: 0`` without reaching the server).
    """

    def __init__(self, match: Callable[[httpx.Request], bool], *, mode: str = "lose", times: int = 1) -> None:
        self.inner = httpx.AsyncHTTPTransport()
        self.match = match
        self.mode = mode
        self.remaining = times
        self.requests: list[httpx.Request] = []
        self.responses: list[httpx.Response] = []

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        if self.remaining > 0 and self.match(request):
            self.remaining -= 1
            if self.mode == "refuse":
                raise httpx.ConnectError("connection refused (injected)", request=request)
            if self.mode == "unavailable":
                return httpx.Response(
                    503,
                    headers={"Retry-After": "0"},
                    json={"error": {"code": "unavailable", "message": "injected"}},
                )
            response = await self.inner.handle_async_request(request)
            await response.aread()
            await response.aclose()
            self.responses.append(response)
            raise httpx.ReadError("connection reset after the request was handled (injected)", request=request)
        response = await self.inner.handle_async_request(request)
        self.responses.append(response)
        return response

    async def aclose(self) -> None:
        await self.inner.aclose()


class _CutAfterFirstFrame(httpx.AsyncByteStream):
    def __init__(self, inner) -> None:
        self.inner = inner

    async def __aiter__(self):
        # A chunk may carry several frames (a commit batch is one chunk, ADR-0042):
        # cut right after the end of the first data frame, wherever it falls.
        async for chunk in self.inner:
            at = chunk.find(b"data:")
            if at < 0:
                yield chunk
                continue
            end = chunk.find(b"\n\n", at)
            yield chunk if end < 0 else chunk[: end + 2]
            raise httpx.ReadError("stream cut (injected)")

    async def aclose(self) -> None:
        await self.inner.aclose()


class CutStreams(httpx.AsyncBaseTransport):
    """Breaks the first ``times`` SSE streams right after their first ``data:`` frame."""

    def __init__(self, times: int = 1) -> None:
        self.inner = httpx.AsyncHTTPTransport()
        self.remaining = times
        self.stream_requests: list[httpx.Request] = []

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        response = await self.inner.handle_async_request(request)
        if request.url.path.endswith("/stream"):
            self.stream_requests.append(request)
            if self.remaining > 0:
                self.remaining -= 1
                return httpx.Response(
                    response.status_code,
                    headers=response.headers,
                    stream=_CutAfterFirstFrame(response.stream),
                    extensions=response.extensions,
                )
        return response

    async def aclose(self) -> None:
        await self.inner.aclose()


def is_post(suffix: str) -> Callable[[httpx.Request], bool]:
    return lambda request: request.method == "POST" and request.url.path.endswith(suffix)
