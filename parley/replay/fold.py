"""Folding one stream with the domain's fold and comparing it with its snapshot."""

from __future__ import annotations

import functools
from typing import Any

import orjson

from ..domain import channel, session_state
from ..journal.tools.stats import stream_kind
from .report import Finding, ReplayReport


def normalise(value: Any) -> Any:
    """JSON round trip: tuples → lists, dataclasses → dicts, as a snapshot would hold."""
    return orjson.loads(orjson.dumps(value, option=orjson.OPT_NON_STR_KEYS))


def _short(value: Any, limit: int = 80) -> str:
    try:
        text = orjson.dumps(value).decode()
    except TypeError:
        text = repr(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def first_difference(expected: Any, actual: Any, path: str = "$") -> str | None:
    """Where two JSON-like values first differ (``None`` if equal)."""
    if isinstance(expected, dict) and isinstance(actual, dict):
        for key in list(expected) + [k for k in actual if k not in expected]:
            if key not in actual:
                return f"{path}.{key}: missing from the replayed state"
            if key not in expected:
                return f"{path}.{key}: missing from the snapshot"
            found = first_difference(expected[key], actual[key], f"{path}.{key}")
            if found:
                return found
        return None
    if isinstance(expected, list) and isinstance(actual, list):
        for i, (a, b) in enumerate(zip(expected, actual)):
            found = first_difference(a, b, f"{path}[{i}]")
            if found:
                return found
        if len(expected) != len(actual):
            return f"{path}: snapshot has {len(expected)} items, replay has {len(actual)}"
        return None
    if expected == actual and type(expected) is type(actual):
        return None
    numbers = (int, float)
    if (
        expected == actual
        and isinstance(expected, numbers) and not isinstance(expected, bool)
        and isinstance(actual, numbers) and not isinstance(actual, bool)
    ):
        return None
    return f"{path}: snapshot {_short(expected)} != replay {_short(actual)}"


class StreamFold:
    """Folds one ``channel:*`` or ``session:*`` stream; compares with its snapshot."""

    def __init__(self, report: ReplayReport, stream_id: str, snapshot: tuple[int, str] | None) -> None:
        self.report = report
        self.stream_id = stream_id
        self.kind = stream_kind(stream_id)
        self.snapshot = snapshot
        self.reached = False
        self.failed = False
        self.last_seq = 0
        counts = report.kinds[self.kind]
        counts.streams += 1
        self.counts = counts
        self._channel, self._session = channel, session_state
        if self.kind == "channel":
            self._state: Any = channel.ChannelState(stream_id.split(":", 1)[1])
            # the state is folded in place: bound once, one Python call per event fewer
            self._apply: Any = functools.partial(channel.apply, self._state)
        else:
            self._state = None
            self._apply = self._apply_session
        if snapshot is not None and snapshot[0] == 0:
            self._compare()

    def _apply_session(self, type_: str, data: dict[str, Any]) -> None:
        self._state = self._session.apply(self._state, type_, data)

    def _find(self, kind: str, detail: str) -> None:
        self.report.findings.append(Finding(self.stream_id, kind, detail))

    def feed(self, seq: int, type_: str, data_text: str) -> None:
        self.counts.events += 1
        if self.failed:
            return
        try:
            if seq != self.last_seq + 1:
                raise ValueError(f"seq {seq} where {self.last_seq + 1} was expected")
            self._apply(type_, orjson.loads(data_text))
        except Exception as e:  # noqa: BLE001 - any failure of the fold is a finding
            first = (str(e).strip().splitlines() or [""])[0][:200]
            self._find("fold_error", f"seq {seq} ({type_}): {type(e).__name__}: {first}")
            self.failed = True
            return
        self.last_seq = seq
        if self.snapshot is not None and seq == self.snapshot[0]:
            self._compare()

    def _compare(self) -> None:
        assert self.snapshot is not None
        self.reached = True
        self.counts.snapshots_compared += 1
        snap_seq, snap_text = self.snapshot
        where = f"snapshot at seq {snap_seq}"
        try:
            stored = orjson.loads(snap_text)
        except orjson.JSONDecodeError:
            self._find("difference", f"{where}: snapshot data is not valid JSON")
            return
        if self._state is None:
            self._find("difference", f"{where}: no state at that seq")
            return
        module = self._session if self.kind == "session" else self._channel
        try:
            rebuilt = normalise(module.to_snapshot(self._state))
        except Exception as e:  # noqa: BLE001 - reported, never a crash
            self._find("fold_error", f"{where}: cannot serialise the replayed state: {type(e).__name__}")
            return
        diff = first_difference(stored, rebuilt)
        if diff is None:
            self.counts.snapshots_matching += 1
        else:
            self._find("difference", f"{where}: {diff}")

    def finish(self) -> None:
        if self.failed or self.snapshot is None or self.reached:
            return
        self._find(
            "difference",
            f"snapshot at seq {self.snapshot[0]} is beyond the end of the stream (last seq {self.last_seq})",
        )
