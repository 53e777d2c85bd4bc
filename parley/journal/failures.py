"""Which database errors mean "unavailable", and how they are worded.

Every path that touches the database (writer, readers, tools) sorts a
failure with :func:`is_fatal_db_error` and wraps it with :func:`unavailable`
into one :class:`JournalUnavailable` line that never carries a URL.
"""

from __future__ import annotations

from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import Connection

from .errors import JournalUnavailable


def is_fatal_db_error(exc: BaseException, conn: Connection | None = None) -> bool:
    """True when ``exc`` means the connection/database is unusable."""
    if not isinstance(exc, Exception):
        return True  # KeyboardInterrupt, SystemExit, ...
    if isinstance(exc, (sa_exc.OperationalError, sa_exc.InterfaceError, sa_exc.InternalError)):
        return True
    if isinstance(exc, sa_exc.DBAPIError) and exc.connection_invalidated:
        return True
    if isinstance(exc, sa_exc.ResourceClosedError):
        return True
    if conn is not None and (conn.invalidated or conn.closed):
        return True
    return False


def unavailable(exc: BaseException) -> JournalUnavailable:
    """Wrap a database failure (the message never includes a URL)."""
    if isinstance(exc, JournalUnavailable):
        return exc
    orig = getattr(exc, "orig", None) or exc
    first_line = (str(orig).strip().splitlines() or [""])[0][:200]
    err = JournalUnavailable(f"journal database unavailable: {type(orig).__name__}: {first_line}")
    err.__cause__ = exc
    return err
