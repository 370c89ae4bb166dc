"""The clicks-to-IoU protocol of interactive segmentation (how ``bench_assist`` and the tests
play the annotator): each correction click lands on the point farthest from the boundary of the
largest error region, positive where the mask misses the object, negative where it spills over.
"""

from __future__ import annotations

import cv2
import numpy as np

from labeler.assist.grabcut import Click


def iou(a: np.ndarray, b: np.ndarray) -> float:
    """Intersection over union of two bool masks of one shape (1.0 when both are empty)."""
    union = int(np.count_nonzero(a | b))
    return 1.0 if union == 0 else int(np.count_nonzero(a & b)) / union


def next_click(predicted: np.ndarray, truth: np.ndarray, *, offset: tuple[int, int] = (0, 0)) -> Click | None:
    """The next correction click for ``predicted`` against ``truth`` (bool masks of one shape,
    covering the image from pixel ``offset = (x0, y0)``), at a pixel centre, or ``None`` when they
    agree. The image's edge counts as a boundary of the error region."""
    best: tuple[int, int, int, bool] | None = None  # (area, row, col, positive)
    for positive, error in ((True, truth & ~predicted), (False, predicted & ~truth)):
        if not error.any():
            continue
        _count, labels, stats, _ = cv2.connectedComponentsWithStats(error.astype(np.uint8), connectivity=8)
        largest = 1 + int(np.argmax(stats[1:, cv2.CC_STAT_AREA]))
        area = int(stats[largest, cv2.CC_STAT_AREA])
        if best is None or area > best[0]:
            region = np.pad(labels == largest, 1).astype(np.uint8)
            distance = cv2.distanceTransform(region, cv2.DIST_L2, 5)[1:-1, 1:-1]
            peak = np.unravel_index(int(np.argmax(distance)), distance.shape)
            best = (area, int(peak[0]), int(peak[1]), positive)
    if best is None:
        return None
    _, row, col, positive = best
    return Click(x=offset[0] + col + 0.5, y=offset[1] + row + 0.5, positive=positive)


def clicks_to_reach(ious: list[float], threshold: float, *, max_clicks: int) -> int:
    """NoC: correction clicks after the box until the IoU reaches ``threshold`` (``ious[0]`` is
    the box's own); ``max_clicks`` when it never does."""
    for k, value in enumerate(ious[: max_clicks + 1]):
        if value >= threshold:
            return k
    return max_clicks
