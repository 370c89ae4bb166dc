"""From per-pixel class probabilities to proposals, and the metrics (numpy + OpenCV, no torch)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import cv2
import numpy as np

from labeler.core.annotation import Category, Kind
from labeler.core.geometry import normalize_rle
from labeler.learning.api import Prediction, Proposal

from labeler_segmenter.data import IGNORE


def regions_to_proposals(
    labels: np.ndarray,
    confidence: np.ndarray,
    classes: Sequence[Category],
    *,
    min_region: int,
) -> list[Proposal]:
    """One mask proposal per connected region (8-connectivity) of each foreground class.

    ``labels`` is the ``(h, w)`` argmax map (0 = background, ``k`` = ``classes[k-1]``) and
    ``confidence`` the ``(h, w)`` probability of the chosen class. Regions smaller than
    ``min_region`` pixels are dropped. A proposal's score is the mean of ``confidence`` over its
    region, i.e. the mean probability of its class there.
    """
    proposals: list[Proposal] = []
    shape = labels.shape
    for k, category in enumerate(classes, start=1):
        class_mask = labels == k
        rows = np.flatnonzero(class_mask.any(axis=1))
        if rows.size == 0:
            continue
        cols = np.flatnonzero(class_mask.any(axis=0))
        # connected regions within the class's bounding box only
        y0, y1, x0, x1 = int(rows[0]), int(rows[-1]) + 1, int(cols[0]), int(cols[-1]) + 1
        crop = class_mask[y0:y1, x0:x1].view(np.uint8)
        count, regions, stats, _ = cv2.connectedComponentsWithStats(crop, connectivity=8)
        regions_t = np.ascontiguousarray(regions.T)  # column-major order, as COCO RLE runs
        conf = confidence[y0:y1, x0:x1]
        for r in range(1, count):
            if stats[r, cv2.CC_STAT_AREA] < min_region:
                continue
            x, y, w, h = (int(stats[r, i]) for i in (cv2.CC_STAT_LEFT, cv2.CC_STAT_TOP, cv2.CC_STAT_WIDTH, cv2.CC_STAT_HEIGHT))
            local = regions[y : y + h, x : x + w] == r
            score = float(conf[y : y + h, x : x + w][local].mean())
            columns = np.zeros((w, shape[0]), dtype=bool)
            columns[:, y0 : y1] = regions_t[x : x + w] == r
            proposals.append(
                Proposal(
                    category_id=category.id,
                    kind=Kind.MASK,
                    score=min(1.0, max(0.0, score)),
                    rle=columns_rle(columns, x0 + x, shape),
                )
            )
    return proposals


def columns_rle(columns: np.ndarray, x0: int, shape: tuple[int, int]) -> dict[str, Any]:
    """Compressed COCO RLE of an ``(h, w)`` mask that is empty outside columns ``x0 ..
    x0 + len(columns) - 1``; ``columns`` holds those columns as rows (``(n, h)`` bool, i.e. the
    transposed strip). Cheaper than encoding a full-size mask per region."""
    height, width = shape
    flat = columns.reshape(-1)
    changes = np.flatnonzero(flat[1:] != flat[:-1]) + 1
    bounds = np.concatenate(([0], changes, [flat.size]))
    counts = np.diff(bounds).tolist()
    if flat.size and flat[0]:
        counts.insert(0, 0)
    counts[0] += x0 * height
    after = (width - x0 - columns.shape[0]) * height
    if len(counts) % 2 == 1:  # ends with a run of zeros
        counts[-1] += after
    elif after:
        counts.append(after)
    return normalize_rle({"size": [height, width], "counts": [int(c) for c in counts]})


def prediction_from_labels(
    labels: np.ndarray, confidence: np.ndarray, *, num_outputs: int, classes: Sequence[Category], min_region: int
) -> Prediction:
    """A :class:`Prediction` from the ``(h, w)`` argmax map and its ``(h, w)`` max probability
    at the image's own size, for a softmax over ``num_outputs`` channels.

    ``uncertainty`` is the mean of ``1 - confidence`` divided by its largest possible value
    ``1 - 1/num_outputs`` (so in [0, 1]). ``extra["label_map"]`` keeps the dense uint8 argmax map
    (before small regions are dropped); :func:`evaluate` scores it.
    """
    proposals = regions_to_proposals(labels, confidence, classes, min_region=min_region)
    doubt = 1.0 - float(confidence.mean()) if confidence.size else 0.0
    scaled = doubt / (1.0 - 1.0 / num_outputs) if num_outputs > 1 else 0.0
    return Prediction(
        proposals=tuple(proposals), uncertainty=float(min(1.0, max(0.0, scaled))), extra={"label_map": labels}
    )


def label_map_of(prediction: Prediction, shape: tuple[int, int], classes: Sequence[Category]) -> np.ndarray:
    """The ``(h, w)`` class-index map a prediction stands for: its dense ``label_map`` when it
    has one, else its mask proposals painted in score order (higher score wins)."""
    dense = prediction.extra.get("label_map") if prediction.extra else None
    if dense is not None:
        dense = np.asarray(dense)
        if dense.shape != shape:
            raise ValueError(f"label map is {dense.shape}, image is {shape}")
        return dense
    from labeler.core.geometry import decode_rle

    index = {c.id: k for k, c in enumerate(classes, start=1)}
    out = np.zeros(shape, dtype=np.uint8)
    for p in sorted(prediction.proposals, key=lambda p: p.score):
        if p.kind is Kind.MASK and p.rle is not None and p.category_id in index:
            out[decode_rle(p.rle)] = index[p.category_id]
    return out


def confusion(target: np.ndarray, predicted: np.ndarray, num_outputs: int) -> np.ndarray:
    """``(K, K)`` int64 matrix, rows = true class, columns = predicted; ignored pixels skipped."""
    valid = target != IGNORE
    t = target[valid].astype(np.int64)
    p = np.minimum(predicted[valid].astype(np.int64), num_outputs - 1)
    return np.bincount(t * num_outputs + p, minlength=num_outputs * num_outputs).reshape(num_outputs, num_outputs)


def scores_from_confusion(matrix: np.ndarray, names: Sequence[str]) -> dict[str, float]:
    """``mean_iou``, ``pixel_accuracy`` and ``iou/<name>`` from a confusion matrix.

    IoU of class k = TP / (TP + FP + FN) over all pixels of all images together (not a mean of
    per-image IoUs). ``mean_iou`` averages over the classes that occur in the targets or the
    predictions, background (index 0) included: with a background that is a real class (the
    membrane set's cells) it counts; where every pixel has a foreground class or is ignored
    (CamVid) background only counts if the model wrongly predicts it. Classes that occur nowhere
    are left out (no ``iou/<name>`` either).
    """
    tp = np.diag(matrix).astype(np.float64)
    truth = matrix.sum(axis=1).astype(np.float64)
    predicted = matrix.sum(axis=0).astype(np.float64)
    union = truth + predicted - tp
    out: dict[str, float] = {}
    ious = []
    for k, name in enumerate(names):
        if union[k] > 0:
            iou = float(tp[k] / union[k])
            out[f"iou/{name}"] = iou
            ious.append(iou)
    total = float(matrix.sum())
    out["mean_iou"] = float(np.mean(ious)) if ious else 0.0
    out["pixel_accuracy"] = float(tp.sum() / total) if total > 0 else 0.0
    return out

