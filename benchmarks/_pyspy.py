"""py-spy around a measured section: record the server process, summarise its stacks.

``http_bench.py <scenario> --profile DIR`` wraps the measured part of ``scan``
and ``fanout`` in :func:`recording`; each section writes ``DIR/<label>.txt``
(py-spy's collapsed "raw" stacks) and prints the functions with the largest
share of samples, inclusive and self. py-spy samples another process without
slowing it much, but it needs ptrace rights (root or ``ptrace_scope`` 0); when
it cannot run, the section runs unprofiled and a note says so.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import time
from collections import Counter
from collections.abc import Iterator

RATE = 250  # samples per second


@contextlib.contextmanager
def recording(pid: int | None, directory: str | None, label: str) -> Iterator[None]:
    """Record ``pid`` with py-spy while the block runs (no-op without ``directory``)."""
    if directory is None or pid is None:
        yield
        return
    spy = shutil.which("py-spy")
    if spy is None:
        print(f"  [profile {label}: py-spy not installed, skipped]")
        yield
        return
    os.makedirs(directory, exist_ok=True)
    out = os.path.join(directory, f"{label}.txt")
    # PARLEY_BENCH_PYSPY_GIL=1: only the thread holding the GIL (where the Python CPU goes).
    gil = ["--gil"] if os.environ.get("PARLEY_BENCH_PYSPY_GIL") == "1" else []
    proc = subprocess.Popen(
        [spy, "record", "--pid", str(pid), "--rate", str(RATE), "--format", "raw", "--nonblocking", *gil, "-o", out],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    time.sleep(0.5)  # py-spy attaches before the measured section starts
    try:
        yield
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            _, err = proc.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            _, err = proc.communicate()
        if os.path.exists(out):
            print(summary(out, label))
        else:
            print(f"  [profile {label}: py-spy failed: {err.decode(errors='replace').strip()[-300:]}]")


#: The trio scheduler's frame: what is above it (the CLI, ``trio.run``) is in every stack.
SCHEDULER = "unrolled_run (_run.py)"


def _frames(stack: str) -> list[str]:
    """``func (file)`` frames of one collapsed stack, outermost first, without line
    numbers, from the frame below trio's scheduler on (a task's own code)."""
    frames = []
    for frame in stack.split(";"):
        name, _, where = frame.partition(" (")
        path = where.rsplit(":", 1)[0]
        frames.append(f"{name} ({_short(path)})")
    if SCHEDULER in frames:
        cut = len(frames) - 1 - frames[::-1].index(SCHEDULER)
        frames = frames[cut + 1 :] or [SCHEDULER]
    return [f for f in frames if not f.endswith(_ROOT_FILES) and f not in _ROOT_FRAMES]


#: Frames every main-thread stack starts with (click, runpy, ``parley serve``, ``trio.run``).
_ROOT_FILES = ("(core.py)", "(decorators.py)", "(<frozen runpy>)", "(__main__.py)", "(cli_errors.py)", "(cli.py)")
_ROOT_FRAMES = {"serve (server.py)", "run (_run.py)"}


def _short(path: str) -> str:
    for marker in ("site-packages/", "/parley/", "lib/python3"):
        if marker in path:
            return path.split(marker, 1)[1] if marker != "/parley/" else "parley/" + path.split(marker, 1)[1]
    return os.path.basename(path)


def summary(path: str, label: str, top: int = 18) -> str:
    """The top functions of a raw py-spy file, by inclusive and by self share of samples."""
    inclusive: Counter[str] = Counter()
    own: Counter[str] = Counter()
    total = 0
    with open(path, encoding="utf-8", errors="replace") as f:
        for line in f:
            stack, _, count = line.rstrip("\n").rpartition(" ")
            if not count.isdigit():
                continue
            n = int(count)
            frames = _frames(stack)
            total += n
            for name in set(frames):
                inclusive[name] += n
            if frames:
                own[frames[-1]] += n
    if not total:
        return f"  [profile {label}: no samples]"
    lines = [
        f"  profile {label}: {total} samples at {RATE} Hz ({path}); EpollIOManager.get_events = the loop idle",
        "    inclusive %   self %  function",
    ]
    selfs = dict(own)
    for name, n in inclusive.most_common(top):
        lines.append(f"    {100 * n / total:>10.1f}  {100 * selfs.get(name, 0) / total:>7.1f}  {name}")
    lines.append("    top self:")
    for name, n in own.most_common(top // 2):
        lines.append(f"    {'':>10}  {100 * n / total:>7.1f}  {name}")
    return "\n".join(lines)


if __name__ == "__main__":
    import sys

    for file in sys.argv[1:]:
        print(summary(file, os.path.basename(file), top=int(os.environ.get("TOP", "30"))))
