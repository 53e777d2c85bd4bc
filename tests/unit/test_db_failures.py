"""Raw driver errors (the raw-cursor read paths) are "unavailable" like wrapped ones.

A psycopg ``OperationalError`` from ``queries.fold_stream``'s raw cursor used to
escape the journal's classification and reach a client as a 500.
"""

from __future__ import annotations

import sqlite3

import psycopg
import pytest
from sqlalchemy import exc as sa_exc

from parley.journal.errors import JournalUnavailable
from parley.journal.failures import is_fatal_db_error, unavailable


@pytest.mark.parametrize(
    "error",
    [
        psycopg.OperationalError("consuming input failed: server closed the connection unexpectedly"),
        psycopg.InterfaceError("the connection is closed"),
        sqlite3.OperationalError("database is locked"),
        sa_exc.OperationalError("SELECT 1", {}, sqlite3.OperationalError("disk I/O error")),
    ],
    ids=["psycopg-operational", "psycopg-interface", "sqlite3-operational", "wrapped"],
)
def test_a_database_failure_is_fatal_raw_or_wrapped(error: Exception) -> None:
    assert is_fatal_db_error(error)
    wrapped = unavailable(error)
    assert isinstance(wrapped, JournalUnavailable)
    assert "postgresql://" not in str(wrapped)


@pytest.mark.parametrize(
    "error",
    [psycopg.errors.UniqueViolation("duplicate key"), sqlite3.IntegrityError("UNIQUE constraint failed"), ValueError("x")],
    ids=["psycopg-unique", "sqlite3-integrity", "value-error"],
)
def test_a_conflict_or_a_bug_is_not_an_outage(error: Exception) -> None:
    assert not is_fatal_db_error(error)
