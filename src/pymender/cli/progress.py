"""A one-line progress bar on stderr, shown only when stderr is a terminal."""

from __future__ import annotations

import sys
import time
from types import TracebackType


class ProgressBar:
    def __init__(self, label: str, *, enabled: bool, interval: float = 0.2) -> None:
        self.label = label
        self.enabled = enabled
        self.interval = interval
        self._last = 0.0
        self._shown = False

    def __enter__(self) -> ProgressBar:
        return self

    def __exit__(self, kind: type[BaseException] | None, value: BaseException | None,
                 tb: TracebackType | None) -> None:
        if self._shown:
            sys.stderr.write("\n" if kind is None else "\r\033[K")
            sys.stderr.flush()

    def update(self, done: int, total: int) -> None:
        if not self.enabled:
            return
        now = time.monotonic()
        if now - self._last < self.interval and done < total:
            return
        self._last = now
        fraction = done / total if total else 1.0
        width = 30
        filled = int(fraction * width)
        bar = "#" * filled + "-" * (width - filled)
        sys.stderr.write(f"\r{self.label} [{bar}] {fraction * 100:5.1f}% "
                         f"({done / 2**20:.0f}/{total / 2**20:.0f} MiB)")
        sys.stderr.flush()
        self._shown = True
