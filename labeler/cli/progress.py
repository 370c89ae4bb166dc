"""A progress bar on a terminal (stderr), silent when stderr is not a terminal."""

from __future__ import annotations

import sys
import time
from typing import TextIO


class ProgressBar:
    """``bar(done, total)`` redraws ``label [#####-----] done/total eta``; call ``close()`` at the end
    (or use it as a context manager, which closes it)."""

    def __init__(self, label: str, *, stream: TextIO | None = None, enabled: bool | None = None) -> None:
        self.label = label
        self.stream = stream or sys.stderr
        self.enabled = self.stream.isatty() if enabled is None else enabled
        self.start = time.monotonic()
        self._last = 0.0
        self._drawn = False

    def __call__(self, done: int, total: int) -> None:
        if not self.enabled:
            return
        now = time.monotonic()
        if done < total and now - self._last < 0.1:
            return
        self._last = now
        width = 30
        frac = done / total if total else 1.0
        filled = int(width * frac)
        elapsed = now - self.start
        eta = elapsed / done * (total - done) if done else 0.0
        self.stream.write(f"\r{self.label} [{'#' * filled}{'-' * (width - filled)}] {done}/{total} eta {eta:4.0f}s")
        self.stream.flush()
        self._drawn = True

    def __enter__(self) -> ProgressBar:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        if self.enabled and self._drawn:
            self.stream.write("\n")
            self.stream.flush()
