"""``parley journal verify``: chains, snapshots, artifacts and an anchor, in one pass over the events.

The checks themselves live in the journal (:mod:`parley.journal.verify` for
the chains, :mod:`parley.journal.integrity` for snapshot bindings, artifacts
and anchors); the snapshot comparison folds streams with the domain, which is
why this module sits above the journal with replay (ADR-0043).

One pass (ADR-0044): each event row is read once, with its hashes, and both
chain-checked and, for ``channel:*``/``session:*`` streams, folded. With
``workers > 1`` the streams are cut into ranges (by all their events) run by
worker processes; the parts merge in range order into exactly the report of
one process. The fold's findings count only when every chain is intact (a
broken chain's fold would only repeat its break), as before.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.engine import Engine

from ..journal.integrity import (
    Heads,
    check_artifacts,
    check_snapshot_bindings,
    checkpoint,
    compare_with_anchor,
    make_anchor,
)
from ..journal.store import JournalStore
from ..journal.tools.opening import Advance, no_progress
from ..journal.tools.parallel import run_split
from ..journal.types import VerifyReport
from ..journal.verify import PARALLEL_MIN_EVENTS, ChainCheck, chain_pages, merge, verify_report_line
from . import report as replay_report
from .fold import StreamFold
from .run import SnapshotLoader, is_replayed, missing_stream_findings, range_snapshot_seqs, snapshot_filter, snapshot_seqs

#: One range's chain part and replay part.
AuditPart = tuple[Any, replay_report.Part]


@dataclass(slots=True)
class IntegrityReport:
    chain: VerifyReport
    heads: Heads = field(default_factory=dict)
    last_position: int = 0
    snapshots_checked: int = 0
    artifacts_checked: int = 0
    anchored_streams: int | None = None
    #: One line each; the chain's break (if any) comes first.
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.chain.ok and not self.problems

    @property
    def checkpoint(self) -> str:
        return checkpoint(self.heads)

    def anchor(self) -> dict[str, Any]:
        return make_anchor(self.heads, self.last_position)


def audit_range(engine: Engine, lo: str | None, hi: str | None, advance: Advance, chunk: int) -> AuditPart:
    """Chain-check every stream ``lo <= stream_id < hi`` and fold the replayed ones (a parallel job).

    Page by page: the page's chains are checked in one loop
    (:meth:`ChainCheck.feed_page`), then its replayed streams folded. A broken
    page is not folded: the fold's findings count only when every chain is
    intact (:func:`verify_all`), so nothing after a break is ever reported.
    """
    check = ChainCheck()
    folded = replay_report.ReplayReport()
    load_snapshot = SnapshotLoader(engine, range_snapshot_seqs(engine, lo, hi))
    seen: list[str] = []
    stream: str | None = None
    fold: StreamFold | None = None
    feed: Any = None
    for rows in chain_pages(engine, lo, hi, chunk):
        if not check.feed_page(rows):
            break
        for sid, seq, type_, data, _position, _prev, _hash in rows:
            if sid != stream:
                stream = sid
                if fold is not None:
                    fold.finish()
                    fold = feed = None
                if is_replayed(sid):
                    seen.append(sid)
                    fold = StreamFold(folded, sid, load_snapshot(sid))
                    feed = fold.feed
            if feed is not None:
                feed(seq, type_, data)
        advance(len(rows))
    else:
        if fold is not None:
            fold.finish()
    return check.part(), replay_report.to_part(folded, seen)


def verify_all(
    engine: Engine,
    *,
    anchor: Heads | None = None,
    advance: Advance = no_progress,
    workers: int = 1,
    chunk: int = 10_000,
    min_parallel_events: int = PARALLEL_MIN_EVENTS,
) -> IntegrityReport:
    """Chains, snapshots (bindings and a fold), artifacts, and the anchor if given."""
    snapshot_streams = snapshot_seqs(engine, snapshot_filter(None))
    parts = run_split(engine, workers, audit_range, advance, chunk, min_events=min_parallel_events, label="verify")
    heads: Heads = {}
    chain = merge([chain_part for chain_part, _ in parts], heads)
    report = IntegrityReport(chain, heads, JournalStore(engine).last_position())
    if not chain.ok:
        report.problems.append(verify_report_line(chain))
    report.snapshots_checked, problems = check_snapshot_bindings(engine)
    report.problems.extend(problems)
    if chain.ok:  # folding a broken chain only repeats its break
        replayed = replay_report.ReplayReport()
        seen: set[str] = set()
        for _, fold_part in parts:
            seen |= replay_report.add_part(replayed, fold_part)
        replayed.findings.extend(missing_stream_findings(snapshot_streams, seen))
        report.problems.extend(
            f"{'snapshot of' if f.kind == 'difference' else 'stream'} {f.stream_id!r}: {f.detail}"
            for f in replayed.findings
        )
    report.artifacts_checked, problems = check_artifacts(engine)
    report.problems.extend(problems)
    if anchor is not None and chain.ok:  # heads are complete only for a whole walk
        report.anchored_streams = len(anchor)
        report.problems.extend(compare_with_anchor(engine, anchor, heads))
    return report
