"""Replace a file so that a crash leaves either the old bytes or the new, never half.

Six places wrote "a temp file, fsync, rename" by hand, each slightly differently
(mode 0600 or not, ``.partial`` or ``.<pid>.tmp``, the directory fsynced or not).
This is the one way: the temporary file is created next to the target with a
unique name (``O_EXCL``, so two writers never share one), written, fsynced and
renamed over the target; the directory is then fsynced so the rename itself
survives a power cut. On any failure the temporary file is removed and the
target is untouched.

``exclusive=True`` publishes with ``link()`` instead of ``rename()``: the target
is created only if it does not exist yet (``FileExistsError`` otherwise), which
lets two processes race to create a file and agree on the winner.

Standard library only: the SDK, the hook, the scaffolder and the server share it.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO

__all__ = ["atomic_write", "atomic_writer"]

#: Permission bits for a new file when the caller names none (the umask applies).
DEFAULT_MODE = 0o666


@contextmanager
def atomic_writer(path: str | os.PathLike[str], *, mode: int = DEFAULT_MODE, exclusive: bool = False) -> Iterator[BinaryIO]:
    """A binary file to write; on a clean exit it becomes ``path``, atomically and durably."""
    target = Path(path)
    directory = target.parent
    tmp = directory / f".{target.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    try:
        with os.fdopen(fd, "wb") as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        if exclusive:
            os.link(tmp, target)
        else:
            os.replace(tmp, target)
    finally:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
    fsync_directory(directory)


def atomic_write(path: str | os.PathLike[str], data: bytes, *, mode: int = DEFAULT_MODE, exclusive: bool = False) -> None:
    """Replace (or, with ``exclusive``, create) ``path`` with ``data``; see :func:`atomic_writer`."""
    with atomic_writer(path, mode=mode, exclusive=exclusive) as handle:
        handle.write(data)


def fsync_directory(directory: Path) -> None:
    """Make a rename in ``directory`` durable (a no-op where directories cannot be opened)."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:  # pragma: no cover - platforms without directory fds
        return
    try:
        os.fsync(fd)
    except OSError:  # pragma: no cover - file systems that refuse it
        pass
    finally:
        os.close(fd)
