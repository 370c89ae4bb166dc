"""The order "next most uncertain" walks, and how an image's uncertainty is shown.

An image's uncertainty is the number the last auto-label run stored for it
(``ImageRecord.uncertainty``, higher is less sure; the plugin computes it, e.g. the localizer's
``1 - score x agreement of the flipped views``, so it is not the proposal's score). The window
shows exactly that number, and the walk goes through the not-done auto-labelled images from the
most uncertain down (ties by id), each press one step further, wrapping round at the end, so the
numbers shown along the way never rise until the walk starts again.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

from labeler.core.annotation import ImageRecord

if TYPE_CHECKING:
    from labeler.core.store import Project


def _key(record: ImageRecord) -> tuple[float, int]:
    assert record.uncertainty is not None
    return (-record.uncertainty, record.id)


def uncertainty_order(records: Iterable[ImageRecord]) -> list[ImageRecord]:
    """The not-done images that carry an uncertainty, most uncertain first (ties by id)."""
    return sorted((r for r in records if not r.done and r.uncertainty is not None), key=_key)


def next_most_uncertain(records: Iterable[ImageRecord], *, current: ImageRecord | None) -> ImageRecord | None:
    """The image after ``current`` in :func:`uncertainty_order` (the first one if ``current`` has
    no uncertainty or is the last); ``None`` when no other image is left."""
    order = [r for r in uncertainty_order(records) if current is None or r.id != current.id]
    if not order:
        return None
    if current is None or current.uncertainty is None:
        return order[0]
    here = _key(current)
    return next((r for r in order if _key(r) > here), order[0])


def next_most_uncertain_image(project: Project, *, current: ImageRecord | None) -> ImageRecord | None:
    """:func:`next_most_uncertain` over the project's images, as two steps of the store's index
    (not a read of every image): the one after ``current`` in the order, else the first."""
    if current is not None and current.uncertainty is not None:
        after = project.next_uncertain_image(below=(current.uncertainty, current.id), exclude=current.id)
        if after is not None:
            return after
    return project.next_uncertain_image(below=None, exclude=current.id if current is not None else None)


def describe_uncertainty(value: float | None) -> str:
    """How the window names an image's uncertainty: ``"uncertainty 0.43"`` or ``"not auto-labelled"``."""
    return "not auto-labelled" if value is None else f"uncertainty {value:.2f}"
