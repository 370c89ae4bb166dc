"""What the simulated annotator does on one image, and what it costs.

Boxes (:func:`review_boxes`): the proposals shown are taken best score first; one whose box
overlaps a true box not matched yet by IoU >= :data:`MATCH_IOU` is accepted (its class changed
when it is wrong), any other is rejected; every true box left unmatched is drawn by hand.

Masks (:func:`review_masks`): each proposal shown is accepted when most of it (at least
:data:`KEEP_PRECISION` of its pixels) lies on its class in the truth, else rejected; then the
annotator paints out what is still wrong: every connected region where the accepted labels differ
from the truth (a class missing: brush; a class spilled over: eraser) is traced, and regions under
``costs.min_region`` pixels are left and counted. By hand (:func:`manual_seconds`) the same image
costs a drawn box per true box, or every true region traced.

:class:`ImageWork` holds the seconds and counts and the changes to store; :func:`apply_work`
stores them through the store's ordinary calls (accept, reject, edit, add, mark done), as the
window does, so the next training round learns from exactly what the annotator left.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

import numpy as np

from labeler.core.annotation import Annotation, Kind, State, as_human
from labeler.core.geometry import annotation_mask, box_iou, encode_mask
from labeler.simulation.cost import COSTS, CostModel, Traced, trace_cost

if TYPE_CHECKING:
    from labeler.core.store import Project

MATCH_IOU = 0.7
"""A box proposal this close to a true box is accepted (the issue's protocol; COCO's strict
threshold is 0.75, PASCAL's 0.5)."""
KEEP_PRECISION = 0.5
"""A mask proposal with at least this share of its pixels on its class is worth accepting and
correcting; below it, rejecting and drawing is what an annotator does."""
UNCOVERED = -1
IGNORED = -2


@dataclass(frozen=True)
class TrueBox:
    category_id: int
    box_xywh: tuple[float, float, float, float]


@dataclass(frozen=True)
class ImageTruth:
    """One image's ground truth: boxes, or a label map of category ids (``UNCOVERED`` where no
    label is, ``IGNORED`` where the truth says "no label": void pixels, not scored, never painted)."""

    width: int
    height: int
    boxes: tuple[TrueBox, ...] = ()
    label_map: np.ndarray | None = None
    ignore_rle: dict[str, Any] | None = None


@dataclass
class ImageWork:
    """The annotator's work on one image: seconds by the cost model, what was done, and the
    changes to make in the store (``accept``/``reject``: annotation ids; ``edit``: proposals
    accepted with a new geometry or class, as human labels; ``add``: labels drawn by hand)."""

    seconds: float = 0.0
    shown: int = 0
    accepted: int = 0
    accepted_unchanged: int = 0
    rejected: int = 0
    class_changes: int = 0
    drawn: int = 0
    traced: Traced = field(default_factory=Traced)
    accept: list[int] = field(default_factory=list)
    reject: list[int] = field(default_factory=list)
    edit: list[Annotation] = field(default_factory=list)
    add: list[Annotation] = field(default_factory=list)


def manual_seconds(truth: ImageTruth, *, costs: CostModel = COSTS) -> float:
    """What drawing the whole image's truth by hand costs."""
    if truth.label_map is None:
        return costs.draw_box * len(truth.boxes)
    total = Traced()
    for category_id in _categories(truth.label_map):
        traced, _ = trace_cost(truth.label_map == category_id, costs=costs)
        total += traced
    return total.seconds


def _categories(label_map: np.ndarray) -> list[int]:
    return [int(v) for v in np.unique(label_map) if v >= 0]


def review_boxes(
    image_id: int, truth: ImageTruth, shown: Sequence[Annotation], *, costs: CostModel = COSTS
) -> ImageWork:
    """Accept, reject and draw boxes on one image (see the module's docstring)."""
    work = ImageWork(shown=len(shown))
    unmatched = list(range(len(truth.boxes)))
    for proposal in sorted(shown, key=lambda a: -(a.score or 0.0)):
        assert proposal.id is not None
        box = proposal.box_xywh
        best, best_iou = None, 0.0
        if box is not None:
            for t in unmatched:
                iou = box_iou(box, truth.boxes[t].box_xywh)
                if iou > best_iou:
                    best, best_iou = t, iou
        work.seconds += costs.verify
        if best is None or best_iou < MATCH_IOU:
            work.rejected += 1
            work.reject.append(proposal.id)
            continue
        unmatched.remove(best)
        work.accepted += 1
        wanted = truth.boxes[best].category_id
        if proposal.category_id != wanted:
            work.seconds += costs.change_class
            work.class_changes += 1
            work.edit.append(as_human(replace(proposal, category_id=wanted)))
        else:
            work.accepted_unchanged += 1
            work.accept.append(proposal.id)
    for t in unmatched:
        work.seconds += costs.draw_box
        work.drawn += 1
        true_box = truth.boxes[t]
        work.add.append(
            Annotation(image_id=image_id, category_id=true_box.category_id, kind=Kind.BOX, box_xywh=true_box.box_xywh)
        )
    return work


def review_masks(
    image_id: int, truth: ImageTruth, shown: Sequence[Annotation], *, costs: CostModel = COSTS
) -> ImageWork:
    """Accept or reject mask proposals, then paint out the errors (see the module's docstring)."""
    assert truth.label_map is not None
    target = truth.label_map
    h, w = target.shape
    work = ImageWork(shown=len(shown))
    painted = np.full((h, w), UNCOVERED, dtype=np.int32)
    kept: list[tuple[Annotation, np.ndarray]] = []
    for proposal in sorted(shown, key=lambda a: a.score or 0.0):  # the best painted last, on top
        assert proposal.id is not None
        mask = annotation_mask(proposal, h, w)
        scored = mask & (target != IGNORED)
        area = int(scored.sum())
        right = int((scored & (target == proposal.category_id)).sum())
        work.seconds += costs.verify
        if area == 0 or right < KEEP_PRECISION * area:
            work.rejected += 1
            work.reject.append(proposal.id)
            continue
        work.accepted += 1
        painted[mask] = proposal.category_id
        kept.append((proposal, mask))
    # what is still wrong, region by region of the class it should be (UNCOVERED: erase)
    wrong = (painted != target) & (target != IGNORED)
    final = painted.copy()
    for value in [int(v) for v in np.unique(target[wrong])]:
        traced, fixed = trace_cost(wrong & (target == value), costs=costs)
        work.traced += traced
        work.seconds += traced.seconds
        final[fixed] = value
    covered: dict[int, np.ndarray] = {}
    for proposal, mask in kept:
        assert proposal.id is not None
        own = mask & (final == proposal.category_id)  # what is left of it after the corrections
        covered[proposal.category_id] = covered.get(proposal.category_id, np.zeros((h, w), bool)) | own
        if np.array_equal(own, mask):
            work.accepted_unchanged += 1
            work.accept.append(proposal.id)
        elif own.any():
            work.edit.append(as_human(replace(proposal, rle=encode_mask(own))))
        else:  # painted over entirely: an edit that leaves nothing is a rejection
            work.reject.append(proposal.id)
    for value in _categories(final):
        added = (final == value) & ~covered.get(value, np.zeros((h, w), bool))
        if added.any():
            work.drawn += 1
            work.add.append(Annotation(image_id=image_id, category_id=value, kind=Kind.MASK, rle=encode_mask(added)))
    return work


def review(image_id: int, truth: ImageTruth, shown: Sequence[Annotation], *, costs: CostModel = COSTS) -> ImageWork:
    """:func:`review_masks` when the truth is a label map, else :func:`review_boxes`."""
    if truth.label_map is not None:
        return review_masks(image_id, truth, shown, costs=costs)
    return review_boxes(image_id, truth, shown, costs=costs)


def apply_work(project: Project, image_id: int, truth: ImageTruth, work: ImageWork) -> None:
    """Store the annotator's work on ``image_id`` and mark it done, in one transaction."""
    with project.transaction():
        for annotation_id in work.accept:
            project.set_state(annotation_id, State.ACCEPTED)
        for annotation_id in work.reject:
            project.set_state(annotation_id, State.REJECTED)
        for ann in work.edit:
            project.update_annotation(ann)
        if work.add:
            project.add_annotations(work.add)
        if truth.ignore_rle is not None:
            project.set_ignore_mask(image_id, truth.ignore_rle)
        project.set_done(image_id, True)
