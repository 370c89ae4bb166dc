"""K-fold cross-validation for the quality benchmarks: the folds, and the summary they print.

A figure on one fixed split can be tuned to that split; the mean over K folds (each image held out
once) with its spread says what a setting does on images it was not tuned on.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable, Hashable, Mapping, Sequence
from typing import Any


def folds_of(n: int, k: int) -> list[list[int]]:
    """Held-out indices of each of ``k`` folds over ``n`` items in their given order (fold ``f``
    holds out every ``k``-th item from the ``f``-th)."""
    if k < 2:
        raise ValueError(f"cross-validation needs at least 2 folds, not {k}")
    if n < k:
        raise ValueError(f"{n} items cannot make {k} folds")
    return [list(range(f, n, k)) for f in range(k)]


def stratified_folds(groups: Sequence[Hashable], k: int) -> list[list[int]]:
    """Like :func:`folds_of`, but within each group (a class, say) separately, so every fold holds
    about the same share of each group; items keep their given order inside a group."""
    members: dict[Hashable, list[int]] = {}
    for i, g in enumerate(groups):
        members.setdefault(g, []).append(i)
    out: list[list[int]] = [[] for _ in range(k)]
    offset = 0
    for indices in members.values():
        for j, i in enumerate(indices):
            out[(j + offset) % k].append(i)
        offset += len(indices)  # so small groups do not all start in fold 0
    return [sorted(f) for f in out]


def summarize(
    results: Sequence[Mapping[str, Any]], keys: Sequence[str], *, log: Callable[[str], None] = print, what: str = ""
) -> dict[str, float]:
    """Print the mean, standard deviation and per-fold values of ``keys``; return the means."""
    log(f"{len(results)}-fold cross-validation{what}:")
    means = {}
    for key in keys:
        values = [float(r[key]) for r in results if key in r]
        if not values:
            continue
        sd = statistics.stdev(values) if len(values) > 1 else 0.0
        means[key] = statistics.mean(values)
        log(f"  {key:22s} mean {means[key]:.3f}  sd {sd:.3f}  folds {' '.join(f'{v:.3f}' for v in values)}")
    return means
