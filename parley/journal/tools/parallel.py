"""Stream ranges folded by worker processes: what makes replay and verify parallel (ADR-0012).

The streams are cut into contiguous ``stream_id`` ranges ``[lo, hi)`` of
similar event counts (:func:`stream_ranges`); a *job*, a module-level function
``job(engine, lo, hi, advance, chunk) -> part``, handles one range.
:func:`run_ranges` runs the jobs in ``spawn``-ed processes (and in this one),
each process on its own engine opened from the URL, and returns the parts in
range order, so the caller merges them into the report one process would
make. This module knows nothing of what a job does: replay's jobs fold with
the domain (:mod:`parley.replay`), verify's check hash chains.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import Engine

from .. import queries
from ..engine import make_engine
from ..errors import JournalUnavailable
from ..store import unavailable
from .opening import Advance, ToolError

#: A job handles the streams ``lo <= stream_id < hi`` (``None`` = open).
Job = Callable[[Engine, "str | None", "str | None", Advance, int], Any]
Range = tuple["str | None", "str | None"]

#: Ranges per worker process: more, smaller ranges than processes, handed out
#: from a queue, so that a worker that started late or drew heavier streams
#: does not hold up the end.
RANGES_PER_WORKER = 4


def default_workers() -> int:
    """Worker processes for a whole-journal tool: the usable CPUs, at most 4."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cpus = os.cpu_count() or 1
    return max(1, min(cpus, 4))


def stream_ranges(
    engine: Engine, parts: int, *, min_events: int = 0, counts: Callable[[str], bool] = lambda _sid: True
) -> list[Range]:
    """Cut the streams into at most ``parts`` contiguous ``stream_id`` ranges
    ``[lo, hi)`` (``None`` = open) of similar event counts, counting the
    streams for which ``counts(stream_id)`` holds.

    The ranges cover every possible stream id, so a stream the plan did not
    see (created meanwhile) still falls in exactly one range. One range
    (everything) when the counted streams hold fewer than ``min_events``
    events. Streams are never split: one huge stream is one range's worth.
    """
    heads = queries.stream_heads(engine)
    weights = [(sid, n if counts(sid) else 0) for sid, n in heads]
    total = sum(n for _sid, n in weights)
    if parts <= 1 or total < max(min_events, 1):
        return [(None, None)]
    cuts: list[str] = []
    before = 0  # events of the streams before ``sid``
    k = 1
    for sid, n in weights:
        if n and before >= total * k / parts:
            cuts.append(sid)
            while before >= total * k / parts:
                k += 1
        before += n
    edges: list[str | None] = [None, *cuts, None]
    return list(zip(edges[:-1], edges[1:]))


def failure(exc: BaseException) -> tuple[str, str]:
    """``(kind, one safe line)`` of a worker's failure."""
    if isinstance(exc, ToolError):
        return "tool", str(exc)
    if isinstance(exc, (sa_exc.SQLAlchemyError, JournalUnavailable)):
        return "unavailable", str(unavailable(exc))
    first = (str(exc).strip().splitlines() or [""])[0][:200]
    return "tool", f"internal error: {type(exc).__name__}: {first}"


def _worker(url: str, job: Job, tasks: Any, results: Any, chunk: int) -> None:
    """Body of a worker process: run ``job`` on the ranges taken from ``tasks`` until ``None``.

    Sends ``("progress", n)``, ``("done", index, part)`` or, once,
    ``("error", kind, message)`` on ``results``. Ctrl-C is the parent's to
    handle (it terminates the workers): a worker ignores SIGINT rather than
    print a traceback of its own.
    """
    import signal

    signal.signal(signal.SIGINT, signal.SIG_IGN)
    engine = None
    try:
        engine = make_engine(url)

        def advance(n: int) -> None:
            results.put(("progress", n))

        while (task := tasks.get()) is not None:
            index, lo, hi = task
            results.put(("done", index, job(engine, lo, hi, advance, chunk)))
    except BaseException as e:  # noqa: BLE001 - reported to the parent as one line
        results.put(("error", *failure(e)))
    finally:
        if engine is not None:
            engine.dispose()


def run_ranges(
    engine: Engine,
    ranges: list[Range],
    workers: int,
    job: Job,
    advance: Advance,
    chunk: int,
    *,
    local: bool = True,
    label: str = "replay",
) -> list[Any]:
    """Run ``job`` on ``ranges`` in ``workers`` processes: this one (``local``)
    and ``workers - 1`` spawned ones, all taking ranges from one queue. The
    parts in range order.

    This process works too: its imports are done and its engine is open,
    where a spawned worker first spends ~0.7 s of CPU importing parley (the
    ranges it does not take meanwhile are this process's). A failing worker
    raises :class:`ToolError` or :class:`JournalUnavailable` with one safe
    line (``label`` names the tool in it). The caller's ``__main__`` must be safe to import (the ``if __name__
    == "__main__"`` idiom), as for any ``spawn``.
    """
    import multiprocessing
    import queue

    # The URL with its password goes to the children through the spawn pipe
    # (pickled process arguments), never on a command line or into a message.
    url = engine.url.render_as_string(hide_password=False)
    ctx = multiprocessing.get_context("spawn")
    tasks = ctx.Queue()
    results = ctx.Queue()
    n_children = max(1, min(workers, len(ranges)) - (1 if local else 0))
    for index, (lo, hi) in enumerate(ranges):
        tasks.put((index, lo, hi))
    for _ in range(n_children + 1):
        tasks.put(None)
    procs = [
        ctx.Process(target=_worker, args=(url, job, tasks, results, chunk), name=f"parley-{label}-{i}", daemon=True)
        for i in range(n_children)
    ]
    parts: list[Any] = [None] * len(ranges)
    remaining = [len(ranges)]

    def handle(msg: tuple) -> None:
        if msg[0] == "progress":
            advance(msg[1])
        elif msg[0] == "done":
            parts[msg[1]] = msg[2]
            remaining[0] -= 1
        else:
            _tag, kind, message = msg
            if kind == "unavailable":
                raise JournalUnavailable(message)
            raise ToolError(message)

    def drain() -> None:
        while True:
            try:
                msg = results.get_nowait()
            except queue.Empty:
                return
            handle(msg)

    def own_advance(n: int) -> None:
        advance(n)
        drain()

    def check_children() -> None:
        """Raise if a worker ended without reporting (killed: OOM, a signal)."""
        dead = [p.exitcode for p in procs if p.exitcode is not None]
        if not (any(code != 0 for code in dead) or (remaining[0] and len(dead) == len(procs))):
            return
        # its last words (an error) may still be in flight: look once more
        try:
            handle(results.get(timeout=1.0))
        except queue.Empty:
            pass
        if remaining[0]:
            code = next((c for c in dead if c != 0), 0)
            raise ToolError(f"a {label} worker process ended unexpectedly (exit code {code})")

    def next_task() -> tuple[int, str | None, str | None] | None:
        while True:
            try:  # with a timeout: a child killed inside get() would hold the queue's lock
                return tasks.get(timeout=1.0)
            except queue.Empty:
                check_children()

    try:
        for p in procs:
            p.start()
        while local and (task := next_task()) is not None:
            index, lo, hi = task
            parts[index] = job(engine, lo, hi, own_advance, chunk)
            remaining[0] -= 1
        while remaining[0]:
            try:
                handle(results.get(timeout=0.5))
            except queue.Empty:
                check_children()
    finally:
        for p in procs:
            if p.pid is None:  # never started
                continue
            # every part is in (or we are failing): a child still alive is
            # starting up or exiting, with nothing left to report
            if p.is_alive():
                p.terminate()
            p.join(timeout=10)
            if p.is_alive():
                p.kill()
                p.join()
        tasks.cancel_join_thread()  # sentinels a terminated child did not take
        tasks.close()
        results.close()
    return [p for p in parts if p is not None]


def run_split(
    engine: Engine, workers: int, job: Job, advance: Advance, chunk: int, *, min_events: int, label: str
) -> list[Any]:
    """``job`` over the whole journal: in this process when one range is enough
    (one worker, or fewer than ``min_events`` events), else over similar-sized
    stream ranges in ``workers`` processes (:func:`run_ranges`). The parts in order."""
    if workers > 1:
        ranges = stream_ranges(engine, workers * RANGES_PER_WORKER, min_events=min_events)
        if len(ranges) > 1:
            return run_ranges(engine, ranges, workers, job, advance, chunk, label=label)
    return [job(engine, None, None, advance, chunk)]
