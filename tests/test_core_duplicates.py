"""The rule that proposals do not repeat accepted or rejected labels (labeler.core.duplicates)."""

from __future__ import annotations

from labeler.core.annotation import Annotation, Kind, State
from labeler.core.duplicates import DUPLICATE_IOU, drop_duplicates, overlap
from labeler.core.geometry import box_to_mask, encode_mask


def box(
    x: float,
    y: float,
    w: float,
    h: float,
    *,
    category: int = 1,
    state: State = State.ACCEPTED,
    version: int | None = None,
) -> Annotation:
    return Annotation(
        image_id=1,
        category_id=category,
        kind=Kind.BOX,
        box_xywh=(x, y, w, h),
        state=state,
        model_version=version,
        score=0.9 if version else None,
    )


def proposal(x: float, y: float, w: float, h: float, *, category: int = 1) -> Annotation:
    return box(x, y, w, h, category=category, state=State.PROPOSED, version=1)


def test_a_proposal_on_an_accepted_label_of_its_class_is_dropped() -> None:
    accepted = box(10, 10, 20, 20)
    same = proposal(10, 10, 20, 20)
    shifted = proposal(12, 12, 20, 20)  # IoU 0.68
    elsewhere = proposal(50, 50, 20, 20)
    other_class = proposal(10, 10, 20, 20, category=2)
    kept = drop_duplicates([same, shifted, elsewhere, other_class], [accepted])
    assert kept == [elsewhere, other_class]


def test_rejected_labels_count_and_pending_proposals_do_not() -> None:
    rejected = box(10, 10, 20, 20, state=State.REJECTED, version=1)
    pending = proposal(50, 50, 20, 20)
    new = [proposal(10, 10, 20, 20), proposal(50, 50, 20, 20)]
    assert drop_duplicates(new, [rejected, pending]) == [new[1]]


def test_the_threshold_is_the_stated_iou() -> None:
    accepted = box(0, 0, 10, 10)
    half = proposal(0, 0, 10, 20)  # IoU exactly 0.5
    assert overlap(half, accepted, height=None, width=None) == DUPLICATE_IOU == 0.5
    assert drop_duplicates([half], [accepted]) == []
    assert drop_duplicates([proposal(0, 0, 10, 21)], [accepted]) != []


def test_masks_compare_by_pixels() -> None:
    mask = box_to_mask((0, 0, 10, 10), 20, 20)
    accepted = Annotation(image_id=1, category_id=1, kind=Kind.MASK, rle=encode_mask(mask))
    same = Annotation(
        image_id=1,
        category_id=1,
        kind=Kind.MASK,
        rle=encode_mask(mask),
        state=State.PROPOSED,
        model_version=1,
        score=0.8,
    )
    other = Annotation(
        image_id=1,
        category_id=1,
        kind=Kind.MASK,
        rle=encode_mask(~mask),
        state=State.PROPOSED,
        model_version=1,
        score=0.8,
    )
    assert drop_duplicates([same, other], [accepted], height=20, width=20) == [other]
