"""`parley serve --workers N`: several processes behind one port on Postgres;
refused with a clear message on SQLite."""

from __future__ import annotations

import signal
import threading

import pytest

from tests.e2e.test_durability import clean_env, database, run_cli, serve, sqlite_url
from tests.support.messages import ulid


def test_sqlite_refuses_more_than_one_worker(tmp_path):
    result = run_cli(["serve", "--workers", "2"], clean_env(PORT="0", PARLEY_DATABASE_URL=sqlite_url(tmp_path)), tmp_path)
    assert result.returncode == 1
    assert result.stdout == ""
    assert result.stderr.strip().splitlines() == [
        "parley: PARLEY_WORKERS/--workers > 1 needs Postgres: SQLite serialises writers, so run one "
        "worker (or set PARLEY_DATABASE_URL=postgresql://...)"
    ]


@pytest.mark.postgres
def test_two_workers_on_postgres_serve_one_backbone_and_stop_cleanly(tmp_path):
    with database("postgres", tmp_path) as url, serve(url, tmp_path, PARLEY_WORKERS="2") as server:
        with server.client("tok-a") as alice:
            assert alice.post("/channels", json={"channel": "w"}).status_code == 201
        outcomes: list[str] = []

        def racer(token: str, index: int, round_: int) -> None:
            with server.client(token) as client:  # a fresh connection may land on either worker
                r = client.post(
                    "/channels/w/claim",
                    json={"type": "claim", "body": "mine", "msg_id": ulid(), "target": f"t{round_}"},
                )
                assert r.status_code == 200, r.text
                outcomes.append(r.json()["outcome"])

        for round_ in range(10):
            outcomes.clear()
            threads = [threading.Thread(target=racer, args=(t, i, round_)) for i, t in enumerate(["tok-a", "tok-b"] * 3)]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            assert outcomes.count("granted") == 1, outcomes
        with server.client() as anon:
            assert anon.get("/channels/w").json()["head"] == 10
        server.proc.send_signal(signal.SIGTERM)
        assert server.proc.wait(timeout=10) == 0
