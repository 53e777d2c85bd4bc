"""Run the Alembic migrations shipped as ``parley.migrations``.

The Alembic ``Config`` is built in code (no ini file): ``script_location`` is
the directory of the ``parley.migrations`` package, so this works from a
source checkout, an editable install and an installed wheel alike. The
connection is handed to ``migrations/env.py`` through
``config.attributes["connection"]`` inside one transaction (``BEGIN IMMEDIATE``
on SQLite), committed when Alembic returns.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy.engine import Engine

from .engine import make_engine, write_engine


def script_location() -> str:
    import parley.migrations

    return os.path.dirname(os.path.abspath(parley.migrations.__file__))


def make_config() -> Config:
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
    """Upgrade the database to ``revision`` (default: head)."""
    _run(url_or_engine, command.upgrade, revision)


def downgrade(url_or_engine: str | Engine, revision: str = "base") -> None:
    """Downgrade the database to ``revision`` (default: base = no tables)."""
    _run(url_or_engine, command.downgrade, revision)


def current(url_or_engine: str | Engine) -> str | None:
    """The database's current revision, or None if never migrated."""
    with _engine_for(url_or_engine) as engine, engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def head() -> str:
    """The newest revision shipped with this version of parley."""
    heads = ScriptDirectory.from_config(make_config()).get_heads()
    if len(heads) != 1:
        raise RuntimeError(f"expected one migration head, found {heads}")
    return heads[0]


def is_at_head(url_or_engine: str | Engine) -> bool:
    """True when the database is migrated to :func:`head`."""
    return current(url_or_engine) == head()
