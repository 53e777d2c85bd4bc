"""Alembic migrations: upgrade, current, downgrade, and schema.py agreement."""

from __future__ import annotations

import os

import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

from parley.journal import migrate, schema
from parley.journal.engine import make_engine


def _tables(url: str) -> set[str]:
    engine = make_engine(url)
    try:
        return set(sa.inspect(engine).get_table_names())
    finally:
        engine.dispose()


def test_script_location_is_the_package():
    loc = migrate.script_location()
    assert os.path.isfile(os.path.join(loc, "env.py"))
    assert os.path.isfile(os.path.join(loc, "script.py.mako"))
    assert os.path.isfile(os.path.join(loc, "versions", "0001_initial.py"))
    assert os.path.isfile(os.path.join(loc, "versions", "0002_nonmessage_index.py"))
    assert os.path.isfile(os.path.join(loc, "versions", "0003_snapshot_binding.py"))
    assert migrate.head() == "0003"


def test_the_head_constant_is_alembics_head():
    """serve skips Alembic when the database is at migrate.HEAD; a new migration must move it."""
    assert migrate.script_heads() == [migrate.HEAD]


def test_serving_a_database_at_head_does_not_import_alembic(tmp_path):
    import subprocess
    import sys

    url = f"sqlite:///{tmp_path / 'p.db'}"
    migrate.upgrade(url)
    probe = (
        "import sys; from parley.config import Settings; from parley.server import prepare_database; "
        f"prepare_database(Settings(database_url={url!r})); print(sorted(m for m in sys.modules if m.startswith('alembic')))"
    )
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_upgrade_downgrade_upgrade(database_url: str):
    assert migrate.current(database_url) is None
    assert not migrate.is_at_head(database_url)

    migrate.upgrade(database_url)
    assert migrate.current(database_url) == migrate.head()
    assert migrate.is_at_head(database_url)
    assert set(schema.TABLE_NAMES) <= _tables(database_url)

    migrate.upgrade(database_url)  # already at head: a no-op
    assert migrate.current(database_url) == migrate.head()

    migrate.downgrade(database_url, "base")
    assert migrate.current(database_url) is None
    assert _tables(database_url) & set(schema.TABLE_NAMES) == set()

    migrate.upgrade(database_url)
    assert migrate.is_at_head(database_url)
    assert set(schema.TABLE_NAMES) <= _tables(database_url)


def test_schema_module_matches_the_migrations(database_url: str):
    engine = make_engine(database_url)
    try:
        migrate.upgrade(engine)
        with engine.connect() as conn:
            diff = compare_metadata(MigrationContext.configure(conn), schema.metadata)
    finally:
        engine.dispose()
    assert diff == []


def test_sqlite_position_is_the_rowid(sqlite_url: str):
    migrate.upgrade(sqlite_url)
    engine = make_engine(sqlite_url)
    try:
        with engine.connect() as conn:
            ddl = conn.exec_driver_sql(
                "SELECT sql FROM sqlite_master WHERE name = 'events'"
            ).scalar()
    finally:
        engine.dispose()
    assert "position INTEGER NOT NULL PRIMARY KEY AUTOINCREMENT" in ddl


def test_start_up_read_models_read_the_partial_index_not_the_messages(sqlite_url: str):
    """Start-up loads the channel directory and the open sessions through
    ``ix_events_nonmessage`` (0002).

    SQLite matches a partial index's WHERE term literally: if the query loses
    the ``type <> 'message'`` literal it silently falls back to a full scan
    of ``events`` (3 s on a million events), so the plan is checked here.
    """
    from parley.journal import queries

    migrate.upgrade(sqlite_url)
    engine = make_engine(sqlite_url)
    plans: list[str] = []

    @sa.event.listens_for(engine, "before_cursor_execute")
    def explain(conn, cursor, statement, parameters, context, executemany):
        if statement.lstrip().upper().startswith("SELECT") and "events" in statement:
            rows = conn.connection.driver_connection.execute("EXPLAIN QUERY PLAN " + statement, parameters)
            plans.append(" | ".join(str(row[-1]) for row in rows))

    try:
        assert queries.channel_index(engine) == []
        assert queries.open_sessions(engine, "session_started", "session_closed") == {}
    finally:
        engine.dispose()
    assert len(plans) == 4, plans
    for plan in plans:
        assert "ix_events_nonmessage" in plan, plan
        assert "SCAN events" not in plan.replace("SCAN events USING", ""), plan
