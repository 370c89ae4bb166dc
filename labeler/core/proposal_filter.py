"""Which proposals the user is shown: those scoring at least the threshold, from the chosen
plugin (or any). Accepted and human labels are always shown.

No Qt here: the canvas draws what passes, the proposals panel counts what passes, and "accept all
shown" accepts exactly those.
"""

from __future__ import annotations

from dataclasses import dataclass

from labeler.core.annotation import Annotation

DEFAULT_MIN_SCORE = 0.5


@dataclass(frozen=True)
class ProposalFilter:
    """Proposals with a score below ``min_score`` (in [0, 1]) are hidden, and so are those of a
    plugin other than ``plugin`` when one is chosen. A proposal without a score always passes the
    threshold."""

    min_score: float = DEFAULT_MIN_SCORE
    plugin: str | None = None

    def __post_init__(self) -> None:
        if not 0.0 <= self.min_score <= 1.0:
            raise ValueError(f"the score threshold must lie in [0, 1], got {self.min_score}")

    def passes(self, *, score: float | None, plugin: str | None) -> bool:
        """Whether a proposal with this ``score``, made by ``plugin``, is shown."""
        if self.plugin is not None and plugin != self.plugin:
            return False
        return score is None or score >= self.min_score

    def shows(self, ann: Annotation, *, plugin: str | None) -> bool:
        """Whether ``ann`` is shown (anything that is not a proposal is)."""
        return not ann.is_proposal or self.passes(score=ann.score, plugin=plugin)
