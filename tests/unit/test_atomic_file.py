"""atomic_file: a reader sees the old bytes or the new, never half, and failures leave no trace."""

from __future__ import annotations

import os
import signal
import stat
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from parley.atomic_file import atomic_write, atomic_writer


def leftovers(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir() if p.name.endswith(".tmp"))


def test_replaces_the_file_and_leaves_no_temporary(tmp_path: Path) -> None:
    target = tmp_path / "state.json"
    target.write_bytes(b"old")
    atomic_write(target, b"new")
    assert target.read_bytes() == b"new"
    assert leftovers(tmp_path) == []


def test_a_failure_while_writing_keeps_the_old_bytes(tmp_path: Path) -> None:
    target = tmp_path / "export.ndjson"
    target.write_bytes(b"old")
    with pytest.raises(RuntimeError):
        with atomic_writer(target) as handle:
            handle.write(b"half of the ")
            raise RuntimeError("disk on fire")
    assert target.read_bytes() == b"old"
    assert leftovers(tmp_path) == []


def test_exclusive_creates_once_and_refuses_the_second_writer(tmp_path: Path) -> None:
    target = tmp_path / "session.key"
    atomic_write(target, b"first", exclusive=True)
    with pytest.raises(FileExistsError):
        atomic_write(target, b"second", exclusive=True)
    assert target.read_bytes() == b"first"
    assert leftovers(tmp_path) == []


def test_mode_is_applied_and_the_default_follows_the_umask(tmp_path: Path) -> None:
    secret, plain = tmp_path / "secret", tmp_path / "plain"
    atomic_write(secret, b"s", mode=0o600)
    old = os.umask(0o022)
    try:
        atomic_write(plain, b"p")
    finally:
        os.umask(old)
    assert stat.S_IMODE(secret.stat().st_mode) == 0o600
    assert stat.S_IMODE(plain.stat().st_mode) == 0o644


def test_a_writer_killed_mid_write_leaves_the_old_file_whole(tmp_path: Path) -> None:
    target = tmp_path / "state.json"
    target.write_bytes(b'{"turn": 1}')
    child = subprocess.Popen(
        [
            sys.executable,
            "-c",
            textwrap.dedent(
                f"""
                import sys
                from parley.atomic_file import atomic_writer
                with atomic_writer({str(target)!r}) as handle:
                    handle.write(b'{{"turn": 2, "half')
                    handle.flush()
                    print("written", flush=True)
                    sys.stdin.read()
                """
            ),
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
    )
    assert child.stdout is not None and child.stdout.readline() == b"written\n"
    child.send_signal(signal.SIGKILL)
    child.wait()
    assert target.read_bytes() == b'{"turn": 1}'
