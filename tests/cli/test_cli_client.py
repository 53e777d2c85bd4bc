"""Issue 16 item 7: ``parley post`` / ``parley read`` against a real server (subprocesses)."""

from __future__ import annotations

import re
import signal
import subprocess
import sys

import orjson
import pytest

from tests.support.process import clean_env, run_cli, serve, sqlite_url

ULID = r"[0-9A-HJKMNP-TV-Z]{26}"
LINE = re.compile(r"^(\d+) (\S+#\d+) (\w+) (\S+)/(\S+) (.*)$")


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    cwd = tmp_path_factory.mktemp("server")
    with serve(sqlite_url(cwd), cwd) as running:
        yield running


def parley(server, *args: str, token: str | None = "tok-a", cwd=None) -> subprocess.CompletedProcess:
    env = {"PARLEY_URL": server.url}
    if token is not None:
        env["PARLEY_TOKEN"] = token
    return run_cli(list(args), clean_env(**env), cwd or server.stderr_path.parent)


def test_post_mints_the_msg_id_and_read_prints_one_line_per_message(server):
    first = parley(server, "post", "--create", "room-1", "hello there")
    assert first.returncode == 0, first.stderr
    assert re.fullmatch(rf"1 {ULID}\n", first.stdout), first.stdout
    second = parley(server, "post", "room-1", "two\nlines", "--type", "finding", token="tok-b")
    assert re.fullmatch(rf"2 {ULID}\n", second.stdout), second.stderr

    result = parley(server, "read", "room-1", token=None)
    assert result.returncode == 0, result.stderr
    lines = [LINE.match(line).groups() for line in result.stdout.splitlines()]
    assert [(c, t, o, a, b) for c, _ts, t, o, a, b in lines] == [
        ("1", "note", "alice", "sess-a", "hello there"),
        ("2", "finding", "bob", "sess-b", "two\\nlines"),
    ]

    as_json = parley(server, "read", "room-1", "--json", "--since", "1", token=None)
    [row] = [orjson.loads(line) for line in as_json.stdout.splitlines()]
    assert row["cursor"] == 2
    assert row["message"]["msg_id"] == second.stdout.split()[1]
    assert row["message"]["body"] == "two\nlines"


def test_post_claim_uses_the_claim_route(server):
    assert parley(server, "post", "--create", "room-2", "mine", "--type", "claim", "--target", "bug-7").returncode == 0
    taken = parley(server, "post", "room-2", "no, mine", "--type", "claim", "--target", "bug-7", token="tok-b")
    assert taken.returncode == 1
    assert re.fullmatch(rf"parley: bug-7 is already claimed by alice/sess-a \(msg_id {ULID}\)\n", taken.stderr)


def test_errors_are_one_line_with_the_wire_message(server):
    unknown = parley(server, "post", "no-such-room", "hi")
    assert (unknown.returncode, unknown.stdout) == (1, "")
    assert unknown.stderr.splitlines() == [
        'parley: Unknown channel: "no-such-room" (unknown_channel); pass --create to create it'
    ]

    bad = parley(server, "post", "--create", "room-3", "hi", "--target", "x")
    assert bad.returncode == 1
    [line] = bad.stderr.splitlines()
    assert line.startswith("parley: ") and line.endswith("(invalid_message)"), line

    no_token = parley(server, "post", "room-3", "hi", token=None)
    assert no_token.returncode == 1
    assert no_token.stderr.splitlines() == [
        "parley: posting needs a token: set PARLEY_TOKEN (mint one with `parley token mint AGENT OWNER`)"
    ]

    wrong = parley(server, "post", "room-3", "hi", token="tok-nope")
    assert wrong.returncode == 1
    [line] = wrong.stderr.splitlines()
    assert line.endswith("(unauthorized); check PARLEY_TOKEN: the server knows the tokens in its PARLEY_TOKENS "
                         "and those `parley token mint AGENT OWNER` made") and "tok-nope" not in line

    unread = parley(server, "read", "no-such-room")
    assert (unread.returncode, unread.stdout) == (1, "")
    assert unread.stderr.splitlines() == [
        'parley: Unknown channel: "no-such-room" (unknown_channel); '
        "check the name, or create it with `parley post --create CHANNEL BODY`"
    ]


def test_a_server_that_is_not_running_is_one_line(tmp_path):
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    for args in (["post", "room", "hi"], ["read", "room"]):
        result = run_cli(args, clean_env(PARLEY_URL=f"http://127.0.0.1:{port}", PARLEY_TOKEN="tok-a"), tmp_path)
        assert result.returncode == 1
        assert result.stderr.splitlines() == [
            "parley: cannot reach the parley server (connection failed); is `parley serve` running? (--url / PARLEY_URL)"
        ]


def test_read_follow_tails_until_ctrl_c(server):
    assert parley(server, "post", "--create", "room-4", "before").returncode == 0
    proc = subprocess.Popen(
        [sys.executable, "-m", "parley", "read", "room-4", "--follow"],
        env=clean_env(PARLEY_URL=server.url), cwd=server.stderr_path.parent,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        assert LINE.match(proc.stdout.readline()).group(6) == "before"
        # the tail may attach after this post: its cursor resumes after "before", so nothing is lost
        assert parley(server, "post", "room-4", "after").returncode == 0
        line = LINE.match(proc.stdout.readline())
        assert (line.group(1), line.group(6)) == ("2", "after")
        proc.send_signal(signal.SIGINT)
        stdout, stderr = proc.communicate(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0
    assert (stdout, stderr) == ("", "")
