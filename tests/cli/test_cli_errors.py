"""Issue 16 item 3: every CLI failure is ONE line naming the cause and the fix, exit 1.

Each case runs the real ``parley`` as a subprocess and compares stderr with
the exact line: no traceback, no URL password, no generated secret.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from urllib.parse import urlsplit

import pytest
import sqlalchemy as sa

from tests.conftest import _skip_or_fail_without_postgres, postgres_base_url
from tests.support.process import clean_env, run_cli

FIX_URL = "fix the database URL (--database-url / PARLEY_DATABASE_URL)"

#: Every command that opens the database, with the arguments it needs.
DATABASE_COMMANDS = [
    ["serve", "--port", "0"],
    ["db", "upgrade"],
    ["db", "current"],
    ["db", "downgrade"],
    ["token", "mint", "agent-1", "alice"],
    ["token", "revoke", "--agent-id", "agent-1"],
    ["token", "rotate", "agent-1", "alice"],
    ["token", "list"],
    ["journal", "verify"],
    ["journal", "export"],
    ["journal", "stats"],
    ["journal", "replay"],
    ["journal", "tail", "--max-events", "1"],
    ["journal", "import", "-"],
]
#: One command of each kind (server, migrations, token, journal) for the slower cases.
SAMPLE_COMMANDS = [["serve", "--port", "0"], ["db", "upgrade"], ["db", "current"], ["token", "list"], ["journal", "verify"]]


def _line_of(args: list[str], returncode: int, stdout: str, stderr: str) -> str:
    assert returncode == 1, (args, returncode, stdout, stderr)
    assert stdout == "", args
    lines = stderr.splitlines()
    assert len(lines) == 1, (args, stderr)
    return lines[0]


def one_line(args: list[str], tmp_path, **env: str) -> str:
    """Run ``parley ARGS``; assert exit 1, nothing on stdout, one stderr line; return it."""
    result = run_cli(args, clean_env(**env), tmp_path, timeout=30)
    return _line_of(args, result.returncode, result.stdout, result.stderr)


def one_line_each(commands: list[list[str]], tmp_path, **env: str) -> dict[str, str]:
    """:func:`one_line` for several commands run at once: ``{" ".join(args): line}``."""
    procs = [
        (args, subprocess.Popen([sys.executable, "-m", "parley", *args], env=clean_env(**env), cwd=tmp_path,
                                stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
        for args in commands
    ]
    lines = {}
    for args, proc in procs:
        stdout, stderr = proc.communicate(timeout=60)
        lines[" ".join(args)] = _line_of(args, proc.returncode, stdout, stderr)
    return lines


@pytest.fixture
def busy_port():
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(1)
    try:
        yield sock.getsockname()[1]
    finally:
        sock.close()


def test_a_port_in_use_is_one_line(busy_port, tmp_path):
    line = one_line(["serve", "--port", str(busy_port), "--database-url", f"sqlite:///{tmp_path / 'p.db'}"], tmp_path)
    assert line == (
        f"parley: cannot listen on 127.0.0.1:{busy_port}: address already in use; "
        "stop the other server or pass --port"
    )


def test_a_port_in_use_given_by_env_is_one_line(busy_port, tmp_path):
    line = one_line(["serve"], tmp_path, PORT=str(busy_port), PARLEY_DATABASE_URL=f"sqlite:///{tmp_path / 'p.db'}")
    assert line.startswith(f"parley: cannot listen on 127.0.0.1:{busy_port}: address already in use;")


BAD_URLS = [
    (
        "sqlite://parley.db",
        "sqlite://parley.db puts the file name where the host goes; "
        "use sqlite:///parley.db (relative) or sqlite:////absolute/path",
    ),
    ("sqlite://", "sqlite:// names no file; use sqlite:///parley.db (relative) or sqlite:////absolute/path"),
    (
        "postgresql://u:hunter2@h:abc/db",
        "the Postgres URL has a port that is not a number in [0, 65535]; use postgresql://USER@HOST:5432/DB",
    ),
    ("mysql://u:hunter2@h/db", "unsupported database URL scheme 'mysql'; use sqlite:///path or postgresql://HOST/DB"),
]


@pytest.mark.parametrize(("url", "reason"), BAD_URLS)
def test_a_bad_url_flag_is_refused_in_one_line(url, reason, tmp_path):
    assert one_line(["db", "upgrade", "--database-url", url], tmp_path) == f"parley: invalid --database-url: {reason}"
    assert one_line(["serve", "--database-url", url], tmp_path) == f"parley: invalid --database-url: {reason}"


@pytest.mark.parametrize(("url", "reason"), BAD_URLS)
def test_a_bad_url_variable_is_refused_in_one_line(url, reason, tmp_path):
    expected = f"parley: invalid PARLEY_DATABASE_URL: {reason}"
    assert one_line(["serve"], tmp_path, PARLEY_DATABASE_URL=url, PORT="0") == expected
    assert one_line(["journal", "stats"], tmp_path, PARLEY_DATABASE_URL=url) == expected


def test_every_database_command_refuses_a_bad_url(tmp_path):
    lines = one_line_each([[*args, "--database-url", "sqlite://parley.db"] for args in DATABASE_COMMANDS], tmp_path)
    assert set(lines.values()) == {f"parley: invalid --database-url: {BAD_URLS[0][1]}"}, lines
    assert not (tmp_path / "parley.db").exists()


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_every_database_command_names_an_unreachable_postgres(tmp_path):
    port = closed_port()
    url = f"postgresql://parley:hunter2@127.0.0.1:{port}/parley"
    lines = one_line_each([[*args, "--database-url", url] for args in DATABASE_COMMANDS], tmp_path)
    expected = f"parley: cannot connect to Postgres at 127.0.0.1:{port}: connection refused; start Postgres or {FIX_URL}"
    assert set(lines.values()) == {expected}, lines


def _pg(user: str | None = None, database: str | None = None) -> tuple[str, str]:
    """A URL on the test Postgres server with another user or database; and its host:port."""
    _skip_or_fail_without_postgres()
    parts = urlsplit(postgres_base_url())
    host, port = parts.hostname, parts.port or 5432
    user = user or parts.username or "postgres"
    database = database or parts.path.strip("/")
    return f"postgresql://{user}@{host}:{port}/{database}", f"{host}:{port}"


@pytest.mark.postgres
def test_a_missing_postgres_database_is_named(tmp_path):
    url, where = _pg(database="parley_no_such_db")
    lines = one_line_each([[*args, "--database-url", url] for args in SAMPLE_COMMANDS], tmp_path)
    assert set(lines.values()) == {
        f'parley: the database "parley_no_such_db" does not exist on Postgres at {where}; '
        f"create it (createdb parley_no_such_db) or {FIX_URL}"
    }, lines


@pytest.mark.postgres
def test_an_unknown_postgres_role_is_named(tmp_path):
    url, where = _pg(user="parley_no_such_role")
    lines = one_line_each([[*args, "--database-url", url] for args in SAMPLE_COMMANDS], tmp_path)
    assert set(lines.values()) == {
        f'parley: the role "parley_no_such_role" does not exist on Postgres at {where}; '
        f"create it (createuser parley_no_such_role) or {FIX_URL}"
    }, lines


def test_a_missing_sqlite_directory_is_named(tmp_path):
    folder = tmp_path / "no" / "such"
    path = folder / "parley.db"
    lines = one_line_each([[*args, "--database-url", f"sqlite:///{path}"] for args in SAMPLE_COMMANDS], tmp_path)
    creators = {"serve --port 0", "db upgrade", "db current"}
    for command, line in lines.items():
        if command.rsplit(" --database-url", 1)[0] in creators:
            assert line == (
                f"parley: the directory {folder} of the SQLite database does not exist; "
                f"create it (mkdir -p {folder}) or {FIX_URL}"
            ), command
        else:  # the operator commands never create a database
            assert line == f"parley: no SQLite database at {path}; fix --database-url, or create one with `parley db upgrade`", command


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into any directory")
def test_an_unwritable_sqlite_directory_is_named(tmp_path):
    folder = tmp_path / "locked"
    folder.mkdir()
    folder.chmod(0o500)
    try:
        line = one_line(["db", "upgrade", "--database-url", f"sqlite:///{folder / 'parley.db'}"], tmp_path)
    finally:
        folder.chmod(0o700)
    assert line == (
        f"parley: cannot create files in {folder}, the directory of the SQLite database: "
        f"permission denied; make it writable or {FIX_URL}"
    )


def read_only_sqlite(tmp_path) -> tuple[str, str]:
    """A migrated SQLite file the server cannot write: ``(url, path)``.

    chmod 444 binds everyone but root; as root the URL opens it read-only instead.
    """
    path = tmp_path / "ro.db"
    result = run_cli(["db", "upgrade", "--database-url", f"sqlite:///{path}"], clean_env(), tmp_path)
    assert result.returncode == 0, result.stderr
    path.chmod(0o444)
    if os.geteuid() == 0:
        return f"sqlite:///file:{path}?mode=ro&uri=true", str(path)
    return f"sqlite:///{path}", str(path)


def test_a_read_only_sqlite_file_is_one_line_and_no_secret_is_printed(tmp_path):
    url, path = read_only_sqlite(tmp_path)
    line = one_line(["serve", "--port", "0", "--database-url", url], tmp_path)
    assert line == f"parley: the SQLite database {path} is read-only; make it and its directory writable (chmod u+w) or {FIX_URL}"
    engine = sa.create_engine(f"sqlite:///{path}")
    try:
        with engine.connect() as conn:
            assert conn.execute(sa.text("SELECT count(*) FROM meta WHERE key = 'session_secret'")).scalar() == 0
    finally:
        engine.dispose()


def test_a_read_only_sqlite_file_refuses_a_token_mint_in_one_line(tmp_path):
    url, path = read_only_sqlite(tmp_path)
    line = one_line(["token", "mint", "agent-1", "alice", "--database-url", url], tmp_path)
    assert line == f"parley: the SQLite database {path} is read-only; make it and its directory writable (chmod u+w) or {FIX_URL}"


def test_an_unknown_option_is_one_line(tmp_path):
    result = run_cli(["serve", "--prot", "1"], clean_env(), tmp_path)
    assert result.returncode == 2
    [line] = result.stderr.splitlines()
    assert line.startswith("parley: No such option '--prot'.") and line.endswith("(see `parley serve -h`)"), line
