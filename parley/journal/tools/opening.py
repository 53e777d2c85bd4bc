"""Opening a journal for an operator tool, and the error every tool raises.

A tool refuses what would silently mislead an operator: a SQLite file that
does not exist (a typo in ``--database-url`` must not yield an empty
"healthy" journal) or a database without parley's schema.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

import sqlalchemy as sa
from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import Engine

from .. import migrate, schema
from ...database_url import sqlite_path
from ..engine import make_engine, normalise_url
from ..store import JournalStore, unavailable

#: Progress callback: told how many units (events or bytes) were just done.
Advance = Callable[[int], None]

_E = schema.events


def no_progress(_n: int) -> None:
    pass


class ToolError(Exception):
    """A failure the operator can act on; the message is one safe line (never the URL)."""


def open_store(url: str, *, require_schema: bool = True) -> JournalStore:
    """A :class:`JournalStore` on ``url``, refusing a missing SQLite file or an unmigrated DB."""
    try:
        normalised = normalise_url(url)
    except ValueError as e:
        raise ToolError(str(e)) from None
    if normalised.startswith("sqlite"):
        path = sqlite_path(normalised) or ""
        if not os.path.exists(path):
            raise ToolError(
                f"no SQLite database at {path}; fix --database-url, or create one with `parley db upgrade`"
            )
    try:
        store = JournalStore(make_engine(url))
    except Exception as e:  # noqa: BLE001 - bad URL parts, missing driver, ...
        raise ToolError(f"cannot open the database: {type(e).__name__}") from None
    if require_schema:
        try:
            revision = migrate.current(store.engine)
        except sa_exc.SQLAlchemyError as e:
            store.dispose()
            raise ToolError(str(unavailable(e))) from None
        if revision is None:
            store.dispose()
            raise ToolError("the database has no parley schema; run 'parley db upgrade' first")
    return store


def count_events(engine: Engine, *conditions: Any) -> int:
    """Events matching ``conditions`` (all of them without): a progress bar's total."""
    with engine.connect() as conn:
        stmt = sa.select(sa.func.count()).select_from(_E)
        if conditions:
            stmt = stmt.where(*conditions)
        return conn.execute(stmt).scalar_one()


def range_conditions(stream: str | None, from_position: int | None, to_position: int | None) -> list[Any]:
    """The ``WHERE`` of an export or a tail: one stream, positions inclusive."""
    conds = []
    if stream is not None:
        conds.append(_E.c.stream_id == stream)
    if from_position is not None:
        conds.append(_E.c.position >= from_position)
    if to_position is not None:
        conds.append(_E.c.position <= to_position)
    return conds
