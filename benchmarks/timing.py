"""Timing for the quality benchmarks: the mean time of one call over a list of inputs."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any


def mean_ms(run: Callable[[Any], object], items: Sequence[Any], *, warmup: int = 0) -> float:
    """Mean milliseconds of ``run(item)`` over ``items``, after ``warmup`` untimed runs on the first ones."""
    for item in items[:warmup]:
        run(item)
    t0 = time.perf_counter()
    for item in items:
        run(item)
    return 1000 * (time.perf_counter() - t0) / len(items)
