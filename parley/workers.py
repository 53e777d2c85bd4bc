"""Several worker processes behind one listening socket (Postgres only).

The parent binds the socket (so port 0 resolves once and the banner names
the real port), then starts N ``parley serve --fd`` children that share it:
the kernel hands each connection to one of them. Every worker is a complete
backbone on the same database; the journal arbitrates between them
(ADR-0007). SIGTERM to the parent is forwarded, and the parent exits once
every worker has.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys

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


def run_workers(settings: Settings, argv: list[str]) -> int:
    sock = bind_socket(settings)
    port = sock.getsockname()[1]
    fd = sock.fileno()
    children = [
        subprocess.Popen(
            [sys.executable, "-m", "parley", "serve", "--fd", str(fd), *argv],
            pass_fds=(fd,),
            stdout=subprocess.DEVNULL,
        )
        for _ in range(settings.workers)
    ]
    # Connections queue in the backlog from here on: the socket accepts.
    print(f"parley listening on http://{display_host(settings.host)}:{port}", flush=True)

    def forward(signum, _frame) -> None:
        for child in children:
            if child.poll() is None:
                child.send_signal(signal.SIGTERM)

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    codes = [child.wait() for child in children]
    sock.close()
    os.environ.pop("PARLEY_WORKER_FD", None)
    return 0 if all(code == 0 for code in codes) else 1
