"""Run the Alembic migrations shipped as ``parley.migrations``.

The Alembic ``Config`` is built in code (no ini file): ``script_location`` is
the directory of the ``parley.migrations`` package, so this works from a
source checkout, an editable install and an installed wheel alike. The
connection is handed to ``migrations/env.py`` through
``config.attributes["connection"]`` inside one transaction (``BEGIN IMMEDIATE``
on SQLite), committed when Alembic returns.

Alembic is imported only when there is migrating to do: a ``parley serve``
on a database already at :data:`HEAD` reads one row of ``alembic_version``
and starts without it (about a third of the start-up imports).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager

from typing import TYPE_CHECKING

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from .engine import make_engine, write_engine

if TYPE_CHECKING:
    from alembic.config import Config

#: The newest revision in ``migrations/versions``; a test checks it against
#: Alembic's own view, so a new migration cannot forget to move it.
HEAD = "0003"


def script_location() -> str:
    import parley.migrations

    return os.path.dirname(os.path.abspath(parley.migrations.__file__))


def make_config() -> Config:
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", script_location())
    return cfg


@contextmanager
def _engine_for(url_or_engine: str | Engine) -> Iterator[Engine]:
    if isinstance(url_or_engine, Engine):
        yield url_or_engine
        return
    engine = make_engine(url_or_engine)
    try:
        yield engine
    finally:
        engine.dispose()


def _run(url_or_engine: str | Engine, fn, revision: str) -> None:
    with _engine_for(url_or_engine) as engine:
        cfg = make_config()
        with write_engine(engine).begin() as conn:
            cfg.attributes["connection"] = conn
            fn(cfg, revision)


def upgrade(url_or_engine: str | Engine, revision: str = "head") -> None:
    """Upgrade the database to ``revision`` (default: head); nothing to do costs one query."""
    with _engine_for(url_or_engine) as engine:
        if revision in ("head", HEAD) and current(engine) == HEAD:
            return
        from alembic import command

        _run(engine, command.upgrade, revision)


def downgrade(url_or_engine: str | Engine, revision: str = "base") -> None:
    """Downgrade the database to ``revision`` (default: base = no tables)."""
    from alembic import command

    _run(url_or_engine, command.downgrade, revision)


def current(url_or_engine: str | Engine) -> str | None:
    """The database's current revision, or None if never migrated (what Alembic reads)."""
    with _engine_for(url_or_engine) as engine, engine.connect() as conn:
        if not sa.inspect(conn).has_table("alembic_version"):
            return None
        return conn.execute(sa.text("SELECT version_num FROM alembic_version")).scalar()


def head() -> str:
    """The newest revision shipped with this version of parley."""
    return HEAD


def script_heads() -> list[str]:
    """The heads Alembic finds in the migration scripts (tests compare them with :data:`HEAD`)."""
    from alembic.script import ScriptDirectory

    return list(ScriptDirectory.from_config(make_config()).get_heads())


def is_at_head(url_or_engine: str | Engine) -> bool:
    """True when the database is migrated to :func:`head`."""
    return current(url_or_engine) == head()
