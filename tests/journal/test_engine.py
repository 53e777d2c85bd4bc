"""make_engine: URL handling and SQLite connection settings."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from parley.journal.engine import make_engine, normalise_url, write_engine


@pytest.mark.parametrize(
    "url, expected",
    [
        ("postgresql://u:p@h:5432/db", "postgresql+psycopg://u:p@h:5432/db"),
        ("postgres://u:p@h/db", "postgresql+psycopg://u:p@h/db"),
        ("postgresql+psycopg://h/db?x=1", "postgresql+psycopg://h/db?x=1"),
        ("sqlite:///rel.db", "sqlite:///rel.db"),
        ("sqlite:////abs/path.db", "sqlite:////abs/path.db"),
    ],
)
def test_normalise_url(url, expected):
    assert normalise_url(url) == expected


@pytest.mark.parametrize(
    "url, scheme",
    [
        ("mysql://root:hunter2@db/x", "mysql"),
        ("postgresql+asyncpg://root:hunter2@db/x", "postgresql+asyncpg"),
        ("hunter2", "(none)"),
    ],
)
def test_unsupported_scheme_names_the_scheme_only(url, scheme):
    with pytest.raises(ValueError) as info:
        make_engine(url)
    assert scheme in str(info.value)
    assert "hunter2" not in str(info.value)


@pytest.mark.parametrize("url", ["sqlite://", "sqlite:///:memory:"])
def test_in_memory_sqlite_is_refused(url):
    with pytest.raises(ValueError):
        make_engine(url)


def test_sqlite_pragmas_and_begin_immediate(sqlite_url):
    engine = make_engine(sqlite_url)
    statements: list[str] = []
    sa.event.listen(engine, "before_cursor_execute", lambda *a: statements.append(a[2]))
    try:
        with engine.connect() as conn:
            assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
            assert conn.exec_driver_sql("PRAGMA synchronous").scalar() == 2  # FULL
            assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar() == 10000
            assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
        assert "BEGIN" in statements and "BEGIN IMMEDIATE" not in statements
        statements.clear()
        with write_engine(engine).begin() as conn:
            conn.exec_driver_sql("SELECT 1")
            with conn.begin_nested():
                conn.exec_driver_sql("SELECT 2")
        assert statements[0] == "BEGIN IMMEDIATE"
        assert any(s.startswith("SAVEPOINT") for s in statements)
    finally:
        engine.dispose()


def test_a_database_error_never_carries_the_statement_parameters(tmp_path):
    """A failed write's text (logged, or printed by the CLI) must not hold its values."""
    path = tmp_path / "ro.db"
    engine = make_engine(f"sqlite:///{path}")
    with engine.begin() as conn:
        conn.exec_driver_sql("CREATE TABLE t (k TEXT)")
    engine.dispose()
    engine = make_engine(f"sqlite:///file:{path}?mode=ro&uri=true")
    try:
        with pytest.raises(sa.exc.OperationalError) as info:
            with engine.begin() as conn:
                conn.execute(sa.text("INSERT INTO t (k) VALUES (:k)"), {"k": "s3cret-value"})
    finally:
        engine.dispose()
    assert "s3cret-value" not in str(info.value)
