"""Who holds a session's turn lease, and whether that holder is certainly dead.

Why apart from the service: the holder id format and the liveness check are
one rule (ADR-0004, "dead holders") that the lease's take and describe both
apply, and that the fault tests forge holders with.
"""

from __future__ import annotations

import os
import socket
import uuid


def new_holder() -> str:
    """This process's holder id: ``host/<pid-namespace inode>:<pid>:<nonce>``."""
    return f"{local_scope()}:{os.getpid()}:{uuid.uuid4().hex[:12]}"


def local_scope() -> str:
    """This host and PID namespace (``host/<pid-ns inode>``; ``host/0`` if unknown)."""
    try:
        namespace = os.stat("/proc/self/ns/pid").st_ino
    except OSError:
        namespace = 0
    return f"{socket.gethostname()}/{namespace}"


def holder_is_dead(holder: str) -> bool:
    """True when ``holder`` names a process of this host and PID namespace that is gone.

    After ``kill -9`` and a restart on the same host, the dead process's lease
    would otherwise make the session answer ``contended`` until the lease
    expires (``wait`` + 30 s). Only a holder we can check for certain is
    declared dead (same scope, known namespace, no such process or a zombie);
    anything else waits for the expiry. Taking a dead holder's lease is safe
    anyway: its commit would fail the epoch check.
    """
    parts = holder.rsplit(":", 2)
    if len(parts) != 3:
        return False
    scope, pid_text, _nonce = parts
    local = local_scope()
    if scope != local or local.endswith("/0") or not pid_text.isdigit():
        return False
    pid = int(pid_text)
    if pid == os.getpid() or pid <= 1:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except OSError:  # exists (another user's): alive
        return False
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            state = f.read().rpartition(b")")[2].split()[0]
    except (OSError, IndexError):
        return False
    return state == b"Z"


__all__ = ["holder_is_dead", "local_scope", "new_holder"]
