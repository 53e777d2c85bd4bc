"""Alembic environment for parley's journal.

Two ways in:

* Programmatic (``parley.journal.migrate`` / ``parley db upgrade``): the caller
  opens a transaction and passes the connection as
  ``config.attributes["connection"]``; it commits when Alembic returns.
* The ``alembic`` CLI: the URL comes from ``-x url=…``, else the
  ``sqlalchemy.url`` option of the ini file, else ``$PARLEY_DATABASE_URL``.
  Alembic needs an ini whose ``script_location`` is this directory, e.g. a
  two-line ``alembic.ini`` at the repository root::

      [alembic]
      script_location = migrations

  then ``alembic -x url=sqlite:///parley.db upgrade head``. Offline ``--sql``
  mode works too.

On Postgres the migration runs under ``pg_advisory_xact_lock`` so several
processes upgrading at start-up take turns (the later ones find the database
already at head). On SQLite the same is achieved by ``BEGIN IMMEDIATE``.
"""

from __future__ import annotations

import os

import sqlalchemy as sa
from alembic import context

from parley.journal.schema import metadata as target_metadata

#: Distinct from the writer's batch lock (see parley.journal.writer).
MIGRATION_LOCK_KEY = 0x7061726C65794D  # "parleyM"

config = context.config


def _url() -> str | None:
    x_args = context.get_x_argument(as_dictionary=True)
    return x_args.get("url") or config.get_main_option("sqlalchemy.url") or os.environ.get(
        "PARLEY_DATABASE_URL"
    )


def _configure_and_run(connection: sa.engine.Connection) -> None:
    dialect = connection.dialect.name
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        render_as_batch=dialect == "sqlite",
        transactional_ddl=True,
    )
    if dialect == "postgresql":
        connection.execute(sa.text("SELECT pg_advisory_xact_lock(:k)"), {"k": MIGRATION_LOCK_KEY})
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_offline() -> None:
    url = _url()
    if not url:
        raise RuntimeError("no database URL: pass -x url=… or set PARLEY_DATABASE_URL")
    from parley.journal.engine import normalise_url

    context.configure(
        url=normalise_url(url),
        target_metadata=target_metadata,
        literal_binds=True,
        dialect_opts={"paramstyle": "named"},
    )
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        _configure_and_run(connection)
        return
    url = _url()
    if not url:
        raise RuntimeError("no database URL: pass -x url=… or set PARLEY_DATABASE_URL")
    from parley.journal.engine import make_engine, write_engine

    engine = make_engine(url)
    try:
        with write_engine(engine).begin() as conn:
            _configure_and_run(conn)
    finally:
        engine.dispose()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
