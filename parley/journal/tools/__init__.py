"""Operator tools over the journal, one module each (ADR-0043).

Synchronous and click-free, so the ``parley journal …`` commands
(:mod:`parley.cli_journal`) are thin shells and tests can call these directly.
They work on a stopped server's database and are safe next to a running one
(reads only, except :func:`import_events`, which needs an empty database).

- :mod:`.opening`  opening a journal (:func:`open_store`) and :class:`ToolError`;
- :mod:`.lines`    the NDJSON export line (:func:`encode_line`, :func:`parse_line`);
- :mod:`.export`   ``journal export``;  :mod:`.importer`  ``journal import``;
- :mod:`.stats`    ``journal stats``;   :mod:`.tail`      ``journal tail``;
- :mod:`.parallel` stream ranges run by worker processes (replay, verify).

The chain check is :mod:`parley.journal.verify`. ``journal replay`` and the
whole of ``journal verify`` fold streams with the domain, so they live above
the journal, in :mod:`parley.replay`.
"""

from __future__ import annotations

from sqlalchemy.engine import Engine

from ..types import VerifyReport
from ..verify import verify_chains
from .export import ExportResult, export_count, export_events
from .importer import IMPORT_META_KEY, ImportResult, import_events
from .lines import encode_line, parse_line, parse_row
from .opening import Advance, ToolError, count_events, no_progress, open_store
from .parallel import default_workers
from .stats import journal_stats
from .tail import follow, last_position

__all__ = [
    "IMPORT_META_KEY",
    "ExportResult",
    "ImportResult",
    "ToolError",
    "count_events",
    "default_workers",
    "encode_line",
    "export_count",
    "export_events",
    "follow",
    "import_events",
    "journal_stats",
    "last_position",
    "open_store",
    "parse_line",
    "parse_row",
    "verify",
]


def verify(engine: Engine, *, advance: Advance = no_progress, chunk: int = 10_000, workers: int = 1) -> VerifyReport:
    """Recompute every hash chain (:func:`parley.journal.verify.verify_chains`), reporting progress."""
    return verify_chains(engine, chunk=chunk, advance=advance, workers=workers)
