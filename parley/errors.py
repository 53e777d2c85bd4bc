"""The one error tree of parley.

Every error a caller can see is a leaf here, and every leaf maps one-to-one
to a wire code. The HTTP layer turns ``code`` into a status with
:data:`STATUS_BY_CODE`; the client SDK turns a wire code back into the same
class with :func:`error_class_for`, so ``except ChannelFull`` works across
the network.

    ParleyError
    ├── Refused                     4xx: the request is wrong or not allowed; fix it, do not resend it as is
    │   ├── InvalidChannelName      400 invalid_channel_name
    │   ├── InvalidMessage          400 invalid_message (+ issues)
    │   ├── InvalidCursor           400 invalid_cursor
    │   ├── ArtifactIntegrity       400 artifact_integrity
    │   ├── InvalidRequest          400 invalid_request
    │   ├── InvalidJson             400 invalid_json
    │   ├── MissingToken            400 missing_token
    │   ├── MissingSession          400 missing_session
    │   ├── Unauthorized            401 unauthorized
    │   ├── Forbidden               403 forbidden
    │   ├── UnknownChannel          404 unknown_channel
    │   ├── UnknownSession          404 unknown_session
    │   ├── NotFound                404 not_found
    │   ├── MethodNotAllowed        405 method_not_allowed
    │   ├── ArtifactTooLarge        413 artifact_too_large
    │   ├── PayloadTooLarge         413 payload_too_large
    │   ├── UpgradeRequired         426 upgrade_required
    │   └── Conflict                409: the current state forbids it (exists, full, taken, stale…)
    │       ├── ChannelExists       409 channel_exists
    │       ├── DuplicatePost       409 duplicate_post
    │       ├── ChannelFull         409 channel_full
    │       ├── ChannelLimit        409 channel_limit
    │       ├── ChannelArchived     409 channel_archived
    │       ├── MsgIdConflict       409 msg_id_conflict
    │       ├── IdempotencyConflict 409 idempotency_conflict
    │       ├── StaleToken          409 stale_token
    │       ├── TurnInFlight        409 turn_in_flight
    │       └── SessionLimit        409 session_limit
    ├── Retryable                   nothing was applied; the same request may succeed after ``retry_after``
    │   ├── RequestTimeout          408 request_timeout (the body did not arrive in time)
    │   ├── RateLimited             429 rate_limited (+ retry_after)
    │   └── ServiceUnavailable      503: the server cannot take it right now
    │       ├── StreamCapacity      503 stream_capacity (+ retry_after)
    │       └── Unavailable         503 unavailable (+ retry_after)
    └── InternalError               500 internal_error

The families (``Refused``, ``Conflict``, ``Retryable``,
``ServiceUnavailable``) have no wire code of their own: they let a caller
write ``except Retryable`` or ``except Refused`` instead of listing leaves.
Every leaf keeps its code, status and name (ADR-0020); tests/unit/
test_error_tree.py checks this drawing against the classes.
"""

from __future__ import annotations

import math
from typing import Any


class ParleyError(Exception):
    """Base of every error with a wire code."""

    code = "internal_error"
    status = 500
    default_message = "internal server error"

    def __init__(
        self,
        message: str | None = None,
        *,
        issues: list[str] | None = None,
        retry_after: float | None = None,
    ) -> None:
        self.message = message if message is not None else self.default_message
        self.issues = issues
        #: Seconds the caller should wait; sent as ``Retry-After`` (rounded up).
        self.retry_after = retry_after
        super().__init__(self.message)

    def envelope(self) -> dict[str, Any]:
        """The wire body ``{"error": {"code", "message", "issues"?}}``."""
        error: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.issues is not None:
            error["issues"] = list(self.issues)
        return {"error": error}

    def retry_after_header(self) -> str | None:
        if self.retry_after is None:
            return None
        return str(max(1, math.ceil(self.retry_after)))


# -- families: no wire code of their own (so they are not in ERROR_CLASSES) -------------


class Refused(ParleyError):
    """A 4xx: the request is malformed, unauthorised or aimed at nothing; resending it unchanged fails again."""


class Conflict(Refused):
    """A 409: the request is well formed but the current state forbids it."""


class Retryable(ParleyError):
    """The server applied nothing; the same request may succeed later (see ``retry_after``)."""


class ServiceUnavailable(Retryable):
    """A 503: the server cannot take the request right now (capacity, database, shutdown)."""


FAMILIES: tuple[type[ParleyError], ...] = (Refused, Conflict, Retryable, ServiceUnavailable)


def _leaf(
    name: str, code: str, status: int, default: str = "", base: type[ParleyError] | None = None
) -> type[ParleyError]:
    """A leaf class; its family follows from the status unless ``base`` is given."""
    if base is None:
        base = Conflict if status == 409 else Refused if 400 <= status < 500 else ParleyError
    return type(name, (base,), {"code": code, "status": status, "default_message": default})


InvalidChannelName = _leaf("InvalidChannelName", "invalid_channel_name", 400)
InvalidCursor = _leaf("InvalidCursor", "invalid_cursor", 400)
ArtifactIntegrity = _leaf(
    "ArtifactIntegrity",
    "artifact_integrity",
    400,
    "Artifact integrity check failed: the uploaded bytes do not match the supplied "
    "content address (sha256).",
)
InvalidRequest = _leaf("InvalidRequest", "invalid_request", 400)
InvalidJson = _leaf("InvalidJson", "invalid_json", 400, "request body is not valid JSON")
MissingToken = _leaf("MissingToken", "missing_token", 400, "missing continuationToken")
MissingSession = _leaf("MissingSession", "missing_session", 400, "missing sessionId")
Unauthorized = _leaf("Unauthorized", "unauthorized", 401, "missing or invalid token")
Forbidden = _leaf("Forbidden", "forbidden", 403, "forbidden")
UnknownChannel = _leaf("UnknownChannel", "unknown_channel", 404)
UnknownSession = _leaf("UnknownSession", "unknown_session", 404)
NotFound = _leaf("NotFound", "not_found", 404, "no such route")
MethodNotAllowed = _leaf("MethodNotAllowed", "method_not_allowed", 405, "method not allowed")
RequestTimeout = _leaf(
    "RequestTimeout", "request_timeout", 408, "request body not received in time; resend it", base=Retryable
)
ChannelExists = _leaf("ChannelExists", "channel_exists", 409)
DuplicatePost = _leaf(
    "DuplicatePost",
    "duplicate_post",
    409,
    "Duplicate of your previous post \u2014 identical content was just posted. Vary the "
    "content or stop repeating; do not re-post the same message.",
)
ChannelFull = _leaf("ChannelFull", "channel_full", 409)
ChannelLimit = _leaf("ChannelLimit", "channel_limit", 409)
ChannelArchived = _leaf("ChannelArchived", "channel_archived", 409)
MsgIdConflict = _leaf("MsgIdConflict", "msg_id_conflict", 409)
IdempotencyConflict = _leaf("IdempotencyConflict", "idempotency_conflict", 409)
StaleToken = _leaf("StaleToken", "stale_token", 409, "stale or invalid continuationToken")
TurnInFlight = _leaf(
    "TurnInFlight", "turn_in_flight", 409, "a turn is already in flight for this session"
)
SessionLimit = _leaf("SessionLimit", "session_limit", 409)
ArtifactTooLarge = _leaf("ArtifactTooLarge", "artifact_too_large", 413)
PayloadTooLarge = _leaf("PayloadTooLarge", "payload_too_large", 413, "request body too large")
UpgradeRequired = _leaf("UpgradeRequired", "upgrade_required", 426, "websockets are disabled")
RateLimited = _leaf("RateLimited", "rate_limited", 429, base=Retryable)
InternalError = _leaf("InternalError", "internal_error", 500, "internal server error")
StreamCapacity = _leaf(
    "StreamCapacity", "stream_capacity", 503, "too many concurrent streams; retry shortly", base=ServiceUnavailable
)
Unavailable = _leaf(
    "Unavailable", "unavailable", 503, "service unavailable; retry shortly", base=ServiceUnavailable
)


class InvalidMessage(Refused):
    """Validation failed; ``issues`` lists every problem found."""

    code = "invalid_message"
    status = 400

    def __init__(self, issues: list[str]) -> None:
        super().__init__("Invalid message: " + "; ".join(issues), issues=list(issues))


#: ``ParleyError`` and every leaf (each with its own wire code); the families are left out.
ERROR_CLASSES: tuple[type[ParleyError], ...] = tuple(
    cls
    for cls in list(globals().values())
    if isinstance(cls, type) and issubclass(cls, ParleyError) and cls not in FAMILIES
)

STATUS_BY_CODE: dict[str, int] = {cls.code: cls.status for cls in ERROR_CLASSES if cls is not ParleyError}


def error_class_for(code: str) -> type[ParleyError]:
    """The leaf class for a wire code (``ParleyError`` when unknown)."""
    for cls in ERROR_CLASSES:
        if cls.code == code and cls is not ParleyError:
            return cls
    return ParleyError
