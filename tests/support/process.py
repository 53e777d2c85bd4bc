"""``parley serve`` as a real subprocess, shared by the e2e and reliability tests.

``serve(url, cwd, **env)`` (a context manager) and ``start_server(url, cwd,
**env)`` run ``python -m parley serve`` with the bin's environment
(``PORT=0``, ``PARLEY_DATABASE_URL``, ``PARLEY_TOKENS``, ``PARLEY_ADMIN_TOKEN``),
wait for the one stdout banner line and return a :class:`Server` (URL, pid,
``kill9()``, ``terminate()``, stderr). ``database(kind, tmp_path)`` yields an
empty database of either backend, upgraded to the head for Postgres
(``parley serve`` upgrades SQLite itself).
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path

import httpx

from tests.conftest import postgres_schema_url

ROOT = Path(__file__).resolve().parents[2]
BANNER = re.compile(r"^parley listening on (http://127\.0\.0\.1:(\d+))\n$")
TOKENS = "tok-a:sess-a:alice,tok-b:sess-b:bob"
ADMIN = "admin-secret"


def clean_env(**extra: str) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("PARLEY_", "CAUCUS_")) and k not in ("PORT", "HOST")
    }
    env["PYTHONPATH"] = str(ROOT)
    env.update(extra)
    return env


def run_cli(args: list[str], env: dict[str, str], cwd: Path, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "parley", *args],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


class Server:
    def __init__(self, proc: subprocess.Popen, url: str, banner: str, stderr_path: Path) -> None:
        self.proc = proc
        self.url = url
        self.banner = banner
        self.stderr_path = stderr_path

    @property
    def pid(self) -> int:
        return self.proc.pid

    def client(self, token: str | None = None) -> httpx.Client:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return httpx.Client(base_url=self.url, headers=headers, timeout=10)

    def kill9(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=10)

    def terminate(self, timeout: float = 10) -> int:
        """SIGTERM and wait; returns the exit code."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout=timeout)

    def close(self) -> None:
        """Make sure the process is gone and its pipe closed (idempotent)."""
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)
        if self.proc.stdout is not None:
            self.proc.stdout.close()

    def stderr(self) -> str:
        return self.stderr_path.read_text()


def server_env(database_url: str, **env_extra: str) -> dict[str, str]:
    base = {"PORT": "0", "PARLEY_DATABASE_URL": database_url, "PARLEY_TOKENS": TOKENS, "PARLEY_ADMIN_TOKEN": ADMIN}
    base.update(env_extra)
    return clean_env(**base)


def start_server(database_url: str, cwd: Path, **env_extra: str) -> Server:
    """Start ``parley serve`` and block until its banner (the caller closes it)."""
    stderr_path = cwd / f"stderr-{time.monotonic_ns()}.log"
    with open(stderr_path, "w") as stderr:
        proc = subprocess.Popen(
            [sys.executable, "-m", "parley", "serve"],
            env=server_env(database_url, **env_extra),
            cwd=cwd,
            stdout=subprocess.PIPE,
            stderr=stderr,
            text=True,
        )
    banner = proc.stdout.readline()  # the server prints it once it accepts connections
    match = BANNER.match(banner)
    if not match:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)
        proc.stdout.close()
        raise AssertionError(f"bad banner {banner!r}; stderr: {stderr_path.read_text()[-2000:]}")
    return Server(proc, match.group(1), banner, stderr_path)


@contextmanager
def serve(database_url: str, cwd: Path, **env_extra: str):
    server = start_server(database_url, cwd, **env_extra)
    try:
        yield server
    finally:
        server.close()


def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'parley.db'}"


def upgrade(url: str, cwd: Path) -> None:
    result = run_cli(["db", "upgrade", "--database-url", url], clean_env(), cwd)
    assert result.returncode == 0, result.stderr


@contextmanager
def database(kind: str, tmp_path: Path):
    if kind == "sqlite":
        yield sqlite_url(tmp_path)
        return
    with postgres_schema_url() as url:
        upgrade(url, tmp_path)
        yield url


def proc_status(pid: int) -> dict[str, str]:
    """``/proc/<pid>/status`` as a dict (Linux)."""
    fields = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            name, _, value = line.partition(":")
            fields[name] = value.strip()
    return fields


def rss_kib(pid: int) -> int:
    return int(proc_status(pid)["VmRSS"].split()[0])


def open_fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))
