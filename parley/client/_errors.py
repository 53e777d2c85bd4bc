"""Typed errors for the client SDK: the server's own error classes, rebuilt from the wire.

Every class here *is* the class of :mod:`parley.errors` (re-exported, not
copied), so ``except parley.client.ChannelFull`` and
``except parley.errors.ChannelFull`` catch the same thing whether the error
was raised in-process or came back over HTTP. :func:`error_from_response`
rebuilds the leaf from the envelope ``{"error": {"code", "message",
"issues"?}}`` with :func:`parley.errors.error_class_for` and keeps
``.code``, ``.status``, ``.message``, ``.issues`` and ``.retry_after`` (from
the ``Retry-After`` header, in seconds). The families of
:mod:`parley.errors` (``Refused`` ⊃ ``Conflict``, ``Retryable`` ⊃
``ServiceUnavailable``) are here too: ``except Retryable`` catches every
429/503 however it was raised.

:class:`TransportError` (no answer at all, retries exhausted) is SDK-only
and sits directly under ``ParleyError``: whether the request was applied is
unknown, so it is neither ``Refused`` nor ``Retryable``.
"""

from __future__ import annotations

import email.utils
import time
from collections.abc import Mapping
from typing import Any

from ..errors import (
    ERROR_CLASSES,
    FAMILIES,
    STATUS_BY_CODE,
    ArtifactIntegrity,
    ArtifactTooLarge,
    ChannelArchived,
    ChannelExists,
    ChannelFull,
    ChannelLimit,
    Conflict,
    DuplicatePost,
    Forbidden,
    IdempotencyConflict,
    InternalError,
    InvalidChannelName,
    InvalidCursor,
    InvalidJson,
    InvalidMessage,
    InvalidRequest,
    MethodNotAllowed,
    MissingSession,
    MissingToken,
    MsgIdConflict,
    NotFound,
    ParleyError,
    PayloadTooLarge,
    RateLimited,
    Refused,
    Retryable,
    ServiceUnavailable,
    RequestTimeout,
    SessionLimit,
    StaleToken,
    StreamCapacity,
    TurnInFlight,
    Unauthorized,
    Unavailable,
    UnknownChannel,
    UnknownSession,
    UpgradeRequired,
    error_class_for,
)

#: The code given to a non-2xx answer whose body is not an error envelope.
HTTP_ERROR = "http_error"


class TransportError(ParleyError):
    """The server could not be reached (or the connection broke) and retries ran out."""

    code = "transport_error"
    status = 0
    default_message = "could not reach the parley server"


def parse_retry_after(value: str | None) -> float | None:
    """``Retry-After`` as seconds: delta-seconds or an HTTP-date; ``None`` if absent/garbled."""
    if value is None:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        if when is None:
            return None
        seconds = when.timestamp() - time.time()
    return max(0.0, seconds)


def build_error(
    code: str,
    message: str,
    *,
    status: int | None = None,
    issues: list[str] | None = None,
    retry_after: float | None = None,
) -> ParleyError:
    """An instance of the leaf class for ``code`` carrying the server's exact message.

    The leaf's own ``__init__`` is bypassed (``InvalidMessage`` would rebuild
    its message from ``issues``): the instance keeps what the server said.
    """
    cls = error_class_for(code)
    error = cls.__new__(cls)
    ParleyError.__init__(error, message, issues=issues, retry_after=retry_after)
    if cls is ParleyError or error.code != code:
        error.code = code  # an unknown code survives as ParleyError with that code
    if status is not None:
        error.status = status
    return error


def error_from_body(status: int, body: Any, headers: Mapping[str, str] | None = None) -> ParleyError:
    """The typed error for an already-decoded non-2xx body."""
    retry_after = parse_retry_after(headers.get("retry-after")) if headers is not None else None
    envelope = body.get("error") if isinstance(body, dict) else None
    if (
        isinstance(envelope, dict)
        and isinstance(envelope.get("code"), str)
        and isinstance(envelope.get("message"), str)
    ):
        issues = envelope.get("issues")
        if not (isinstance(issues, list) and all(isinstance(i, str) for i in issues)):
            issues = None
        return build_error(
            envelope["code"], envelope["message"], status=status, issues=issues, retry_after=retry_after
        )
    return build_error(HTTP_ERROR, f"parley HTTP {status}", status=status, retry_after=retry_after)


def error_from_response(status: int, content: bytes, headers: Mapping[str, str] | None = None) -> ParleyError:
    """The typed error for a raw non-2xx HTTP answer (``http_error`` if the body is not an envelope)."""
    import json

    try:
        body = json.loads(content) if content else None
    except ValueError:
        body = None
    return error_from_body(status, body, headers)


__all__ = [
    "ERROR_CLASSES",
    "FAMILIES",
    "HTTP_ERROR",
    "STATUS_BY_CODE",
    "ArtifactIntegrity",
    "ArtifactTooLarge",
    "ChannelArchived",
    "ChannelExists",
    "ChannelFull",
    "ChannelLimit",
    "Conflict",
    "DuplicatePost",
    "Forbidden",
    "IdempotencyConflict",
    "InternalError",
    "InvalidChannelName",
    "InvalidCursor",
    "InvalidJson",
    "InvalidMessage",
    "InvalidRequest",
    "MethodNotAllowed",
    "MissingSession",
    "MissingToken",
    "MsgIdConflict",
    "NotFound",
    "ParleyError",
    "PayloadTooLarge",
    "RateLimited",
    "Refused",
    "Retryable",
    "ServiceUnavailable",
    "RequestTimeout",
    "SessionLimit",
    "StaleToken",
    "StreamCapacity",
    "TransportError",
    "TurnInFlight",
    "Unauthorized",
    "Unavailable",
    "UnknownChannel",
    "UnknownSession",
    "UpgradeRequired",
    "build_error",
    "error_class_for",
    "error_from_body",
    "error_from_response",
    "parse_retry_after",
]
