"""How much time accepted proposals saved against drawing the same labels by hand.

The estimate comes from the project's edit log:

- ``draw`` entries carry the seconds a person took to draw one label by hand, with its kind. The
  median per kind is the cost of a hand-drawn label; kinds never drawn by hand use
  :data:`DEFAULT_DRAW_SECONDS` (box 7 s, polygon 30 s, mask 45 s: typical figures for a careful
  annotator).
- Every proposal that is accepted as it stands (state ``accepted``, still tagged with its model
  version) saved one hand-drawn label of its kind. Edited proposals count as hand labels.
- ``review`` entries carry the seconds spent looking over proposals; that time is subtracted.

No Qt here: the GUI's status bar calls :func:`project_effort` and formats the result.
"""

from __future__ import annotations

import statistics
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from labeler.core.store import Project

DEFAULT_DRAW_SECONDS: Mapping[str, float] = {"box": 7.0, "polygon": 30.0, "mask": 45.0}


@dataclass(frozen=True)
class Effort:
    """Time accounting in seconds.

    ``draw_seconds`` is the cost of one hand-drawn label per kind (median of the log or default);
    ``accepted`` counts proposals accepted unchanged, per kind; ``review_seconds`` is the logged
    time spent reviewing; ``saved_seconds`` = sum(accepted * draw_seconds) - review_seconds (may be
    negative when reviewing took longer than drawing would have).
    """

    draw_seconds: dict[str, float] = field(default_factory=dict)
    accepted: dict[str, int] = field(default_factory=dict)
    review_seconds: float = 0.0
    saved_seconds: float = 0.0

    @property
    def accepted_total(self) -> int:
        return sum(self.accepted.values())


def estimate_effort(
    *,
    draws: Iterable[tuple[str, float]],
    accepted: Mapping[str, int],
    review_seconds: float = 0.0,
    defaults: Mapping[str, float] = DEFAULT_DRAW_SECONDS,
) -> Effort:
    """Combine hand-drawing times, accepted proposal counts and review time.

    ``draws`` are ``(kind, seconds)`` of labels drawn by hand; non-positive or missing seconds are
    ignored. ``accepted`` maps a kind to the number of proposals accepted unchanged.
    """
    per_kind: dict[str, list[float]] = {}
    for kind, seconds in draws:
        if seconds is not None and seconds > 0:
            per_kind.setdefault(str(kind), []).append(float(seconds))
    draw_seconds = dict(defaults)
    for kind, values in per_kind.items():
        draw_seconds[kind] = float(statistics.median(values))
    counts = {str(k): int(n) for k, n in accepted.items() if n}
    gained = sum(n * draw_seconds.get(k, 0.0) for k, n in counts.items())
    review = max(0.0, float(review_seconds))
    return Effort(draw_seconds=draw_seconds, accepted=counts, review_seconds=review, saved_seconds=gained - review)


def project_effort(project: Project) -> Effort:
    """:func:`estimate_effort` over a project's edit log and annotations (a few SQL counts)."""
    draws = [(r["kind"], r["seconds"]) for r in project.edit_log(action="draw") if r["kind"]]
    review = sum(float(r["seconds"] or 0.0) for r in project.edit_log(action="review"))
    accepted = project.accepted_proposal_counts()
    return estimate_effort(draws=draws, accepted=accepted, review_seconds=review)


def format_duration(seconds: float) -> str:
    """``'1 h 05 min'``, ``'12 min'``, ``'40 s'``; negative values get a minus sign."""
    sign = "-" if seconds < 0 else ""
    s = round(abs(seconds))
    if s >= 3600:
        return f"{sign}{s // 3600} h {(s % 3600) // 60:02d} min"
    if s >= 60:
        return f"{sign}{s // 60} min"
    return f"{sign}{s} s"
