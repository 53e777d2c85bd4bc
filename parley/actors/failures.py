"""The one place a failure from below becomes an error a caller sees (ADR-0034).

Like httpx's ``map_httpcore_exceptions``: the journal raises its own plain
exceptions (:mod:`parley.journal.errors` knows nothing of the wire), and
:data:`JOURNAL_ERRORS` says once what each becomes. Callers either wrap a
block in :func:`map_journal_errors` (the error is re-raised translated) or,
where they answer waiting commands instead of raising, ask
:func:`wire_error` for the error to hand out.

:class:`~parley.journal.errors.ConcurrencyError` (and the seatbelt's
``WindowFull``) are not failures: the actor that met one folds the other
process's events in and decides again, so they pass through untranslated.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from ..errors import InternalError, ParleyError, Unavailable
from ..journal.errors import IntegrityFailure, JournalUnavailable

#: The message of every 503 a database failure causes (with ``Retry-After: 1``).
JOURNAL_UNAVAILABLE = "the journal is unavailable; retry shortly"
#: Stored bytes failed their hash: the journal has logged and counted it (ADR-0023).
INTEGRITY_FAILURE = "the stored artifact does not match its sha256; an operator should run `parley journal verify`"

#: Journal exception → the error the caller is told, in the order they are tried.
JOURNAL_ERRORS: tuple[tuple[type[Exception], Callable[[], ParleyError]], ...] = (
    (JournalUnavailable, lambda: Unavailable(JOURNAL_UNAVAILABLE, retry_after=1)),
    (IntegrityFailure, lambda: InternalError(INTEGRITY_FAILURE)),
)
_MAPPED = tuple(kind for kind, _ in JOURNAL_ERRORS)


def journal_unavailable() -> ParleyError:
    """The 503 for a database that could not be used (down, locked, disk full, closed)."""
    return Unavailable(JOURNAL_UNAVAILABLE, retry_after=1)


def translated(exc: BaseException) -> ParleyError | None:
    """The wire error of a journal failure; ``exc`` itself when it already is one; else ``None``."""
    if isinstance(exc, ParleyError):
        return exc
    for kind, make in JOURNAL_ERRORS:
        if isinstance(exc, kind):
            return make()
    return None


def wire_error(exc: BaseException, *, log: logging.Logger | None = None, during: str = "request") -> ParleyError:
    """What a caller is told about ``exc``: :func:`translated`, or ``500 internal_error``.

    With ``log``, a journal failure is one warning line and anything
    unexpected a logged traceback: never a traceback on the wire.
    """
    error = translated(exc)
    if log is not None and not isinstance(exc, ParleyError):
        if error is None:
            log.exception("%s failed", during)
        else:
            log.warning("%s failed: %s", during, exc)
    return error if error is not None else InternalError()


@contextmanager
def map_journal_errors() -> Iterator[None]:
    """Re-raise a journal failure of the block as its wire error (``from None``: the
    journal's message stays in the logs, not in the envelope)."""
    try:
        yield
    except _MAPPED as exc:
        raise wire_error(exc) from None


__all__ = [
    "INTEGRITY_FAILURE",
    "JOURNAL_ERRORS",
    "JOURNAL_UNAVAILABLE",
    "journal_unavailable",
    "map_journal_errors",
    "translated",
    "wire_error",
]
