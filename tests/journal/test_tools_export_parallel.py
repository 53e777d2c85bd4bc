"""``journal export`` by worker processes writes the bytes of one process, and leaves nothing behind (ADR-0050).

* position ranges written to part files by spawned workers and copied in
  order give exactly the serial export, filters included, on both backends;
* a failing worker fails the export with one line, removes every part file,
  and (through the CLI's atomic writer) creates no target file at all.
"""

from __future__ import annotations

import io
import os

import pytest

from parley.atomic_file import atomic_writer
from parley.journal import JournalStore, NewEvent, migrate, tools
from parley.journal.engine import make_engine
from parley.journal.tools import export as export_mod
from parley.journal.tools.opening import ToolError


def build(url: str, streams: int = 12, events: int = 25) -> None:
    """Streams appended round-robin, so every stream's events are spread over the positions."""
    migrate.upgrade(url)
    store = JournalStore.open(url)
    try:
        for i in range(events):
            for k in range(streams):
                data = {"n": i, "text": "h\u00e9llo \"quoted\" \\ \u2603", "k": k}
                store.append(f"channel:c{k:02d}", [NewEvent("note" if i else "channel_created", data)], i)
    finally:
        store.dispose()


def serial(engine, **kwargs) -> bytes:
    out = io.BytesIO()
    tools.export_events(engine, out, chunk=17, **kwargs)
    return out.getvalue()


def parallel(engine, tmp_path, **kwargs) -> tuple[bytes, tools.ExportResult]:
    target = tmp_path / "out.ndjson"
    with atomic_writer(target) as fh:
        result = tools.export_events(
            engine, fh, chunk=17, workers=2, scratch=str(tmp_path / ".out.x."), min_parallel_events=0, **kwargs
        )
    return target.read_bytes(), result


@pytest.mark.parametrize(
    "filters",
    [{}, {"stream": "channel:c05"}, {"from_position": 40, "to_position": 211}, {"stream": "nope"}],
    ids=["all", "stream", "window", "empty"],
)
def test_a_parallel_export_writes_the_serial_bytes(migrated_url, tmp_path, filters):
    build(migrated_url)
    engine = make_engine(migrated_url)
    try:
        expected = serial(engine, **filters)
        got, result = parallel(engine, tmp_path, **filters)
        assert got == expected
        lines = expected.splitlines()
        assert result.events == len(lines)
        if lines:
            assert result.first_position == int(lines[0].split(b",")[0].split(b":")[1])
            assert result.last_position == int(lines[-1].split(b",")[0].split(b":")[1])
        else:
            assert result.first_position is None and result.last_position is None
        assert not [n for n in os.listdir(tmp_path) if n.endswith(".part") or n.endswith(".tmp")]
    finally:
        engine.dispose()


def test_a_failing_worker_leaves_no_target_and_no_part_files(sqlite_url, tmp_path):
    build(sqlite_url)
    engine = make_engine(sqlite_url)
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    scratch = str(out_dir / ".out.x.")
    lo, hi, n = export_mod.position_bounds(engine, None, None, None)
    assert (lo, n) == (1, 300)
    # A directory where the third range's part file goes: that range's writer fails.
    blocker = out_dir / os.path.basename(export_mod.part_path(scratch, 1 + (hi - lo + 1) * 2 // 8))
    blocker.mkdir()
    target = out_dir / "out.ndjson"
    try:
        with pytest.raises(ToolError, match=r"^cannot write the export part file .*\.76\.part: File exists$"):
            with atomic_writer(target) as fh:
                tools.export_events(engine, fh, chunk=17, workers=2, scratch=scratch, min_parallel_events=0)
        assert not target.exists()
        assert sorted(os.listdir(out_dir)) == [blocker.name]  # no part file, no temporary output
    finally:
        engine.dispose()


def test_below_the_threshold_or_without_scratch_the_export_stays_in_this_process(sqlite_url, tmp_path):
    build(sqlite_url)
    engine = make_engine(sqlite_url)
    try:
        expected = serial(engine)
        out = io.BytesIO()  # no file descriptor: a parallel export would fail on it
        tools.export_events(engine, out, chunk=17, workers=2, scratch=None, min_parallel_events=0)
        assert out.getvalue() == expected
        out = io.BytesIO()
        tools.export_events(engine, out, chunk=17, workers=2, scratch=str(tmp_path / ".s."), min_parallel_events=301)
        assert out.getvalue() == expected
    finally:
        engine.dispose()
