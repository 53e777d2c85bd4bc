"""Has anyone committed to the journal since I last looked? (ADR-0049)

The journal tailer (``parley.actors.tailer``) polls the global log every
50 ms so that commits of other processes reach this one. On SQLite each poll
was a reader-thread round trip and a ``SELECT`` even when nothing had been
written; during a read-only load (a scan) that was most of what the
process did besides serving. :class:`SqliteChangeProbe` answers the question
for a few microseconds instead: ``PRAGMA data_version`` on one dedicated
connection changes whenever *another* connection (this process's writer
thread, another process, the CLI) has committed since the previous call on
that connection (sqlite.org/pragma.html#pragma_data_version).

The probe runs on the caller's thread (the event loop): the pragma takes
no lock a writer holds in WAL mode, and the probe's connection has a zero
busy timeout, so a rare ``SQLITE_BUSY`` (or any failure) answers ``None``,
"unknown": the caller reads the journal as it always did. Postgres has no
such pragma (its commit notifications, journal.notify, already wake the
tailer); there is no probe and the poll is unchanged.
"""

from __future__ import annotations

import logging
from typing import Any

from sqlalchemy.engine import Engine

log = logging.getLogger("parley.journal")


class SqliteChangeProbe:
    """``probe()`` → an integer that differs after any other connection's commit, or ``None`` (unknown)."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        self._connection: Any = None

    def open(self) -> None:
        """Check out the probe's own connection (blocking: call it from a thread)."""
        if self._connection is None:
            connection = self._engine.raw_connection()
            try:
                cursor = connection.cursor()
                try:
                    cursor.execute("PRAGMA busy_timeout=0")
                finally:
                    cursor.close()
            except Exception:
                connection.close()
                raise
            self._connection = connection

    def __call__(self) -> int | None:
        connection = self._connection
        if connection is None:
            return None
        try:
            cursor = connection.cursor()
            try:
                cursor.execute("PRAGMA data_version")
                row = cursor.fetchone()
            finally:
                cursor.close()
        except Exception as exc:  # busy, closed, disk trouble: the caller reads the journal instead
            log.debug("change probe failed: %s", type(exc).__name__)
            return None
        return int(row[0]) if row else None

    def close(self) -> None:
        connection, self._connection = self._connection, None
        if connection is not None:
            try:
                connection.close()
            except Exception:  # noqa: BLE001 - closing at shutdown; nothing to tell anyone
                pass
