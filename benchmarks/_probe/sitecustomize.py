"""Server-side timestamps for ``benchmarks/fanout_probe.py`` (loaded only by its servers).

Put on ``PYTHONPATH`` of a ``parley serve`` process, it wraps, without
changing what they do, the journal's ``append`` (the commit, fsync
included), the backbone's commit hook, and every transport write of an
admitted connection (``send_all``; ``write_now`` where the tree has it), and
at exit writes one JSON file of ``(kind, t, connection, head bytes)`` rows to
``$PARLEY_PROBE_OUT``. Times are ``time.perf_counter()`` of the server.
"""

from __future__ import annotations

import atexit
import json
import os
import signal
import time

OUT = os.environ.get("PARLEY_PROBE_OUT")
ROWS: list[tuple] = []


def _dump(*_args) -> None:
    if OUT and ROWS:
        with open(OUT, "w") as f:
            json.dump(ROWS, f)
        ROWS.clear()


def _install() -> None:
    from parley.actors import backbone
    from parley.http import admission
    from parley.journal import journal

    clock = time.perf_counter
    rows = ROWS

    append = journal.Journal.append

    async def timed_append(self, *args, **kwargs):
        t0 = clock()
        try:
            return await append(self, *args, **kwargs)
        finally:
            rows.append(("commit", t0, clock()))

    journal.Journal.append = timed_append

    hook = backbone.Backbone.on_channel_commit

    def timed_hook(self, name, state, committed):
        rows.append(("notify", clock(), state.head))
        return hook(self, name, state, committed)

    backbone.Backbone.on_channel_commit = timed_hook

    stream = admission.AdmittedStream
    send_all = stream.send_all

    async def timed_send_all(self, data):
        rows.append(("send", clock(), id(self), bytes(data[:12]).decode("latin-1")))
        return await send_all(self, data)

    stream.send_all = timed_send_all
    write_now = getattr(stream, "write_now", None)
    if write_now is not None:

        def timed_write_now(self, data):
            sent = write_now(self, data)
            if sent is not None:
                rows.append(("direct", clock(), id(self), bytes(data[:12]).decode("latin-1")))
            return sent

        stream.write_now = timed_write_now


if OUT:
    _install()
    atexit.register(_dump)
    signal.signal(signal.SIGTERM, lambda *a: (_dump(), os._exit(0)))
