"""What a process does with a database before it serves: by URL, no engine.

``parley serve`` upgrades an embedded SQLite file (and proves it takes a
write) or refuses a Postgres schema behind the head; it moves a session
secret an old server left in ``meta``. These helpers open an engine, do the
one job and dispose it, so nothing above the journal holds an engine or
imports SQLAlchemy (ADR-0026).
"""

from __future__ import annotations

from . import diagnose, migrate
from . import store as _store
from .engine import make_engine

__all__ = ["BadDatabaseUrl", "SchemaBehind", "prepare", "read_meta", "remove_meta", "sqlite_database"]


class BadDatabaseUrl(ValueError):
    """The URL parser refused the database URL (the message names no secret)."""


class SchemaBehind(Exception):
    """The database schema is not at the current Alembic revision."""


def _engine(url: str):
    try:
        return make_engine(url)
    except ValueError as exc:
        raise BadDatabaseUrl(str(exc)) from None


def prepare(url: str, *, upgrade: bool) -> None:
    """``upgrade``: migrate to the head and check the database takes a write;
    otherwise raise :class:`SchemaBehind` unless it is at the head already.
    Driver failures propagate (``diagnose.explain`` turns them into a line)."""
    engine = _engine(url)
    try:
        if upgrade:
            migrate.upgrade(engine)
            diagnose.check_writable(engine)
        elif not migrate.is_at_head(engine):
            raise SchemaBehind("the database schema is not at the current revision")
    finally:
        engine.dispose()


def read_meta(url: str, key: str) -> str | None:
    """``meta[key]``, or None if absent (or there is no ``meta`` table yet)."""
    engine = _engine(url)
    try:
        return _store.read_meta(engine, key)
    finally:
        engine.dispose()


def remove_meta(url: str, key: str) -> bool:
    """Delete ``meta[key]`` in a transaction of its own; True if it was there."""
    engine = _engine(url)
    try:
        return _store.remove_meta(engine, key)
    finally:
        engine.dispose()


def sqlite_database(url: str) -> str | None:
    """The database a SQLite URL names as SQLAlchemy reads it (None for another
    backend, an unparsable URL, or none given)."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        parsed = make_url(url)
    except ArgumentError:
        return None
    if parsed.get_backend_name() != "sqlite":
        return None
    return parsed.database
