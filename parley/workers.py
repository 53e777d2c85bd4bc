"""Several worker processes behind one listening socket (Postgres only).

The parent binds the socket (so port 0 resolves once and the banner names
the real port), then starts N ``parley serve --fd`` children that share it:
the kernel hands each connection to one of them. A worker that exits
unasked is replaced (at most five times in 30 s). Every worker is a complete
backbone on the same database; the journal arbitrates between them
(ADR-0007). SIGTERM to the parent is forwarded, and the parent exits once
every worker has.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import socket
import subprocess
import sys
import time

from .config import Settings


def bind_socket(settings: Settings) -> socket.socket:
    family = socket.AF_INET6 if ":" in settings.host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((settings.host, settings.port))
    sock.listen(1024)
    sock.set_inheritable(True)
    return sock


def display_host(host: str) -> str:
    if host in ("0.0.0.0", ""):
        return "127.0.0.1"
    if host == "::":
        return "[::1]"
    return f"[{host}]" if ":" in host else host


def _die_with(parent: int):
    """In the child, before exec: SIGTERM when ``parent`` dies (Linux ``PR_SET_PDEATHSIG``).

    Without it, a supervisor killed with ``kill -9`` left its workers serving
    the inherited socket, holding the port against the next ``parley serve``.
    """

    def arm() -> None:
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
        except (OSError, AttributeError):  # not Linux: the worker lives on, as before
            return
        if os.getppid() != parent:  # the parent died before the request took effect
            os._exit(1)

    return arm


PR_SET_PDEATHSIG = 1


def spawn_worker(fd: int, argv: list[str]) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "parley", "serve", "--fd", str(fd), *argv],
        pass_fds=(fd,),
        stdout=subprocess.DEVNULL,
        preexec_fn=_die_with(os.getpid()),
    )


class RestartBudget:
    """At most ``limit`` restarts in any ``window`` seconds: a worker that dies at
    start-up every time (a bad flag, a dead database) ends the server instead of
    looping forever."""

    def __init__(self, limit: int = 5, window: float = 30.0, clock=time.monotonic) -> None:
        self.limit = limit
        self.window = window
        self.clock = clock
        self.restarts: list[float] = []

    def allow(self) -> bool:
        now = self.clock()
        self.restarts = [t for t in self.restarts if now - t < self.window]
        if len(self.restarts) >= self.limit:
            return False
        self.restarts.append(now)
        return True


def run_workers(settings: Settings, argv: list[str]) -> int:
    """Run and supervise the workers: one that dies unasked is replaced."""
    sock = bind_socket(settings)
    port = sock.getsockname()[1]
    fd = sock.fileno()
    workers = {child.pid: child for child in (spawn_worker(fd, argv) for _ in range(settings.workers))}
    # Connections queue in the backlog from here on: the socket accepts.
    print(f"parley listening on http://{display_host(settings.host)}:{port}", flush=True)
    stopping = False
    exit_code = 0

    def forward(signum, _frame) -> None:
        nonlocal stopping
        stopping = True
        for pid in list(workers):
            # os.kill, not Popen.send_signal: that polls, and a child reaped
            # here would never come back from os.wait() below.
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    budget = RestartBudget()
    while workers:
        try:
            pid, status = os.wait()
        except ChildProcessError:  # every child already reaped
            break
        child = workers.pop(pid, None)
        if child is None:
            continue
        child.returncode = os.waitstatus_to_exitcode(status)
        if stopping:
            exit_code = exit_code or (1 if child.returncode != 0 else 0)
            continue
        if not budget.allow():
            print(
                f"parley: workers keep exiting ({budget.limit} restarts in {budget.window:.0f} s); "
                "stopping the server: see the errors above",
                file=sys.stderr,
                flush=True,
            )
            exit_code = 1
            forward(signal.SIGTERM, None)
            continue
        replacement = spawn_worker(fd, argv)
        workers[replacement.pid] = replacement
        print(
            f"parley: worker {pid} exited ({describe_exit(child.returncode)}); "
            f"started worker {replacement.pid} in its place",
            file=sys.stderr,
            flush=True,
        )
    sock.close()
    os.environ.pop("PARLEY_WORKER_FD", None)
    return exit_code


def describe_exit(code: int) -> str:
    return f"signal {signal.Signals(-code).name}" if code < 0 else f"exit code {code}"
