"""Shared database fixtures.

* ``database_url`` — an EMPTY database, parametrised over ``sqlite`` (a file in
  ``tmp_path``) and ``postgres`` (a fresh schema ``t_<uuid>`` in the database of
  ``$PARLEY_TEST_POSTGRES_URL``, default
  ``postgresql+psycopg://postgres@127.0.0.1:5432/test``, selected through
  ``?options=-csearch_path=<schema>`` and dropped CASCADE afterwards).
  If Postgres is unreachable the postgres variants are skipped — unless
  ``PARLEY_REQUIRE_POSTGRES=1``, in which case they fail.
* ``sqlite_url`` / ``postgres_url`` — the same, one backend only.
* ``migrated_url`` — ``database_url`` upgraded to the Alembic head.
* ``journal`` — a started :class:`parley.journal.Journal` on ``migrated_url``.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager

import pytest
import sqlalchemy as sa

from parley.journal import Journal, migrate
from parley.journal.engine import normalise_url

DEFAULT_POSTGRES_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"

_pg_state: dict[str, object] = {}


def postgres_base_url() -> str:
    return os.environ.get("PARLEY_TEST_POSTGRES_URL") or DEFAULT_POSTGRES_URL


def postgres_required() -> bool:
    return os.environ.get("PARLEY_REQUIRE_POSTGRES", "") == "1"


def with_search_path(url: str, schema: str) -> str:
    """``url`` whose connections use ``schema`` (psycopg ``options``)."""
    sep = "&" if "?" in url else "?"
    return f"{url}{sep}options=-csearch_path%3D{schema}"


def _admin_engine() -> sa.Engine | None:
    """A shared engine on the Postgres test database, or None if unreachable."""
    if "engine" not in _pg_state:
        engine = sa.create_engine(
            normalise_url(postgres_base_url()),
            poolclass=sa.pool.NullPool,
            connect_args={"connect_timeout": 3},
        )
        try:
            with engine.connect() as conn:
                conn.execute(sa.text("SELECT 1"))
        except Exception as e:  # noqa: BLE001 - any failure means "unreachable"
            _pg_state["error"] = f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
            engine.dispose()
            engine = None
        _pg_state["engine"] = engine
    return _pg_state["engine"]  # type: ignore[return-value]


def _skip_or_fail_without_postgres() -> sa.Engine:
    engine = _admin_engine()
    if engine is None:
        msg = f"Postgres unreachable ({_pg_state.get('error')})"
        if postgres_required():
            pytest.fail(msg + " and PARLEY_REQUIRE_POSTGRES=1", pytrace=False)
        pytest.skip(msg)
    return engine


@contextmanager
def postgres_schema_url() -> Iterator[str]:
    """A fresh, empty Postgres schema; yields a URL pointing at it."""
    admin = _skip_or_fail_without_postgres()
    schema = f"t_{uuid.uuid4().hex}"
    with admin.begin() as conn:
        conn.execute(sa.text(f'CREATE SCHEMA "{schema}"'))
    try:
        yield with_search_path(postgres_base_url(), schema)
    finally:
        with admin.begin() as conn:
            conn.execute(sa.text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))


@pytest.fixture
def sqlite_url(tmp_path) -> str:
    return f"sqlite:///{tmp_path / 'journal.db'}"


@pytest.fixture
def postgres_url() -> Iterator[str]:
    with postgres_schema_url() as url:
        yield url


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def database_url(request, tmp_path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'journal.db'}"
    else:
        with postgres_schema_url() as url:
            yield url


@pytest.fixture
def migrated_url(database_url: str) -> str:
    migrate.upgrade(database_url)
    return database_url


@pytest.fixture
async def journal(migrated_url: str) -> AsyncIterator[Journal]:
    j = Journal.open(migrated_url)
    await j.start()
    try:
        yield j
    finally:
        await j.aclose()


@pytest.fixture
async def server(migrated_url):
    """A live server (seed tokens tok-a/alice, tok-b/bob, tok-c/carol; admin 'admin-secret')
    on the parametrised database, with a ManualClock."""
    from tests.support.server import running_server, test_settings

    async with running_server(test_settings(migrated_url)) as live:
        yield live


#: Directories whose tests need no subprocess and no Postgres: ``pytest -m quick``
#: runs them (and the SQLite variants of the API routes) in well under a minute.
QUICK_DIRS = ("unit", "actors")
QUICK_FILES = ("api/test_channels_routes.py",)


def pytest_collection_modifyitems(config, items) -> None:
    tests_dir = os.path.dirname(__file__)
    for item in items:
        relative = os.path.relpath(str(item.path), tests_dir).replace(os.sep, "/")
        if item.get_closest_marker("postgres") or "[postgres" in item.nodeid:
            continue
        if relative.split("/")[0] in QUICK_DIRS or relative in QUICK_FILES:
            item.add_marker(pytest.mark.quick)
