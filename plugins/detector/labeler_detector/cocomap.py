"""COCO box mAP through pycocotools' ``COCOeval``, overall and per class.

Ground truth and detections are pixel boxes ``(x, y, w, h)`` (top-left corner), as COCO's
``bbox``. AP at one IoU threshold is COCO's: precision interpolated at 101 recall points, all
object sizes, up to ``max_detections`` per image. A class without ground-truth boxes among the
images has no AP and is left out of the means (as COCO does).
"""

from __future__ import annotations

import contextlib
import io
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Box:
    """A labelled or detected box: image, category, ``(x, y, w, h)`` pixels, score (1 for truth)."""

    image_id: int
    category_id: int
    box_xywh: tuple[float, float, float, float]
    score: float = 1.0


def coco_map(
    truth: Sequence[Box],
    detections: Sequence[Box],
    *,
    image_ids: Sequence[int],
    categories: Sequence[tuple[int, str]],
    max_detections: int = 100,
) -> dict[str, float]:
    """``map50`` and ``map`` (mean over IoU 0.50:0.05:0.95) over the classes, and per class
    ``map50/NAME`` and ``map/NAME`` (classes with no ground truth get no per-class keys)."""
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    cat_ids = [int(c) for c, _ in categories]
    names = {int(c): n for c, n in categories}
    gt_doc = {
        "images": [{"id": int(i)} for i in image_ids],
        "categories": [{"id": c} for c in cat_ids],
        "annotations": [
            {
                "id": n + 1,
                "image_id": int(b.image_id),
                "category_id": int(b.category_id),
                "bbox": [float(v) for v in b.box_xywh],
                "area": float(b.box_xywh[2] * b.box_xywh[3]),
                "iscrowd": 0,
            }
            for n, b in enumerate(truth)
        ],
    }
    out: dict[str, float] = {"map50": 0.0, "map": 0.0}
    if not truth:
        return out
    quiet = io.StringIO()
    with contextlib.redirect_stdout(quiet):  # pycocotools prints its progress
        gt = COCO()
        gt.dataset = gt_doc
        gt.createIndex()
        if not detections:
            return out
        dt = gt.loadRes(
            [
                {
                    "image_id": int(d.image_id),
                    "category_id": int(d.category_id),
                    "bbox": [float(v) for v in d.box_xywh],
                    "score": float(d.score),
                }
                for d in detections
            ]
        )
        ev = COCOeval(gt, dt, iouType="bbox")
        ev.params.imgIds = [int(i) for i in image_ids]
        ev.params.catIds = cat_ids
        ev.params.maxDets = [1, 10, max(100, int(max_detections))]
        ev.evaluate()
        ev.accumulate()
    precision = ev.eval["precision"]  # [iou thresholds, recall points, classes, areas, max dets]
    iou_50 = int(np.argmin(np.abs(ev.params.iouThrs - 0.5)))
    per50: list[float] = []
    per_all: list[float] = []
    for k, cat in enumerate(ev.params.catIds):
        p_all = precision[:, :, k, 0, -1]
        if not (p_all > -1).any():
            continue  # no ground truth of this class
        p50 = p_all[iou_50]
        ap50 = float(p50[p50 > -1].mean()) if (p50 > -1).any() else 0.0
        ap = float(p_all[p_all > -1].mean())
        out[f"map50/{names[cat]}"] = ap50
        out[f"map/{names[cat]}"] = ap
        per50.append(ap50)
        per_all.append(ap)
    out["map50"] = float(np.mean(per50)) if per50 else 0.0
    out["map"] = float(np.mean(per_all)) if per_all else 0.0
    return out
