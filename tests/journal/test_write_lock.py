"""The Postgres write lock orders commits within one schema and only there.

Positions need commit order within one ``events`` table; a lock shared by every
schema of the database made each journal (every test run, every tenant) queue
behind the others' writes, and a long ``journal import`` stalled them all.
"""

from __future__ import annotations

import pytest
import sqlalchemy as sa
from sqlalchemy import exc as sa_exc

from parley.database_url import normalise as normalise_url
from parley.journal.batch import PG_WRITE_LOCK, WRITE_LOCK_KEY
from tests.conftest import postgres_schema_url


def engine_for(url: str) -> sa.Engine:
    return sa.create_engine(normalise_url(url), poolclass=sa.pool.NullPool)


def take_write_lock(conn: sa.Connection, lock_timeout: str) -> None:
    conn.execute(sa.text(f"SET LOCAL lock_timeout = '{lock_timeout}'"))
    conn.execute(PG_WRITE_LOCK, {"k": WRITE_LOCK_KEY})


def test_a_writer_in_another_schema_is_not_held_up_but_one_in_the_same_schema_is():
    with postgres_schema_url() as url_a, postgres_schema_url() as url_b:
        a, b = engine_for(url_a), engine_for(url_b)
        try:
            with a.begin() as holder:
                take_write_lock(holder, "5s")  # schema A's writer is in the middle of a batch
                with b.begin() as other_schema:
                    take_write_lock(other_schema, "5s")  # granted at once (was: waited for A)
                with a.connect() as same_schema, same_schema.begin():
                    with pytest.raises(sa_exc.OperationalError, match="lock timeout"):
                        take_write_lock(same_schema, "200ms")
        finally:
            a.dispose()
            b.dispose()
