"""The outbox's SQLite file: schema, rows and every statement (ADR-0018).

This is the *client's* own file, not the server journal, so it uses the
standard library's :mod:`sqlite3` directly. Every write runs in
``BEGIN IMMEDIATE`` (the write lock is taken before the first read, so two
processes deciding about the same client id are serialised) and commits with
``PRAGMA synchronous=FULL`` in WAL mode: a row is on disk when the call that
wrote it returns. The file is created ``0600`` because a session-turn row
holds a continuation token.
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

STATES = ("pending", "inflight", "done", "dead", "aborted")
#: Rows a drain still has to send.
OPEN_STATES = ("pending", "inflight")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS outbox (
    seq             INTEGER PRIMARY KEY AUTOINCREMENT,
    client_id       TEXT NOT NULL UNIQUE,
    kind            TEXT NOT NULL CHECK (kind IN ('append', 'turn')),
    lane            TEXT NOT NULL,
    request         TEXT NOT NULL,
    fingerprint     TEXT NOT NULL,
    idempotency_key TEXT NOT NULL,
    secret          TEXT,
    state           TEXT NOT NULL CHECK (state IN ('pending', 'inflight', 'done', 'dead', 'aborted')),
    created_at      REAL NOT NULL,
    attempts        INTEGER NOT NULL DEFAULT 0,
    last_attempt_at REAL,
    next_attempt_at REAL NOT NULL DEFAULT 0,
    last_error      TEXT,
    error_code      TEXT,
    error_status    INTEGER,
    delivered_at    REAL,
    cursor          INTEGER,
    response        TEXT,
    aborted_at      REAL,
    requeued_from   TEXT,
    superseded_by   TEXT
);
CREATE INDEX IF NOT EXISTS outbox_open ON outbox (state, lane, seq);
"""


@dataclass(frozen=True)
class Row:
    """One outbox row, as stored (times are Unix seconds)."""

    seq: int
    client_id: str
    kind: str
    lane: str
    request: dict[str, Any]
    fingerprint: str
    idempotency_key: str
    secret: str | None
    state: str
    created_at: float
    attempts: int
    last_attempt_at: float | None
    next_attempt_at: float
    last_error: str | None
    error_code: str | None
    error_status: int | None
    delivered_at: float | None
    cursor: int | None
    response: dict[str, Any] | None
    aborted_at: float | None
    requeued_from: str | None
    superseded_by: str | None

    @property
    def channel(self) -> str | None:
        return self.lane if self.kind == "append" else None

    def to_json(self) -> dict[str, Any]:
        """The row for ``parley outbox list --json`` (never the secret)."""
        out = {name: getattr(self, name) for name in _COLUMNS if name != "secret"}
        if isinstance(self.response, dict) and "continuationToken" in self.response:
            out["response"] = {k: v for k, v in self.response.items() if k != "continuationToken"}
        return out


_COLUMNS = tuple(Row.__dataclass_fields__)


def _row(record: sqlite3.Row) -> Row:
    values = dict(record)
    values["request"] = json.loads(values["request"])
    values["response"] = json.loads(values["response"]) if values["response"] is not None else None
    return Row(**values)


class OutboxStore:
    """The statements of the outbox, each one committed before it returns."""

    def __init__(self, path: str | os.PathLike[str], *, busy_timeout: float = 30.0) -> None:
        self.path = Path(path)
        if str(self.path.parent):
            self.path.parent.mkdir(parents=True, exist_ok=True)
        if not self.path.exists():
            os.close(os.open(self.path, os.O_CREAT | os.O_WRONLY, 0o600))
        self._db = sqlite3.connect(self.path, timeout=busy_timeout, isolation_level=None, check_same_thread=False)
        self._db.row_factory = sqlite3.Row
        #: One connection per Outbox: threads sharing it take turns, a transaction at a time.
        self._lock = threading.RLock()
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        with self.transaction():
            for statement in filter(str.strip, _SCHEMA.split(";")):
                self._db.execute(statement)

    def close(self) -> None:
        self._db.close()

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """``BEGIN IMMEDIATE`` … ``COMMIT`` (rolled back on any error)."""
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    def _query(self, sql: str, args: tuple[Any, ...] = ()) -> list[sqlite3.Row]:
        with self._lock:
            return self._db.execute(sql, args).fetchall()

    # -- reads ------------------------------------------------------------------

    def get(self, client_id: str, db: sqlite3.Connection | None = None) -> Row | None:
        sql, args = "SELECT * FROM outbox WHERE client_id = ?", (client_id,)
        records = db.execute(sql, args).fetchall() if db is not None else self._query(sql, args)
        return _row(records[0]) if records else None

    def rows(self, states: tuple[str, ...] | None = None) -> list[Row]:
        if states:
            marks = ",".join("?" * len(states))
            sql = f"SELECT * FROM outbox WHERE state IN ({marks}) ORDER BY seq"
            return [_row(r) for r in self._query(sql, states)]
        return [_row(r) for r in self._query("SELECT * FROM outbox ORDER BY seq")]

    def lane_heads(self) -> list[Row]:
        """The oldest open row of every lane (a lane's later rows wait for it), in enqueue order."""
        sql = (
            "SELECT * FROM outbox WHERE seq IN ("
            " SELECT MIN(seq) FROM outbox WHERE state IN ('pending', 'inflight') GROUP BY lane"
            ") ORDER BY seq"
        )
        return [_row(r) for r in self._query(sql)]

    def open_before(self, row: Row) -> list[Row]:
        """Open rows of ``row``'s lane enqueued before it, oldest first."""
        sql = "SELECT * FROM outbox WHERE lane = ? AND seq < ? AND state IN ('pending', 'inflight') ORDER BY seq"
        return [_row(r) for r in self._query(sql, (row.lane, row.seq))]

    def lane_from(self, row: Row, limit: int) -> list[Row]:
        """``row`` and the open rows of its lane enqueued after it, oldest first (at most ``limit``)."""
        sql = "SELECT * FROM outbox WHERE lane = ? AND seq >= ? AND state IN ('pending', 'inflight') ORDER BY seq LIMIT ?"
        return [_row(r) for r in self._query(sql, (row.lane, row.seq, limit))]

    def last_done_turn(self, row: Row) -> Row | None:
        """The latest delivered turn of ``row``'s session enqueued before it (its token is the next one)."""
        sql = "SELECT * FROM outbox WHERE lane = ? AND seq < ? AND kind = 'turn' AND state = 'done' ORDER BY seq DESC LIMIT 1"
        records = self._query(sql, (row.lane, row.seq))
        return _row(records[0]) if records else None

    def counts(self) -> dict[str, int]:
        found = {state: n for state, n in self._query("SELECT state, COUNT(*) FROM outbox GROUP BY state")}
        return {state: found.get(state, 0) for state in STATES}

    # -- writes -------------------------------------------------------------------

    def insert(
        self,
        db: sqlite3.Connection,
        *,
        client_id: str,
        kind: str,
        lane: str,
        request: dict[str, Any],
        fingerprint: str,
        idempotency_key: str,
        secret: str | None = None,
        requeued_from: str | None = None,
    ) -> None:
        db.execute(
            "INSERT INTO outbox (client_id, kind, lane, request, fingerprint, idempotency_key, secret, state,"
            " created_at, requeued_from) VALUES (?, ?, ?, ?, ?, ?, ?, 'pending', ?, ?)",
            (client_id, kind, lane, json.dumps(request, sort_keys=True), fingerprint, idempotency_key, secret,
             time.time(), requeued_from),
        )

    def mark_inflight(self, client_id: str) -> bool:
        """Claim a row for sending; False if it is no longer open (an operator aborted it meanwhile)."""
        with self.transaction() as db:
            cursor = db.execute(
                "UPDATE outbox SET state = 'inflight', attempts = attempts + 1, last_attempt_at = ?"
                " WHERE client_id = ? AND state IN ('pending', 'inflight')",
                (time.time(), client_id),
            )
            return cursor.rowcount == 1

    def mark_done(self, client_id: str, cursor: int | None, response: dict[str, Any] | None) -> None:
        with self.transaction() as db:
            db.execute(
                "UPDATE outbox SET state = 'done', delivered_at = ?, cursor = ?, response = ?"
                " WHERE client_id = ? AND state = 'inflight'",
                (time.time(), cursor, json.dumps(response) if response is not None else None, client_id),
            )

    def mark_retry(self, client_id: str, error: str, code: str | None, status: int | None, delay: float) -> None:
        with self.transaction() as db:
            db.execute(
                "UPDATE outbox SET state = 'pending', last_error = ?, error_code = ?, error_status = ?,"
                " next_attempt_at = ? WHERE client_id = ? AND state = 'inflight'",
                (error, code, status, time.time() + delay, client_id),
            )

    def mark_dead(self, client_id: str, error: str, code: str | None, status: int | None) -> None:
        with self.transaction() as db:
            db.execute(
                "UPDATE outbox SET state = 'dead', last_error = ?, error_code = ?, error_status = ?"
                " WHERE client_id = ? AND state = 'inflight'",
                (error, code, status, client_id),
            )

    def set_state(self, db: sqlite3.Connection, client_id: str, state: str, **columns: Any) -> None:
        assignments = ", ".join(f"{name} = ?" for name in ("state", *columns))
        db.execute(f"UPDATE outbox SET {assignments} WHERE client_id = ?", (state, *columns.values(), client_id))


__all__ = ["OPEN_STATES", "STATES", "OutboxStore", "Row"]
