"""The rule that keeps a proposal from repeating a label the image already has.

A proposal duplicates an existing label when both are of the same category and their overlap
(intersection over union) is at least :data:`DUPLICATE_IOU`. Existing labels are the accepted
ones (human or accepted proposals) and the rejected ones (the user already said no to that
object); pending proposals of other model versions are not existing labels.

Boxes compare as boxes; masks and polygons compare pixel by pixel (a box then counts as its
filled rectangle).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from labeler.core.annotation import Annotation, Kind, State
from labeler.core.geometry import annotation_box, annotation_mask, box_iou

DUPLICATE_IOU = 0.5
"""A proposal overlapping an existing label of its category by at least this IoU is dropped."""

EXISTING_STATES = frozenset({State.ACCEPTED, State.REJECTED})
"""The states of the labels that proposals must not repeat."""


def overlap(a: Annotation, b: Annotation, *, height: int | None, width: int | None) -> float:
    """IoU of two annotations: of their boxes when both are boxes (or the size is unknown), else of their pixels."""
    if (a.kind is Kind.BOX and b.kind is Kind.BOX) or height is None or width is None:
        return box_iou(annotation_box(a), annotation_box(b))
    ma, mb = annotation_mask(a, height, width), annotation_mask(b, height, width)
    union = int(np.count_nonzero(ma | mb))
    return int(np.count_nonzero(ma & mb)) / union if union else 0.0


def drop_duplicates(
    proposals: Sequence[Annotation],
    existing: Sequence[Annotation],
    *,
    height: int | None = None,
    width: int | None = None,
    iou: float = DUPLICATE_IOU,
) -> list[Annotation]:
    """The proposals that repeat none of ``existing`` (see the module's rule), in their order."""
    labels = [e for e in existing if e.state in EXISTING_STATES]
    kept: list[Annotation] = []
    for proposal in proposals:
        same_class = [e for e in labels if e.category_id == proposal.category_id]
        if not any(overlap(proposal, e, height=height, width=width) >= iou for e in same_class):
            kept.append(proposal)
    return kept
