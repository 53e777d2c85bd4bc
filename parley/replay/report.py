"""What a replay reports: per-kind counts and findings, and how range parts merge."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

REPLAY_KINDS = ("channel", "session")


@dataclass(slots=True)
class KindCounts:
    streams: int = 0
    events: int = 0
    snapshots_compared: int = 0
    snapshots_matching: int = 0


@dataclass(frozen=True, slots=True)
class Finding:
    stream_id: str
    #: "difference" (state vs snapshot) or "fold_error".
    kind: str
    detail: str


@dataclass(slots=True)
class ReplayReport:
    kinds: dict[str, KindCounts] = field(default_factory=lambda: {k: KindCounts() for k in REPLAY_KINDS})
    findings: list[Finding] = field(default_factory=list)

    @property
    def problems(self) -> list[Finding]:
        return list(self.findings)

    @property
    def ok(self) -> bool:
        return not self.findings

    def as_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "kinds": {
                k: {
                    "streams": c.streams,
                    "events": c.events,
                    "snapshots_compared": c.snapshots_compared,
                    "snapshots_matching": c.snapshots_matching,
                }
                for k, c in self.kinds.items()
            },
            "findings": [{"stream_id": f.stream_id, "kind": f.kind, "detail": f.detail} for f in self.findings],
        }



#: What a range sends back: counts per kind (streams, events, snapshots
#: compared, snapshots matching), findings as tuples, streams seen.
Part = tuple[dict[str, tuple[int, int, int, int]], list[tuple[str, str, str]], list[str]]


def to_part(report: ReplayReport, seen: list[str]) -> Part:
    kinds = {
        k: (c.streams, c.events, c.snapshots_compared, c.snapshots_matching) for k, c in report.kinds.items()
    }
    return kinds, [(f.stream_id, f.kind, f.detail) for f in report.findings], seen


def add_part(report: ReplayReport, part: Part) -> set[str]:
    """Add a range's part to ``report`` (parts in range order); the streams it saw."""
    kinds, findings, seen = part
    for kind, (n_streams, n_events, compared, matching) in kinds.items():
        c = report.kinds[kind]
        c.streams += n_streams
        c.events += n_events
        c.snapshots_compared += compared
        c.snapshots_matching += matching
    report.findings.extend(Finding(*f) for f in findings)
    return set(seen)
