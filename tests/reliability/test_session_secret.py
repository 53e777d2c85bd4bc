"""The continuation-token key stays out of the database (issue 20, item 6; ADR-0024).

Real ``parley serve`` subprocesses on a real SQLite file and on Postgres. The
attacker reads every row of the database and holds the owner's bearer token.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest
import sqlalchemy as sa

from parley.domain.tokens import derive_token
from parley.journal.engine import make_engine
from tests.support.process import clean_env, database, run_cli, serve, server_env, start_server

pytestmark = pytest.mark.reliability

BACKENDS = ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]


def every_value(url: str) -> list[str]:
    """Every text cell of every table: what a database reader sees."""
    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            values = []
            for table in sa.inspect(conn).get_table_names():
                for row in conn.execute(sa.text(f'SELECT * FROM "{table}"')):
                    values.extend(v for v in row if isinstance(v, str))
            return values
    finally:
        engine.dispose()


def key_lines(path: Path) -> list[str]:
    return [line for line in path.read_text().splitlines() if line and not line.startswith("#")]


@pytest.mark.parametrize("kind", BACKENDS)
def test_reading_the_database_does_not_give_a_valid_continuation_token(kind, tmp_path):
    key_file = tmp_path / "keys" / "session.key"
    with database(kind, tmp_path) as url:
        with serve(url, tmp_path, PARLEY_SESSION_KEY_FILE=str(key_file)) as server, server.client("tok-a") as a:
            started = a.post("/v1/session", json={})
            assert started.status_code == 200, started.text
            sid = started.json()["sessionId"]
            # The attacker: every value of the database tried as the HMAC key.
            forged = {derive_token(v.encode(), sid, 1) for v in every_value(url)}
            assert started.json()["continuationToken"] not in forged
            for token in forged:
                r = a.post(f"/v1/session/{sid}/message", json={"continuationToken": token})
                assert r.status_code != 200
            # The key is in a file only its owner may read, made on first start.
            assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
            assert stat.S_IMODE(key_file.parent.stat().st_mode) == 0o700
            (key,) = key_lines(key_file)
            assert derive_token(key.encode(), sid, 1) == started.json()["continuationToken"]
            assert not any(key in v for v in every_value(url))
            assert key not in server.stderr()


def test_a_key_file_others_can_read_is_refused_in_one_line(tmp_path):
    key_file = tmp_path / "session.key"
    key_file.write_text("an-old-key-that-others-can-read\n")
    os.chmod(key_file, 0o644)
    url = f"sqlite:///{tmp_path / 'parley.db'}"
    result = run_cli(["serve"], server_env(url, PARLEY_SESSION_KEY_FILE=str(key_file)), tmp_path, timeout=60)
    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert f"session key file {key_file} is accessible to group or others (mode 0644)" in lines[0]
    assert f"chmod 600 {key_file}" in lines[0]
    assert "an-old-key" not in result.stderr + result.stdout


def test_the_default_key_file_sits_next_to_the_sqlite_file(tmp_path):
    url = f"sqlite:///{tmp_path / 'parley.db'}"
    with serve(url, tmp_path) as server:
        assert server.client("tok-a").post("/v1/session", json={}).status_code == 200
    assert stat.S_IMODE((tmp_path / "parley.db.key").stat().st_mode) == 0o600


def test_rotation_keeps_live_sessions_and_replays_byte_identical(tmp_path):
    url = f"sqlite:///{tmp_path / 'parley.db'}"
    key_file = tmp_path / "parley.db.key"
    with serve(url, tmp_path) as server, server.client("tok-a") as a:
        started = a.post("/v1/session", json={}).json()
        sid, t1 = started["sessionId"], started["continuationToken"]
        second = a.post(f"/v1/session/{sid}/message", json={"continuationToken": t1}, headers={"Idempotency-Key": "k-2"})
        assert second.status_code == 200
        t2 = second.json()["continuationToken"]
    (old_key,) = key_lines(key_file)

    rotated = run_cli(["token", "rotate-session-key", "--database-url", url], clean_env(), tmp_path)
    assert rotated.returncode == 0, rotated.stderr
    assert f"rotated the session key in {key_file}" in rotated.stdout
    new_key, previous = key_lines(key_file)
    assert previous == old_key and new_key != old_key
    assert old_key not in rotated.stdout + rotated.stderr and new_key not in rotated.stdout + rotated.stderr
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600

    with serve(url, tmp_path) as server, server.client("tok-a") as a:
        # the retried turn answers the very token it first issued (the previous key re-derives it)
        replay = a.post(f"/v1/session/{sid}/message", json={"continuationToken": t1}, headers={"Idempotency-Key": "k-2"})
        assert replay.status_code == 200 and replay.headers.get("idempotent-replayed") == "true"
        assert replay.json() == second.json()
        # the live token still works; the next one is signed with the new key
        third = a.post(f"/v1/session/{sid}/message", json={"continuationToken": t2})
        assert third.status_code == 200, third.text
        assert third.json()["continuationToken"] == derive_token(new_key.encode(), sid, 3)


@pytest.mark.parametrize("kind", BACKENDS)
def test_a_secret_left_in_the_database_moves_to_the_key_file(kind, tmp_path):
    """Upgrading from a server that stored the key in ``meta``: it leaves the database."""
    key_file = tmp_path / "session.key"
    legacy = "legacy-secret-from-the-database-0123456789"
    with database(kind, tmp_path) as url:
        if kind == "sqlite":
            assert run_cli(["db", "upgrade", "--database-url", url], clean_env(), tmp_path).returncode == 0
        engine = make_engine(url)
        try:
            with engine.begin() as conn:
                conn.execute(sa.text("INSERT INTO meta (key, value) VALUES ('session_secret', :v)"), {"v": legacy})
        finally:
            engine.dispose()
        server = start_server(url, tmp_path, PARLEY_SESSION_KEY_FILE=str(key_file))
        try:
            assert legacy not in every_value(url)
            current, previous = key_lines(key_file)
            assert previous == legacy and current != legacy
            server.terminate()
            assert "moved the session secret out of the database" in server.stderr()
            assert legacy not in server.stderr()
        finally:
            server.close()
