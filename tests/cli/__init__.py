"""Helpers for the operator CLI tests (``parley journal …``, ``parley token …``)."""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import sqlalchemy as sa
from click.testing import CliRunner, Result

from parley.cli import main
from parley.journal import JournalStore, NewEvent, migrate
from parley.journal.engine import normalise_url

_SCHEMA_RE = re.compile(r"search_path%3D(t_[0-9a-f]+)")


def run(*args: str, input: bytes | str | None = None) -> Result:
    """Invoke ``parley ARGS`` in-process; stdout and stderr stay separate."""
    return CliRunner().invoke(main, list(args), input=input, catch_exceptions=False)


def assert_one_line_error(result: Result, *needles: str) -> str:
    """Exit 1, exactly one line on stderr starting with ``parley:``, no traceback."""
    assert result.exit_code == 1, (result.exit_code, result.stdout, result.stderr)
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("parley: "), lines[0]
    assert "Traceback" not in result.stderr
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])
    return lines[0]


@contextmanager
def sibling_database(url: str, tmp_path) -> Iterator[str]:
    """Another EMPTY database on the same backend as ``url`` (a file, or a Postgres schema)."""
    if url.startswith("sqlite"):
        yield f"sqlite:///{tmp_path / f'other-{uuid.uuid4().hex[:8]}.db'}"
        return
    match = _SCHEMA_RE.search(url)
    assert match, "postgres test URLs select their schema through search_path"
    schema = f"t_{uuid.uuid4().hex}"
    engine = sa.create_engine(normalise_url(url), poolclass=sa.pool.NullPool)
    try:
        with engine.begin() as conn:
            conn.execute(sa.text(f'CREATE SCHEMA "{schema}"'))
        try:
            yield url.replace(match.group(1), schema)
        finally:
            with engine.begin() as conn:
                conn.execute(sa.text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
    finally:
        engine.dispose()


@contextmanager
def open_store(url: str) -> Iterator[JournalStore]:
    store = JournalStore.open(url)
    try:
        yield store
    finally:
        store.dispose()


def migrated(url: str) -> str:
    migrate.upgrade(url)
    return url


def ev(type_: str, data: dict) -> NewEvent:
    return NewEvent(type_, data)
