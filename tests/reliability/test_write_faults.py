"""A locked database stops writes, not reads, and readiness says so (issue 20 item 7).

Another process holds the SQLite write lock (``BEGIN EXCLUSIVE``), as a
long-running operator tool or a stuck process would.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from contextlib import contextmanager

import pytest

from tests.support.messages import ulid
from tests.support.process import serve, sqlite_url

pytestmark = pytest.mark.reliability


@contextmanager
def write_lock_held(tmp_path):
    db = sqlite3.connect(tmp_path / "parley.db", isolation_level=None)
    db.execute("BEGIN EXCLUSIVE")
    try:
        yield
    finally:
        db.execute("ROLLBACK")
        db.close()


def note() -> dict:
    return {"type": "note", "body": ulid(), "msg_id": ulid()}


def test_a_locked_file_answers_503_within_the_writer_busy_timeout_and_readyz_reports_it(tmp_path):
    with serve(sqlite_url(tmp_path), tmp_path) as server, server.client("tok-a") as client:
        assert client.post("/channels", json={"channel": "w"}).status_code == 201
        with write_lock_held(tmp_path):
            started = time.monotonic()
            refused = client.post("/channels/w/append", json=note(), timeout=30)
            waited = time.monotonic() - started
            assert refused.status_code == 503 and refused.headers["retry-after"] == "1"
            assert waited < 5, waited  # the writer's 1 s busy timeout, not the 10 s connection default
            ready = client.get("/readyz")
            assert ready.status_code == 503
            assert ready.json()["error"]["message"].startswith("the journal writer cannot commit (")
            assert "database is locked" in ready.json()["error"]["message"]
        assert client.get("/readyz").status_code == 200  # the probe write succeeds again
        assert client.post("/channels/w/append", json=note()).status_code == 201


def test_reads_keep_answering_while_writes_fail(tmp_path):
    env = {"PARLEY_MAX_POSTS_PER_MINUTE": "100000", "PARLEY_GLOBAL_MAX_POSTS_PER_MINUTE": "100000"}
    with serve(sqlite_url(tmp_path), tmp_path, **env) as server:
        with server.client("tok-a") as client:
            assert client.post("/channels", json={"channel": "w"}).status_code == 201
            assert client.post("/channels/w/append", json=note()).status_code == 201
        statuses: dict[str, list[int]] = {"append": [], "read": []}
        with write_lock_held(tmp_path):
            done = threading.Event()
            refused = threading.Event()  # reads are fast (ADR-0058): wait for a refusal, not for time

            def write() -> None:
                with server.client("tok-a") as c:
                    while not done.is_set():
                        statuses["append"].append(c.post("/channels/w/append", json=note(), timeout=30).status_code)
                        refused.set()

            def read(reader) -> None:
                page = reader.post("/channels/w/read", json={"cursor": 0}, timeout=30)
                statuses["read"].append(page.status_code)
                assert page.status_code != 200 or len(page.json()["messages"]) == 1

            writers = [threading.Thread(target=write) for _ in range(3)]
            for t in writers:
                t.start()
            with server.client() as reader:
                for _ in range(3):  # while the appends wait on the lock
                    read(reader)
                assert refused.wait(30)
                for _ in range(3):  # and after they were refused
                    read(reader)
            done.set()
            for t in writers:
                t.join()
        assert statuses["append"] and set(statuses["append"]) == {503}
        assert statuses["read"] == [200] * 6


def test_a_post_whose_commit_failed_spends_no_budget_and_is_no_duplicate_baseline(tmp_path):
    """The seatbelt is charged after the commit (ADR-0037): the refused post's
    retry is accepted, and the budget counts only what was stored."""
    env = {"PARLEY_MAX_POSTS_PER_MINUTE": "2"}
    with serve(sqlite_url(tmp_path), tmp_path, **env) as server, server.client("tok-a") as client:
        assert client.post("/channels", json={"channel": "w"}).status_code == 201
        assert client.post("/channels/w/append", json=note()).status_code == 201
        retried = {"type": "note", "body": "the same words", "msg_id": ulid()}
        with write_lock_held(tmp_path):
            assert client.post("/channels/w/append", json=retried, timeout=30).status_code == 503
        again = client.post("/channels/w/append", json={**retried, "msg_id": ulid()})
        assert again.status_code == 201, again.text  # not duplicate_post, not rate_limited
        over = client.post("/channels/w/append", json=note())
        assert over.status_code == 429 and over.json()["error"]["code"] == "rate_limited"
