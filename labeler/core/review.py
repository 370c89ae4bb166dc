"""Review time: how long a person spent looking over an image's proposals, which is what the
accepted proposals cost (:mod:`labeler.core.effort` subtracts it from the drawing time saved).

A visit to an image counts from the moment its proposals are on screen (when the image is shown
with proposals, or when proposals appear while it is shown) to the last proposal the person
accepted or rejected there, capped at :data:`REVIEW_CAP_SECONDS` (someone who walked away is not
reviewing). A visit where nothing was accepted or rejected costs nothing.

No Qt here: the window feeds :class:`ReviewClock` with what the user does; a headless simulation
can feed it with its own clock.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from labeler.core.store import Project

REVIEW_CAP_SECONDS = 60.0
"""At most this much of one visit to an image counts as time spent reviewing its proposals."""


@dataclass(frozen=True)
class ReviewTime:
    """Seconds of review spent on image ``image_id`` during one visit."""

    image_id: int
    seconds: float


class ReviewClock:
    """Times the visit to the image on screen. Times are seconds of any monotonic clock.

    ``show(image_id, now=...)`` starts a visit (ending the previous one); ``proposals_appeared``
    restarts its clock when new proposals arrive on it; ``reviewed`` marks an accept or reject;
    ``leave`` ends the visit and returns what it cost (or None).
    """

    def __init__(self, *, cap_seconds: float = REVIEW_CAP_SECONDS) -> None:
        self.cap_seconds = cap_seconds
        self._image_id: int | None = None
        self._start = 0.0
        self._last_review: float | None = None

    @property
    def image_id(self) -> int | None:
        """The image being visited, if any."""
        return self._image_id

    def show(self, image_id: int, *, now: float) -> ReviewTime | None:
        """Image ``image_id`` is now on screen; returns the cost of the visit this ends."""
        ended = self.leave()
        self._image_id, self._start, self._last_review = image_id, now, None
        return ended

    def proposals_appeared(self, image_id: int, *, now: float) -> None:
        """New proposals arrived on ``image_id`` (auto-labelled while shown): review starts now."""
        if image_id == self._image_id:
            self._start = now

    def reviewed(self, image_id: int, *, now: float) -> None:
        """A proposal on ``image_id`` was accepted or rejected."""
        if image_id == self._image_id:
            self._last_review = now

    def leave(self) -> ReviewTime | None:
        """End the visit: its review time, capped, or None if nothing was reviewed."""
        image_id, last = self._image_id, self._last_review
        self._image_id, self._last_review = None, None
        if image_id is None or last is None:
            return None
        return ReviewTime(image_id, max(0.0, min(self.cap_seconds, last - self._start)))


def log_review(project: Project, review: ReviewTime | None) -> None:
    """Record a visit's review time in the project's edit log (nothing for None)."""
    if review is not None:
        project.log_edit("review", image_id=review.image_id, seconds=review.seconds)
