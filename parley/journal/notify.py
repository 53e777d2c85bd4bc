"""Commit notifications between processes sharing one Postgres database.

Every write batch on Postgres sends ``NOTIFY parley_journal_<schema digest>,
'<origin> <last position>'`` inside its transaction (delivered when it
commits, never for a rollback). The channel is named after the journal's
schema (``current_schema()``), so journals in other schemas of the same
database are not woken by these commits. Each process listens on one dedicated connection and wakes
its journal tailer for commits of *other* origins, so a write in one process
reaches the live tails of another in milliseconds instead of after the next
poll (ADR-0007). The poll stays as the fallback: a lost notification, or a
listener that is reconnecting, only delays delivery, it never loses an event,
because the tailer always reads the journal itself.

SQLite has no such mechanism; there the tailer only polls.
"""

from __future__ import annotations

import hashlib
import logging
import threading
from collections.abc import Callable

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

log = logging.getLogger("parley.journal.notify")

CHANNEL_PREFIX = "parley_journal_"
_NOTIFY = sa.text("SELECT pg_notify(:channel, :payload)")
_CURRENT_SCHEMA = "SELECT current_schema()"


def channel_for(schema: str | None) -> str:
    """The notification channel of the journal in ``schema``.

    A digest, not the name: channel names are identifiers of at most 63
    bytes, and a schema name may be longer or need quoting.
    """
    return CHANNEL_PREFIX + hashlib.sha256((schema or "").encode()).hexdigest()[:16]


def channel_of(conn: Connection) -> str:
    """The notification channel of the schema ``conn`` writes to."""
    return channel_for(conn.exec_driver_sql(_CURRENT_SCHEMA).scalar())


def notify(conn: Connection, channel: str, origin: str, position: int) -> None:
    """Announce, within the current transaction, a commit up to ``position``."""
    conn.execute(_NOTIFY, {"channel": channel, "payload": f"{origin} {position}"})


def foreign_position(payload: str, origin: str) -> int | None:
    """The position announced by ``payload`` if another origin sent it, else ``None``."""
    sender, _, position = payload.partition(" ")
    if sender == origin or not position.isdigit():
        return None
    return int(position)


class CommitListener:
    """A thread holding a ``LISTEN`` connection on its schema's channel.

    Calls ``wake(position)`` (from the listener thread: it must be
    thread-safe) for every notification of another origin, and
    ``on_state(connected)`` after each connection attempt and when the
    connection goes down. Reconnects after a failure, every ``retry_s``. :meth:`stop` returns at once; the thread closes its
    connection and ends within ``poll_s`` (a daemon: it never holds up exit).
    """

    def __init__(
        self,
        engine: Engine,
        origin: str,
        wake: Callable[[int], None],
        on_state: Callable[[bool], None] = lambda connected: None,
        *,
        poll_s: float = 0.5,
        retry_s: float = 1.0,
    ) -> None:
        self.engine = engine
        self.origin = origin
        self.wake = wake
        self.on_state = on_state
        self.poll_s = poll_s
        self.retry_s = retry_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="parley-listen", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()

    def _connect(self):
        dialect = self.engine.dialect
        cargs, cparams = dialect.create_connect_args(self.engine.url)
        conn = dialect.connect(*cargs, **cparams)
        conn.autocommit = True
        schema = conn.execute(_CURRENT_SCHEMA).fetchone()[0]
        conn.execute(f"LISTEN {channel_for(schema)}")
        return conn

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                conn = self._connect()
            except Exception as exc:  # database down: the poll carries on meanwhile
                log.debug("journal listener cannot connect: %s", type(exc).__name__)
                self.on_state(False)
                self._stop.wait(self.retry_s)
                continue
            self.on_state(True)
            try:
                self._listen(conn)
            except Exception as exc:
                log.warning("journal listener lost its connection: %s", type(exc).__name__)
            finally:
                self.on_state(False)
                try:
                    conn.close()
                except Exception:
                    pass
            self._stop.wait(self.retry_s)

    def _listen(self, conn) -> None:
        while not self._stop.is_set():
            # Ends after poll_s without a notification, to notice stop().
            for note in conn.notifies(timeout=self.poll_s):
                position = foreign_position(note.payload, self.origin)
                if position is not None:
                    self.wake(position)
                if self._stop.is_set():
                    break
