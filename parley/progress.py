"""A tiny progress reporter for long operator commands.

On a TTY stderr it redraws one line — a bar, the count, the rate and an ETA —
at most ten times a second; when stderr is not a TTY (piped, redirected, under
a test runner) it prints nothing at all, so scripted output stays clean.
Without a known total it shows the count and the rate only.

Usage::

    with Progress("export", total=n) as bar:
        for chunk in chunks:
            ...
            bar.advance(len(chunk))
"""

from __future__ import annotations

import sys
import time
from typing import TextIO

__all__ = ["Progress", "format_count", "format_duration"]

_BAR_WIDTH = 24
_REDRAW_S = 0.1


def format_count(n: float, unit: str = "", *, exact_below: float = 1e5) -> str:
    """``1234567`` → ``1.23M`` (exact below ``exact_below``); with ``unit="B"`` → ``1.18MiB``."""
    if unit == "B":
        for suffix in ("B", "KiB", "MiB", "GiB"):
            if abs(n) < 1024 or suffix == "GiB":
                return f"{n:.0f}{suffix}" if suffix == "B" else f"{n:.2f}{suffix}"
            n /= 1024
    if abs(n) < exact_below:
        return f"{n:.0f}" if float(n).is_integer() or abs(n) >= 100 else f"{n:.1f}"
    for threshold, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(n) >= threshold:
            return f"{n / threshold:.2f}{suffix}"
    return f"{n:.0f}" if float(n).is_integer() else f"{n:.1f}"


def format_duration(seconds: float) -> str:
    seconds = max(0, int(seconds + 0.5))
    h, rem = divmod(seconds, 3600)
    m, s = divmod(rem, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


class Progress:
    """Progress of ``label`` towards ``total`` units (``None`` = unknown).

    ``enabled=None`` (default) means "only if ``stream`` is a TTY".
    ``unit`` is ``""`` for plain counts or ``"B"`` for bytes.
    """

    def __init__(
        self,
        label: str,
        total: int | None = None,
        *,
        unit: str = "",
        stream: TextIO | None = None,
        enabled: bool | None = None,
        clock=time.monotonic,
    ) -> None:
        self.label = label
        self.total = total
        self.unit = unit
        self.done = 0
        self._stream = stream if stream is not None else sys.stderr
        if enabled is None:
            isatty = getattr(self._stream, "isatty", None)
            enabled = bool(isatty and isatty())
        self.enabled = enabled
        self._clock = clock
        self._start = clock()
        self._last_draw = float("-inf")
        self._drawn = False

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    def advance(self, n: int = 1) -> None:
        self.done += n
        if not self.enabled:
            return
        now = self._clock()
        if now - self._last_draw >= _REDRAW_S:
            self._last_draw = now
            self._draw(now)

    def render(self, now: float | None = None) -> str:
        """The status line for the current count (no carriage return)."""
        now = self._clock() if now is None else now
        elapsed = max(now - self._start, 1e-9)
        rate = self.done / elapsed
        # count and total on one scale: "5.00k/200.00k", not "5000/200.00k"
        exact_below = 1e5 if not self.total or self.total < 1e5 else 1e3
        done = format_count(self.done, self.unit, exact_below=exact_below)
        rate_text = f"{format_count(rate, self.unit)}/s"
        if self.total:
            frac = min(self.done / self.total, 1.0)
            filled = int(frac * _BAR_WIDTH)
            bar = "#" * filled + "-" * (_BAR_WIDTH - filled)
            remaining = max(self.total - self.done, 0)
            eta = format_duration(remaining / rate) if rate > 0 else "?"
            total = format_count(self.total, self.unit)
            return f"{self.label} [{bar}] {frac * 100:3.0f}% {done}/{total} {rate_text} ETA {eta}"
        return f"{self.label} {done} {rate_text} {format_duration(elapsed)}"

    def _draw(self, now: float) -> None:
        try:
            self._stream.write("\r\x1b[2K" + self.render(now))
            self._stream.flush()
        except (OSError, ValueError):
            self.enabled = False
            return
        self._drawn = True

    def close(self) -> None:
        """Draw the final state and end the line (nothing if never shown)."""
        if not self.enabled:
            return
        self._draw(self._clock())
        if self._drawn:
            try:
                self._stream.write("\n")
                self._stream.flush()
            except (OSError, ValueError):
                pass
        self.enabled = False
