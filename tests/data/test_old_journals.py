"""Journals written by earlier versions must rebuild exactly the state they did then.

`journal-v1.ndjson` was exported by the version that wrote it (see
make_journal_v1.py) together with the state every stream folded to. Loading
the bytes into a fresh database and folding them with today's code must give
the same state, and the hash chains must still verify: a change to a fold or
to the hash formula cannot slip through silently.
"""

from __future__ import annotations

from pathlib import Path

import orjson

from parley.journal import migrate, tools
from parley.journal.engine import make_engine
from parley.journal.store import JournalStore
from tests.data.folds import fold_all

HERE = Path(__file__).parent


def test_journal_v1_replays_to_the_recorded_state(tmp_path):
    url = f"sqlite:///{tmp_path / 'old.db'}"
    migrate.upgrade(url)
    engine = make_engine(url)
    try:
        with open(HERE / "journal-v1.ndjson", "rb") as source:
            tools.import_events(JournalStore(engine), source)
        assert tools.verify(engine).ok
        expected = orjson.loads((HERE / "journal-v1.state.json").read_bytes())
        assert orjson.loads(orjson.dumps(fold_all(engine))) == expected
        assert set(expected) >= {"channel:ops", "channel:side", "tokens"}
        assert any(stream.startswith("session:") for stream in expected)
    finally:
        engine.dispose()
