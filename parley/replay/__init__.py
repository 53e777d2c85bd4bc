"""Replaying the journal with the domain's fold: ``parley journal replay`` and ``verify``.

Above the journal (it imports :mod:`parley.domain`; the journal must not), a
peer of the actors (ADR-0043):

- :mod:`.report` what a replay reports, and how range parts merge;
- :mod:`.fold`   one stream folded and compared with its snapshot;
- :mod:`.run`    :func:`replay`, in one process or over stream ranges;
- :mod:`.audit`  :func:`verify_all`, every check of ``journal verify`` in one pass.
"""

from __future__ import annotations

from .audit import IntegrityReport, verify_all
from .fold import first_difference
from .report import REPLAY_KINDS, Finding, KindCounts, ReplayReport
from .run import PARALLEL_MIN_EVENTS, replay, replay_count, replay_filter, replay_ranges

__all__ = [
    "PARALLEL_MIN_EVENTS",
    "REPLAY_KINDS",
    "Finding",
    "IntegrityReport",
    "KindCounts",
    "ReplayReport",
    "first_difference",
    "replay",
    "replay_count",
    "replay_filter",
    "replay_ranges",
    "verify_all",
]
