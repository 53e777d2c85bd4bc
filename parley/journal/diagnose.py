"""Turn a database driver's failure into one line naming the cause and the fix.

The CLI and ``parley serve`` print :func:`explain` instead of a traceback. It
reads the driver's own error (sqlite3 or psycopg, found anywhere in the
exception's cause chain) and, for SQLite's catch-all "unable to open database
file", looks at the file system to tell a missing directory from an unwritable
one. A line never contains the URL or its password, nor a statement's
parameters (engines hide them, see :mod:`parley.journal.engine`).
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from .. import database_url as urls

_FIX_URL = "fix the database URL (--database-url / PARLEY_DATABASE_URL)"


def causes(exc: BaseException) -> Iterator[BaseException]:
    """``exc``, its group members, ``.orig``, ``__cause__`` and ``__context__``, depth first."""
    seen: set[int] = set()
    stack: list[BaseException | None] = [exc]
    while stack:
        current = stack.pop()
        if current is None or id(current) in seen:
            continue
        seen.add(id(current))
        yield current
        nested: list[BaseException | None] = [current.__context__, current.__cause__, getattr(current, "orig", None)]
        if isinstance(current, BaseExceptionGroup):
            nested.extend(reversed(current.exceptions))
        stack.extend(nested)


def driver_error(exc: BaseException) -> BaseException | None:
    """The first sqlite3 or psycopg exception behind ``exc``."""
    for cause in causes(exc):
        module = type(cause).__module__ or ""
        if module.startswith(("sqlite3", "psycopg")) and isinstance(cause, Exception):
            return cause
    return None


def _first_line(text: str, url: str | None) -> str:
    line = (text.strip().splitlines() or [""])[0][:200]
    if url:
        line = line.replace(url, "<database-url>")
        password = _password(url)
        if password:
            line = line.replace(password, "***")
    return line


#: The base class of every SQLAlchemy error, for callers that must not import it.
DatabaseError = sa.exc.SQLAlchemyError


def url_password(url: str) -> str | None:
    """The password a database URL carries (to scrub it from a message), or None."""
    return _password(url)


def _password(url: str) -> str | None:
    try:
        return sa.engine.make_url(urls.normalise(url)).password
    except Exception:  # noqa: BLE001 - an unparsable URL has nothing more to hide
        return None


def explain(exc: BaseException, url: str | None) -> str | None:
    """One line for a database failure behind ``exc``, or None if it is not one."""
    driver = driver_error(exc)
    if driver is None:
        if isinstance(exc, sa.exc.SQLAlchemyError):
            return f"the database failed ({type(exc).__name__}); check it is running and {_FIX_URL}"
        return None
    text = str(driver)
    if type(driver).__module__.startswith("sqlite3") or (url is not None and urls.is_sqlite(url)):
        return _explain_sqlite(text, urls.sqlite_path(url) if url else None, url)
    return _explain_postgres(text, url)


def _explain_sqlite(text: str, path: str | None, url: str | None) -> str:
    low = text.lower()
    shown = path or "(unknown file)"
    if "readonly" in low or "read-only" in low:
        return _read_only(shown)
    if "unable to open database file" in low and path:
        folder = os.path.dirname(os.path.abspath(path))
        if not os.path.isdir(folder):
            return f"the directory {folder} of the SQLite database does not exist; create it (mkdir -p {folder}) or {_FIX_URL}"
        if os.path.isdir(path):
            return f"the SQLite database path {path} is a directory; {_FIX_URL}"
        if os.path.exists(path) and not os.access(path, os.W_OK):
            return _read_only(shown)
        if not os.access(folder, os.W_OK | os.X_OK):
            return f"cannot create files in {folder}, the directory of the SQLite database: permission denied; make it writable or {_FIX_URL}"
        return f"cannot open the SQLite database {shown}; check its permissions or {_FIX_URL}"
    if "database is locked" in low:
        return f"the SQLite database {shown} is locked by another process; stop that process or retry"
    if "file is not a database" in low:
        return f"{shown} is not a SQLite database; {_FIX_URL}"
    if "disk is full" in low:
        return f"the disk holding the SQLite database {shown} is full; free some space"
    if "no such table" in low:
        return "the database has no parley schema; run `parley db upgrade` first"
    return f"the SQLite database {shown} failed: {_first_line(text, url)}"


def _read_only(shown: str) -> str:
    return (
        f"the SQLite database {shown} is read-only; make it and its directory writable "
        f"(chmod u+w) or {_FIX_URL}"
    )


def _explain_postgres(text: str, url: str | None) -> str:
    low = text.lower()
    where = "Postgres"
    if url:
        try:
            host, port, _user, _db = urls.postgres_address(url)
            where = f"Postgres at {host}:{port}"
        except ValueError:
            pass
    if "connection refused" in low:
        return f"cannot connect to {where}: connection refused; start Postgres or {_FIX_URL}"
    match = re.search(r'database "([^"]*)" does not exist', text)
    if match:
        name = match.group(1)
        return f'the database "{name}" does not exist on {where}; create it (createdb {name}) or {_FIX_URL}'
    match = re.search(r'role "([^"]*)" does not exist', text)
    if match:
        name = match.group(1)
        return f'the role "{name}" does not exist on {where}; create it (createuser {name}) or {_FIX_URL}'
    match = re.search(r'password authentication failed for user "([^"]*)"', text)
    if match:
        return f'{where} refused the password of user "{match.group(1)}"; {_FIX_URL}'
    if "no pg_hba.conf entry" in low:
        return f"{where} does not accept this client (pg_hba.conf); allow it there or {_FIX_URL}"
    match = re.search(r'(?:could not translate host name|failed to resolve host) "?([^" ]*)"?', text)
    if match:
        return f'cannot resolve the Postgres host "{match.group(1)}"; {_FIX_URL}'
    if "timeout expired" in low or "timed out" in low:
        return f"connecting to {where} timed out; check that it is reachable or {_FIX_URL}"
    if "starting up" in low or "shutting down" in low:
        return f"{where} is starting up or shutting down; retry in a moment"
    if "closed the connection" in low or "terminating connection" in low or "server closed" in low:
        return f"{where} closed the connection; check the server and retry"
    if re.search(r'relation "[^"]*" does not exist', text):
        return "the database has no parley schema; run `parley db upgrade` first"
    return f"{where} failed: {_first_line(text, url)}"


def check_writable(engine: Engine) -> None:
    """Raise the driver's error if the database refuses a write (a read-only SQLite file).

    Inserts a row into ``meta`` and rolls it back, so nothing changes: the
    server refuses to start on a database it could only half use.
    """
    with engine.connect() as conn:
        transaction = conn.begin()
        try:
            conn.execute(sa.text("INSERT INTO meta (key, value) VALUES ('parley.write_probe', '')"))
        finally:
            transaction.rollback()
