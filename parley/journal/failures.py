"""Which database errors mean "unavailable", and how they are worded.

Every path that touches the database (writer, readers, tools) sorts a
failure with :func:`is_fatal_db_error` and wraps it with :func:`unavailable`
into one :class:`JournalUnavailable` line that never carries a URL.
"""

from __future__ import annotations

import sys

from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import Connection

from .errors import JournalUnavailable


def is_fatal_db_error(exc: BaseException, conn: Connection | None = None) -> bool:
    """True when ``exc`` means the connection/database is unusable."""
    if not isinstance(exc, Exception):
        return True  # KeyboardInterrupt, SystemExit, ...
    if isinstance(exc, (sa_exc.OperationalError, sa_exc.InterfaceError, sa_exc.InternalError)):
        return True
    if _is_raw_dbapi_failure(exc):
        return True
    if isinstance(exc, sa_exc.DBAPIError) and exc.connection_invalidated:
        return True
    if isinstance(exc, sa_exc.ResourceClosedError):
        return True
    if conn is not None and (conn.invalidated or conn.closed):
        return True
    return False


#: PEP 249's classes for "the connection or the database is unusable".
_DBAPI_FAILURES = ("OperationalError", "InterfaceError", "InternalError")


def _is_raw_dbapi_failure(exc: BaseException) -> bool:
    """The same failures raised by a driver directly, not wrapped by SQLAlchemy:
    the fast read paths use the raw DBAPI cursor (``queries.fold_stream``, the
    operator tools). Only drivers already loaded are consulted: one that is not
    imported cannot have raised."""
    for driver in ("sqlite3", "psycopg"):
        module = sys.modules.get(driver)
        if module is not None and isinstance(exc, tuple(getattr(module, name) for name in _DBAPI_FAILURES)):
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
