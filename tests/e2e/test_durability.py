"""``parley serve`` as a real subprocess: the bin contract and D1 (nothing acknowledged is lost).

Each test starts ``python -m parley serve`` with the bin's environment
(``PORT=0``, ``PARLEY_DATABASE_URL``, ``PARLEY_TOKENS``, ``PARLEY_ADMIN_TOKEN``),
waits for the one stdout banner line, talks HTTP to it, and kills it with
SIGKILL (no chance to flush anything) or stops it with SIGTERM. The
subprocess helpers live in :mod:`tests.support.process`.
"""

from __future__ import annotations

import hashlib
import signal
import subprocess
import sys
import time

import httpx
import pytest

from tests.conftest import postgres_schema_url
from tests.support.messages import ulid
from tests.support.process import (
    ADMIN,
    BANNER,
    TOKENS,
    clean_env,
    database,
    run_cli,
    serve,
    sqlite_url,
)


def seq_of(ts: str) -> int:
    return int(ts.split("#", 1)[1])


BACKENDS = ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]


@pytest.mark.parametrize("kind", BACKENDS)
def test_kill_9_loses_no_acknowledged_write(kind, tmp_path):
    blob = b"\x00artifact bytes\xff" * 100
    sha = hashlib.sha256(blob).hexdigest()
    with database(kind, tmp_path) as url:
        with serve(url, tmp_path) as first:
            with first.client("tok-a") as a, first.client("tok-b") as b, first.client(ADMIN) as admin:
                assert a.get("/readyz").status_code == 200
                assert a.post("/channels", json={"channel": "ops", "purpose": "durable"}).status_code == 201
                assert a.post("/channels", json={"channel": "done-room"}).status_code == 201
                appended = []
                for i in range(5):
                    client = a if i % 2 == 0 else b
                    response = client.post("/channels/ops/append", json={"type": "note", "body": f"m{i}", "msg_id": ulid()})
                    assert response.status_code == 201
                    appended.append(response.json()["message"])
                leased = a.post("/channels/ops/claim", json={
                    "type": "claim", "body": "mine", "msg_id": ulid(), "target": "job", "lease_ttl": 3600,
                })
                assert leased.json()["outcome"] == "granted"
                forever = b.post("/channels/ops/claim", json={"type": "claim", "body": "b", "msg_id": ulid(), "target": "forever"})
                assert forever.json()["outcome"] == "granted"
                minted = admin.post("/admin/tokens", json={"agent_id": "bot", "owner": "dana"}).json()["token"]
                doomed = admin.post("/admin/tokens", json={"agent_id": "gone", "owner": "x"}).json()["token"]
                assert admin.post("/admin/tokens/revoke", json={"agent_id": "gone"}).json() == {"revoked": True}
                assert a.put(f"/channels/ops/artifacts/{sha}", content=blob).status_code == 201
                assert a.post("/channels/done-room/archive").status_code == 200
                last = a.post("/channels/done-room/append", json={"type": "note", "body": "x", "msg_id": ulid()})
                assert last.status_code == 409

                channels_before = a.get("/channels").json()
                log_before = a.post("/channels/ops/read", json={"cursor": 0}).json()
                claims_before = a.get("/channels/ops/claims").json()
                cursor_before = a.post("/channels/ops/subscribe").json()
            first.kill9()
            assert first.proc.returncode == -signal.SIGKILL

        with serve(url, tmp_path) as second:
            with second.client("tok-a") as a, second.client("tok-b") as b:
                assert a.get("/channels").json() == channels_before
                assert a.post("/channels/ops/read", json={"cursor": 0}).json() == log_before
                assert a.get("/channels/ops/claims").json() == claims_before
                assert a.post("/channels/ops/subscribe").json() == cursor_before == {"cursor": 7}
                assert a.get(f"/channels/ops/artifacts/{sha}").content == blob
                # the ledger survived: first-write-wins still holds
                lost = b.post("/channels/ops/claim", json={"type": "claim", "body": "b", "msg_id": ulid(), "target": "job"})
                assert lost.json()["outcome"] == "already_claimed"
                assert lost.json()["by"]["msg_id"] == leased.json()["message"]["msg_id"]
                # D2 survived: a retried append is replayed, not appended
                again = a.post("/channels/ops/append", json={k: appended[0][k] for k in ("type", "body", "msg_id")})
                assert again.status_code == 201 and again.headers["idempotent-replayed"] == "true"
                # archived stays archived
                assert a.post("/channels/done-room/append", json={"type": "note", "body": "x", "msg_id": ulid()}).status_code == 409
                # stamps after the restart sort after every stamp before it
                fresh = a.post("/channels/ops/append", json={"type": "note", "body": "after", "msg_id": ulid()}).json()
                old_stamps = [m["ts"] for m in log_before["messages"]] + [d["created_ts"] for d in channels_before["channels"]]
                assert all(fresh["message"]["ts"] > ts for ts in old_stamps)
                assert seq_of(fresh["message"]["ts"]) > max(seq_of(ts) for ts in old_stamps)
                assert fresh["cursor"] == 8
            with second.client(minted) as bot:
                stored = bot.post("/channels/ops/append", json={"type": "note", "body": "bot", "msg_id": ulid()})
                assert stored.status_code == 201
                assert (stored.json()["message"]["agent_id"], stored.json()["message"]["owner"]) == ("bot", "dana")
            with second.client(doomed) as ghost:
                refused = ghost.post("/channels/ops/append", json={"type": "note", "body": "no", "msg_id": ulid()})
                assert refused.status_code == 401

            # SIGTERM: a clean exit, code 0, within 5 s; stdout held only the banner.
            started = time.monotonic()
            second.proc.send_signal(signal.SIGTERM)
            assert second.proc.wait(timeout=5) == 0
            assert time.monotonic() - started < 5
            assert second.proc.stdout.read() == ""
            assert minted not in second.stderr() and ADMIN not in second.stderr()


def test_banner_is_exact_and_bin_aliases_work(tmp_path):
    env_url = sqlite_url(tmp_path)
    with serve(env_url, tmp_path, CAUCUS_ADMIN_TOKEN="ignored") as server:
        port = int(server.url.rsplit(":", 1)[1])
        assert 0 < port < 65536
        assert server.banner == f"parley listening on http://127.0.0.1:{port}\n"
        with server.client() as anon:
            assert anon.get("/healthz").json() == {"ok": True}
            assert anon.get("/readyz").status_code == 200
        server.proc.send_signal(signal.SIGTERM)
        assert server.proc.wait(timeout=5) == 0
    # CAUCUS_TOKENS / CAUCUS_ADMIN_TOKEN are aliases
    env = clean_env(
        PORT="0", PARLEY_DATABASE_URL=env_url, CAUCUS_TOKENS="tok-z:sess-z:zed", CAUCUS_ADMIN_TOKEN="caucus-admin"
    )
    proc = subprocess.Popen([sys.executable, "-m", "parley", "serve"], env=env, cwd=tmp_path,
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        url = BANNER.match(proc.stdout.readline()).group(1)
        with httpx.Client(base_url=url, headers={"Authorization": "Bearer tok-z"}) as client:
            assert client.post("/channels", json={"channel": "alias"}).json()["created_by"] == "zed"
        with httpx.Client(base_url=url, headers={"Authorization": "Bearer caucus-admin"}) as admin:
            assert admin.post("/admin/tokens", json={"agent_id": "a", "owner": "b"}).status_code == 201
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=5) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.stdout.close()


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({"PORT": "70000"}, 'parley: invalid PORT "70000": must be an integer in [0, 65535]'),
        ({"PORT": "abc"}, 'parley: invalid PORT "abc": must be an integer in [0, 65535]'),
        ({"PORT": "-1"}, 'parley: invalid PORT "-1": must be an integer in [0, 65535]'),
        ({"PORT": "\u0663"}, 'parley: invalid PORT "\u0663": must be an integer in [0, 65535]'),
        ({"PARLEY_PORT": "65536"}, 'parley: invalid PARLEY_PORT "65536": must be an integer in [0, 65535]'),
        ({"PORT": "0", "PARLEY_TOKENS": "tok-secret-1:a:b,tok-secret-2:only-two"}, "parley: PARLEY_TOKENS entry 2 is malformed"),
        ({"PORT": "0", "PARLEY_TOKENS": "tok-secret-1::b"}, "parley: PARLEY_TOKENS entry 1 is malformed"),
        ({"PORT": "0", "PARLEY_TOKENS": "tok-secret-1:a:b,tok-secret-1:c:d"}, "parley: PARLEY_TOKENS entry 2 is malformed"),
        ({"PORT": "0", "CAUCUS_TOKENS": "tok-secret-1"}, "parley: CAUCUS_TOKENS entry 1 is malformed"),
    ],
)
def test_bad_configuration_exits_1_with_one_line(env, expected, tmp_path):
    result = run_cli(["serve"], clean_env(PARLEY_DATABASE_URL=sqlite_url(tmp_path), **env), tmp_path)
    assert result.returncode == 1
    assert result.stdout == ""
    assert result.stderr.splitlines() == [expected]
    assert "tok-secret" not in result.stderr
    assert not (tmp_path / "parley.db").exists()  # refused before touching the database


@pytest.mark.postgres
def test_serve_refuses_an_unmigrated_postgres_schema(tmp_path):
    with postgres_schema_url() as url:
        result = run_cli(["serve"], clean_env(PORT="0", PARLEY_DATABASE_URL=url, PARLEY_TOKENS=TOKENS), tmp_path)
    assert result.returncode == 1
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "parley db upgrade" in lines[0], result.stderr


@pytest.mark.parametrize("kind", BACKENDS)
def test_kill_9_under_concurrent_load_keeps_every_acknowledged_append(kind, tmp_path):
    import threading

    acked: list[str] = []
    lock = threading.Lock()
    stop = threading.Event()
    enough = threading.Event()

    with database(kind, tmp_path) as url:
        with serve(url, tmp_path, PARLEY_MAX_POSTS_PER_MINUTE="100000") as first:
            with first.client("tok-a") as a:
                assert a.post("/channels", json={"channel": "load"}).status_code == 201

            def writer(token: str) -> None:
                with first.client(token) as client:
                    while not stop.is_set():
                        msg_id = ulid()
                        try:
                            response = client.post(
                                "/channels/load/append", json={"type": "note", "body": msg_id, "msg_id": msg_id}
                            )
                        except httpx.HTTPError:
                            return  # the server died mid-request: not acknowledged
                        assert response.status_code == 201, response.text
                        with lock:
                            acked.append(msg_id)
                            if len(acked) >= 150:
                                enough.set()

            threads = [threading.Thread(target=writer, args=(t,)) for t in ("tok-a", "tok-b") * 4]
            for thread in threads:
                thread.start()
            assert enough.wait(timeout=30)
            first.kill9()  # while requests are in flight
            stop.set()
            for thread in threads:
                thread.join(timeout=10)
            with lock:
                acknowledged = list(acked)

        with serve(url, tmp_path) as second:
            with second.client() as anon:
                head = anon.get("/channels/load").json()["head"]
                stored: list[dict] = []
                cursor = 0
                while True:
                    page = anon.post("/channels/load/read", json={"cursor": cursor}).json()
                    if not page["messages"]:
                        break
                    stored += page["messages"]
                    cursor = page["cursor"]
            assert len(stored) == head == cursor
            ids = [m["msg_id"] for m in stored]
            assert len(set(ids)) == len(ids)
            assert set(acknowledged) <= set(ids)
            stamps = [m["ts"] for m in stored]
            assert stamps == sorted(stamps) and len(set(stamps)) == len(stamps)


def test_sigterm_with_live_streams_exits_0_within_5_seconds(tmp_path):
    with serve(sqlite_url(tmp_path), tmp_path) as server:
        with server.client("tok-a") as a:
            a.post("/channels", json={"channel": "tail"})
        clients = [server.client() for _ in range(3)]
        streams = []
        try:
            for client in clients:
                stream = client.stream("GET", "/channels/tail/stream?since=0")
                response = stream.__enter__()
                streams.append(stream)
                assert next(response.iter_bytes()) .startswith(b": keep-alive")
            started = time.monotonic()
            server.proc.send_signal(signal.SIGTERM)
            assert server.proc.wait(timeout=5) == 0
            assert time.monotonic() - started < 5
        finally:
            for stream in streams:
                try:
                    stream.__exit__(None, None, None)
                except httpx.HTTPError:
                    pass
            for client in clients:
                client.close()
