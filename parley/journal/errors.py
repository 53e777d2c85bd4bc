"""Errors raised by the journal layer.

Plain ``Exception`` subclasses on purpose: the journal knows nothing about
HTTP. The actor layer maps :class:`JournalUnavailable` to ``503 unavailable``
and handles :class:`ConcurrencyError` by reloading the stream and deciding
the command again.
"""

from __future__ import annotations


class JournalError(Exception):
    """Base class of every journal error."""


class ConcurrencyError(JournalError):
    """An append's ``expected_seq`` did not match the stream's last ``seq``.

    Raised for the one request that lost; the other requests of the same
    commit batch are unaffected. ``actual_seq`` is the stream's last ``seq``
    as seen by the writer when it rejected the request (``-1`` if unknown).
    """

    def __init__(self, stream_id: str, expected_seq: int, actual_seq: int) -> None:
        self.stream_id = stream_id
        self.expected_seq = expected_seq
        self.actual_seq = actual_seq
        super().__init__(
            f"stream {stream_id!r}: expected last seq {expected_seq}, actual {actual_seq}"
        )

    def __reduce__(self):  # picklable across processes / threads
        return (type(self), (self.stream_id, self.expected_seq, self.actual_seq))


class JournalUnavailable(JournalError):
    """The database could not be used (down, locked, disk full, closed journal).

    For an append this means the outcome is *unknown to the caller* only in
    one case: the connection died during ``COMMIT``. Callers that must know
    should re-read the stream before retrying.
    """


class IntegrityFailure(JournalError):
    """Stored bytes do not match their recorded hash (tampering or corruption).

    The message names the object and never carries its content.
    """


class WindowFull(Exception):
    """A shared seatbelt charge would overflow its window (ADR-0025); ``stamps``
    are the live ones stored. The append carrying the charge is rolled back."""

    def __init__(self, scope: str, key: str, stamps: list[int]) -> None:
        super().__init__(f"seatbelt window {scope} is full")
        self.scope = scope
        self.key = key
        self.stamps = stamps
