"""Build a SQLAlchemy engine for the journal.

Accepted URLs (anything else raises :class:`ValueError` naming only the
scheme, never the URL, which may carry a password):

* ``sqlite:///relative.db``, ``sqlite:////abs/path.db`` (``sqlite+pysqlite``
  too). In-memory SQLite is refused: the writer thread and the reader threads
  need one shared database.
* ``postgresql://…``, ``postgres://…`` (normalised to ``postgresql+psycopg``)
  and ``postgresql+psycopg://…``.

SQLite connections get ``journal_mode=WAL``, ``synchronous=FULL`` (override
with ``sqlite_synchronous=``), ``busy_timeout=10000`` and ``foreign_keys=ON``.
pysqlite's own transaction handling is switched off and SQLAlchemy emits the
``BEGIN`` itself (the recipe from SQLAlchemy's SQLite dialect docs), so
SAVEPOINTs and transactional DDL work. Plain connections begin with a deferred
``BEGIN`` (readers never take the write lock); connections from
:func:`write_engine` begin with ``BEGIN IMMEDIATE`` so concurrent writer
processes queue on the busy timeout instead of deadlocking on a lock upgrade.

Every engine is made with ``hide_parameters=True``: a database error's text
then never carries the statement's values (a session secret, a token digest,
a message body) into a log line or onto a terminal.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import event
from sqlalchemy.engine import Engine, create_engine, make_url

from .. import database_url

#: Execution option read by the SQLite ``begin`` hook.
SQLITE_BEGIN_OPTION = "parley_sqlite_begin"

_SYNC_LEVELS = {"OFF", "NORMAL", "FULL", "EXTRA"}


def url_scheme(url: str) -> str:
    """The part before ``://`` (lower-cased), or ``""``."""
    return database_url.scheme(url)


def normalise_url(url: str) -> str:
    """Return ``url`` with a driver SQLAlchemy should use; raise ValueError.

    The parsing lives in :func:`parley.database_url.normalise`, shared with the
    configuration, so both accept and refuse the same URLs.
    """
    return database_url.normalise(url)


def is_sqlite(engine: Engine) -> bool:
    return engine.dialect.name == "sqlite"


def is_postgres(engine: Engine) -> bool:
    return engine.dialect.name == "postgresql"


def make_engine(url: str, *, sqlite_synchronous: str = "FULL", **kwargs: Any) -> Engine:
    """Create the engine for ``url`` (see module docstring).

    Extra keyword arguments go to :func:`sqlalchemy.create_engine`.
    """
    normalised = normalise_url(url)
    kwargs.setdefault("hide_parameters", True)
    if normalised.startswith("sqlite"):
        sync = sqlite_synchronous.upper()
        if sync not in _SYNC_LEVELS:
            raise ValueError(f"sqlite_synchronous must be one of {sorted(_SYNC_LEVELS)}")
        connect_args = dict(kwargs.pop("connect_args", {}))
        connect_args.setdefault("check_same_thread", False)
        connect_args.setdefault("timeout", 10.0)
        engine = create_engine(make_url(normalised), connect_args=connect_args, **kwargs)
        _install_sqlite_hooks(engine, sync)
        return engine
    kwargs.setdefault("pool_pre_ping", True)
    connect_args = dict(kwargs.pop("connect_args", {}))
    connect_args.setdefault("connect_timeout", 10)
    return create_engine(make_url(normalised), connect_args=connect_args, **kwargs)


def write_engine(engine: Engine) -> Engine:
    """A view of ``engine`` whose transactions take the write lock up front.

    On SQLite this is ``BEGIN IMMEDIATE``; on Postgres it is the same engine
    (the writer serialises with an advisory lock instead).
    """
    if is_sqlite(engine):
        return engine.execution_options(**{SQLITE_BEGIN_OPTION: "IMMEDIATE"})
    return engine


def _install_sqlite_hooks(engine: Engine, synchronous: str) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection, _record):  # pragma: no cover - trivial
        # Take transaction control away from pysqlite; SQLAlchemy's "begin"
        # event below emits BEGIN instead.
        dbapi_connection.isolation_level = None
        cur = dbapi_connection.cursor()
        try:
            cur.execute("PRAGMA busy_timeout=10000")
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute(f"PRAGMA synchronous={synchronous}")
            cur.execute("PRAGMA foreign_keys=ON")
        finally:
            cur.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn):
        mode = conn.get_execution_options().get(SQLITE_BEGIN_OPTION)
        conn.exec_driver_sql("BEGIN IMMEDIATE" if mode == "IMMEDIATE" else "BEGIN")
