"""Benchmark harness: run a real ``parley serve`` (or the ceiling app) as a subprocess.

    with ParleyServer("sqlite", tokens=make_tokens(64)) as server:
        server.url          # http://127.0.0.1:<ephemeral port>
        server.cpu_seconds()  # user+system CPU of the server process so far

* SQLite: a temp directory holding ``bench.db`` (the server migrates it at
  start, like ``parley serve`` always does for SQLite), removed afterwards.
* Postgres: a fresh schema ``bench_<hex>`` in the database of
  ``$PARLEY_TEST_POSTGRES_URL`` (default ``postgresql+psycopg://postgres@127.0.0.1:5432/test``),
  selected through ``?options=-csearch_path=<schema>``; ``python -m parley db upgrade``
  runs first (serve refuses an un-migrated Postgres); the schema is dropped
  CASCADE afterwards.

Several processes on one database (Postgres only): ``ParleyServer(..., workers=2)``
runs ``parley serve --workers 2`` (its CPU is then the sum over the parent and
its worker processes, ``worker_pids()`` names them and ``connection_owners()``
tells which worker holds each client connection), and
``ParleyServer("postgres", database_url=first.database_url)`` starts a second,
separate server on the first one's schema (no schema made, migrated or dropped).

The process listens on port 0; we wait for the stdout banner
``… listening on http://HOST:PORT`` (the bin contract), send SIGTERM at the
end, and SIGKILL it if it has not exited 8 s later. Server stderr (logs, one
access line per request) goes to a temp file, never to a pipe nobody reads;
its tail is shown if the server dies early.
"""

from __future__ import annotations

import os
import re
import selectors
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_PG = os.environ.get("PARLEY_TEST_POSTGRES_URL") or "postgresql+psycopg://postgres@127.0.0.1:5432/test"
BANNER = re.compile(rb"listening on (\S+)")

# Seatbelts raised so that the benchmarks measure the server, not the rate limiter.
BENCH_ENV = {
    "PARLEY_MAX_POSTS_PER_MINUTE": "1000000",
    "PARLEY_GLOBAL_MAX_POSTS_PER_MINUTE": "1000000",
    "PARLEY_MAX_CHANNEL_CREATES_PER_MINUTE": "1000000",
    "PARLEY_MAX_MESSAGES_PER_CHANNEL": "10000000",
    "PARLEY_MAX_STREAMS": "1000",
}

_CLK_TCK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


class HarnessError(RuntimeError):
    pass


def make_tokens(n: int) -> list[tuple[str, str, str]]:
    """``n`` seed identities ``(token, agent_id, owner)``, one per simulated agent."""
    return [(f"bench-tok-{i}", f"agent-{i}", f"owner-{i}") for i in range(n)]


def with_search_path(url: str, schema: str) -> str:
    sep = "&" if "?" in url else "?"
    return f"{url}{sep}options=-csearch_path%3D{schema}"


def process_cpu_seconds(pid: int) -> float:
    """utime + stime of ``pid`` (all its threads) from /proc; NaN when unavailable."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            fields = f.read().rsplit(b")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / _CLK_TCK
    except (OSError, IndexError, ValueError):
        return float("nan")


def system_busy_seconds() -> float:
    """CPU seconds all processes on the machine have been busy (from /proc/stat)."""
    try:
        with open("/proc/stat", "rb") as f:
            fields = [int(x) for x in f.readline().split()[1:]]
        idle = fields[3] + (fields[4] if len(fields) > 4 else 0)
        return (sum(fields[:8]) - idle) / _CLK_TCK
    except (OSError, IndexError, ValueError):
        return float("nan")


def postgres_cpu_seconds() -> float:
    """CPU seconds of the processes named ``postgres`` on this machine (a local server's
    postmaster and backends; a backend that exits takes its share with it)."""
    total = 0.0
    entries = _proc_pids()
    if entries is None:
        return float("nan")
    for entry in entries:
        try:
            with open(f"/proc/{entry}/comm", "rb") as f:
                if f.read().strip() != b"postgres":
                    continue
        except OSError:
            continue
        cpu = process_cpu_seconds(int(entry))
        if cpu == cpu:  # not NaN (the process may have just exited)
            total += cpu
    return total


def _proc_pids() -> list[str] | None:
    """The process ids listed in /proc, as its entry names (None when /proc is unreadable)."""
    try:
        return [entry for entry in os.listdir("/proc") if entry.isdigit()]
    except OSError:
        return None


def child_pids(pid: int) -> list[int]:
    """Direct children of ``pid`` (scans /proc; [] when unavailable)."""
    out = []
    for entry in _proc_pids() or ():
        try:
            with open(f"/proc/{entry}/stat", "rb") as f:
                fields = f.read().rsplit(b")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if len(fields) > 1 and int(fields[1]) == pid:
            out.append(int(entry))
    return sorted(out)


def _socket_inodes(pid: int) -> set[int]:
    inodes = set()
    try:
        fds = os.listdir(f"/proc/{pid}/fd")
    except OSError:
        return inodes
    for fd in fds:
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(int(target[8:-1]))
    return inodes


def _tcp_sockets() -> dict[int, tuple[int, int]]:
    """inode -> (local port, remote port) for every TCP socket of this network namespace."""
    out: dict[int, tuple[int, int]] = {}
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(table) as f:
                next(f)
                for line in f:
                    parts = line.split()
                    local, remote, inode = parts[1], parts[2], int(parts[9])
                    if inode:
                        out[inode] = (int(local.rsplit(":", 1)[1], 16), int(remote.rsplit(":", 1)[1], 16))
        except (OSError, StopIteration, IndexError, ValueError):
            continue
    return out


def postgres_backends_of(pids: list[int], pg_port: int = 5432) -> list[int]:
    """The local Postgres backend processes serving ``pids``' connections to ``pg_port``:
    matched by socket (a server's local port = a backend's remote port), so other
    jobs' backends on the same Postgres are not counted."""
    sockets = _tcp_sockets()
    ours = set()
    for pid in pids:
        for inode in _socket_inodes(pid):
            ports = sockets.get(inode)
            if ports is not None and ports[1] == pg_port:
                ours.add(ports[0])
    backends = []
    for entry in _proc_pids() or ():
        try:
            with open(f"/proc/{entry}/comm", "rb") as f:
                if f.read().strip() != b"postgres":
                    continue
        except OSError:
            continue
        for inode in _socket_inodes(int(entry)):
            ports = sockets.get(inode)
            if ports is not None and ports[0] == pg_port and ports[1] in ours:
                backends.append(int(entry))
                break
    return sorted(backends)


def connection_owners(pids: list[int], server_port: int, client_ports: list[int]) -> dict[int, int | None]:
    """client local port -> the pid (of ``pids``) holding the accepted server-side socket."""
    sockets = _tcp_sockets()
    by_remote: dict[int, int] = {}
    for pid in pids:
        for inode in _socket_inodes(pid):
            ports = sockets.get(inode)
            if ports is not None and ports[0] == server_port:
                by_remote[ports[1]] = pid
    return {port: by_remote.get(port) for port in client_ports}


def load_average() -> list[float] | None:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return None


class _PostgresSchema:
    def __init__(self, base_url: str) -> None:
        import sqlalchemy as sa

        from parley.journal.engine import normalise_url

        self.schema = f"bench_{uuid.uuid4().hex[:16]}"
        self.engine = sa.create_engine(
            normalise_url(base_url), poolclass=sa.pool.NullPool, connect_args={"connect_timeout": 3}
        )
        self._sa = sa
        with self.engine.begin() as conn:
            conn.execute(sa.text(f'CREATE SCHEMA "{self.schema}"'))
        self.url = with_search_path(base_url, self.schema)

    def drop(self) -> None:
        try:
            with self.engine.begin() as conn:
                conn.execute(self._sa.text(f'DROP SCHEMA IF EXISTS "{self.schema}" CASCADE'))
        finally:
            self.engine.dispose()


class _Subprocess:
    """A server subprocess that announces itself with a ``listening on URL`` stdout line."""

    name = "server"

    def __init__(self, argv: list[str], env: dict[str, str], startup_timeout: float = 30.0) -> None:
        self.argv = argv
        self.env = env
        self.startup_timeout = startup_timeout
        self.proc: subprocess.Popen | None = None
        self.url = ""
        self._tmp = tempfile.mkdtemp(prefix=f"parley-{self.name}-")
        self.stderr_path = os.path.join(self._tmp, "stderr.log")

    # -- lifecycle ---------------------------------------------------------------

    def start(self) -> str:
        self._stderr = open(self.stderr_path, "wb")
        self.proc = subprocess.Popen(
            self.argv,
            cwd=self._tmp,
            env=self.env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=self._stderr,
            start_new_session=True,  # a ^C in the benchmark does not hit the server twice
        )
        self.url = self._wait_banner()
        return self.url

    def _wait_banner(self) -> str:
        assert self.proc is not None and self.proc.stdout is not None
        deadline = time.monotonic() + self.startup_timeout
        buf = b""
        sel = selectors.DefaultSelector()
        sel.register(self.proc.stdout, selectors.EVENT_READ)
        try:
            while True:
                match = BANNER.search(buf)
                if match and b"\n" in buf[match.end() :]:
                    return match.group(1).decode()
                left = deadline - time.monotonic()
                if left <= 0:
                    raise HarnessError(f"{self.name} did not print its banner within {self.startup_timeout:.0f}s{self._tail()}")
                if sel.select(min(left, 0.5)):
                    chunk = os.read(self.proc.stdout.fileno(), 4096)
                    if not chunk:
                        self.proc.wait(timeout=5)
                        raise HarnessError(f"{self.name} exited with {self.proc.returncode} before its banner{self._tail()}")
                    buf += chunk
        finally:
            sel.close()

    def _tail(self, lines: int = 15) -> str:
        try:
            self._stderr.flush()
            text = Path(self.stderr_path).read_text(errors="replace").splitlines()[-lines:]
        except OSError:
            return ""
        return ("\n--- server stderr (tail) ---\n" + "\n".join(text)) if text else ""

    def stop(self) -> int | None:
        proc = self.proc
        if proc is None:
            return None
        try:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(timeout=8)
                except subprocess.TimeoutExpired:
                    print(f"harness: {self.name} ignored SIGTERM for 8 s, killing it", file=sys.stderr)
                    proc.kill()
                    proc.wait(timeout=5)
        finally:
            if proc.stdout is not None:
                proc.stdout.close()
            self._stderr.close()
            self.proc = None
        return proc.returncode

    def cleanup(self) -> None:
        if os.environ.get("PARLEY_BENCH_KEEP_LOGS"):
            print(f"harness: {self.name} logs kept in {self._tmp}", file=sys.stderr)
            return
        shutil.rmtree(self._tmp, ignore_errors=True)

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def cpu_seconds(self) -> float:
        return process_cpu_seconds(self.pid) if self.proc is not None else float("nan")

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def __enter__(self):
        try:
            self.start()
        except BaseException:
            self.stop()
            self.cleanup()
            raise
        return self

    def __exit__(self, *exc) -> None:
        try:
            code = self.stop()
            if code not in (0, None, -signal.SIGTERM) and exc[0] is None:
                print(f"harness: {self.name} exited with {code}{self._tail()}", file=sys.stderr)
        finally:
            self.cleanup()


class ParleyServer(_Subprocess):
    """``python -m parley serve`` on 127.0.0.1:0 with a throwaway database."""

    name = "parley"

    def __init__(
        self,
        backend: str = "sqlite",
        *,
        tokens: list[tuple[str, str, str]] | None = None,
        env: dict[str, str] | None = None,
        postgres_url: str | None = None,
        log_level: str = "INFO",
        workers: int = 1,
        database_url: str | None = None,
    ) -> None:
        if backend not in ("sqlite", "postgres"):
            raise ValueError(f"unknown backend {backend!r}")
        if (workers > 1 or database_url) and backend != "postgres":
            raise ValueError("several processes on one database need Postgres")
        self.backend = backend
        self.workers = workers
        self.shared_database_url = database_url
        self.tokens = tokens or make_tokens(1)
        self.postgres_base = postgres_url or DEFAULT_PG
        self._pg: _PostgresSchema | None = None
        base_env = {k: v for k, v in os.environ.items() if not k.startswith(("PARLEY_", "CAUCUS_"))}
        base_env.update(BENCH_ENV)
        base_env.update(
            {
                "PORT": "0",
                "HOST": "127.0.0.1",
                "PARLEY_TOKENS": ",".join(":".join(t) for t in self.tokens),
                "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""),
            }
        )
        base_env.update(env or {})
        argv = [sys.executable, "-m", "parley", "serve", "--log-level", log_level]
        if workers > 1:
            argv += ["--workers", str(workers)]
        super().__init__(argv, base_env)
        self.database_url = ""

    def start(self) -> str:
        if self.backend == "sqlite":
            self.database_url = f"sqlite:///{os.path.join(self._tmp, 'bench.db')}"
        elif self.shared_database_url:
            self.database_url = self.shared_database_url  # another server's schema, already migrated
        else:
            self._pg = _PostgresSchema(self.postgres_base)
            self.database_url = self._pg.url
            done = subprocess.run(
                [sys.executable, "-m", "parley", "db", "upgrade", "--database-url", self.database_url],
                cwd=self._tmp,
                env=self.env,
                capture_output=True,
                timeout=120,
            )
            if done.returncode != 0:
                raise HarnessError(f"parley db upgrade failed: {done.stderr.decode(errors='replace')[-2000:]}")
        self.env["PARLEY_DATABASE_URL"] = self.database_url
        return super().start()

    @property
    def port(self) -> int:
        return int(self.url.rsplit(":", 1)[1])

    def worker_pids(self) -> list[int]:
        """The processes that serve requests: the worker children with ``--workers N``, else the server."""
        if self.proc is None:
            return []
        if self.workers > 1:
            return child_pids(self.pid)
        return [self.pid]

    def cpu_seconds(self) -> float:
        if self.proc is None:
            return float("nan")
        if self.workers > 1:
            return process_cpu_seconds(self.pid) + sum(process_cpu_seconds(p) for p in child_pids(self.pid))
        return process_cpu_seconds(self.pid)

    def connection_owners(self, client_ports: list[int]) -> dict[int, int | None]:
        return connection_owners(self.worker_pids(), self.port, client_ports)

    def cleanup(self) -> None:
        try:
            if self._pg is not None:
                self._pg.drop()
                self._pg = None
        finally:
            super().cleanup()


class CeilingServer(_Subprocess):
    """``benchmarks/ceiling_app.py``: the same web stack answering 201 with no work."""

    name = "ceiling"

    def __init__(self) -> None:
        env = dict(os.environ)
        env.update({"PORT": "0", "HOST": "127.0.0.1", "PYTHONPATH": str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")})
        super().__init__([sys.executable, str(ROOT / "benchmarks" / "ceiling_app.py")], env)
