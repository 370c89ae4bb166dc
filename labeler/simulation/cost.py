"""The cost model: seconds of an annotator's actions, one set of figures for both arms.

Each constant is a published figure (change one only for another published figure, and say so):

- :attr:`CostModel.draw_box` 7.0 s: a box drawn by extreme clicking (Papadopoulos, Uijlings,
  Keller, Ferrari, "Extreme clicking for efficient object annotation", ICCV 2017: 7.0 s per box,
  against 34.5 s for the classic drag-and-adjust protocol);
- :attr:`CostModel.verify` 1.6 s: a yes/no verification of a proposed label (Papadopoulos,
  Uijlings, Keller, Ferrari, "We don't need no bounding-boxes", CVPR 2016: 1.6 s per box
  verification); accepting and rejecting a proposal both cost one;
- :attr:`CostModel.change_class` 1.0 s: picking another class for an accepted proposal (one key
  press or one click in the class list after the verification);
- :attr:`CostModel.trace_region` 2.0 s plus :attr:`CostModel.trace_vertex` 1.0 s per vertex: a
  region traced as a polygon (drawn by hand, or an error region painted out with the brush or
  the eraser), its outline (outer boundary and holes) simplified at
  :attr:`CostModel.simplify_px` = 1.5 px with ``cv2.approxPolyDP``: clicking polygon vertices
  at about one a second, plus the time to find the region and close it. For scale: COCO's
  polygons took about 79 s per object (Lin et al., "Microsoft COCO", ECCV 2014). A membrane
  network, with hundreds of cells as holes, costs accordingly.
- Error regions under :attr:`CostModel.min_region` = 20 pixels are left as a careful annotator
  would leave them: they cost nothing and are counted.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np


@dataclass(frozen=True)
class CostModel:
    """Seconds per action (see the module's docstring for the sources)."""

    draw_box: float = 7.0
    verify: float = 1.6
    change_class: float = 1.0
    trace_region: float = 2.0
    trace_vertex: float = 1.0
    simplify_px: float = 1.5
    min_region: int = 20


COSTS = CostModel()


def outline_vertices(region: np.ndarray, *, epsilon: float = COSTS.simplify_px) -> int:
    """Vertices of the outline of a binary ``region`` (every outer boundary and every hole),
    each contour simplified at ``epsilon`` pixels (``cv2.approxPolyDP``, closed)."""
    mask = np.ascontiguousarray(region, dtype=np.uint8)
    if not mask.any():
        return 0
    contours, _ = cv2.findContours(mask, cv2.RETR_CCOMP, cv2.CHAIN_APPROX_NONE)
    total = 0
    for contour in contours:
        simplified = cv2.approxPolyDP(contour, epsilon, True)
        total += max(len(simplified), 1)
    return total


@dataclass(frozen=True)
class Traced:
    """The regions of one binary mask an annotator traces: how many, their vertices, and the
    seconds; plus the regions too small to bother with (``left``, with their pixels)."""

    regions: int = 0
    vertices: int = 0
    seconds: float = 0.0
    left: int = 0
    left_pixels: int = 0

    def __add__(self, other: Traced) -> Traced:
        return Traced(
            self.regions + other.regions,
            self.vertices + other.vertices,
            self.seconds + other.seconds,
            self.left + other.left,
            self.left_pixels + other.left_pixels,
        )


def trace_cost(mask: np.ndarray, *, costs: CostModel = COSTS, leave_small: bool = True) -> tuple[Traced, np.ndarray]:
    """What tracing every connected region (8-connected) of ``mask`` costs.

    With ``leave_small``, regions under ``costs.min_region`` pixels are left (counted, no cost);
    the second result is the mask of the regions traced. Without it every region is traced (what
    drawing a whole label by hand takes: a user draws every object, however small)."""
    mask = np.ascontiguousarray(mask, dtype=np.uint8)
    traced_mask = np.zeros(mask.shape, dtype=bool)
    if not mask.any():
        return Traced(), traced_mask
    count, labels, stats, _ = cv2.connectedComponentsWithStats(mask, connectivity=8)
    total = Traced()
    for r in range(1, count):
        area = int(stats[r, cv2.CC_STAT_AREA])
        if leave_small and area < costs.min_region:
            total += Traced(left=1, left_pixels=area)
            continue
        x, y, w, h = (
            int(stats[r, k]) for k in (cv2.CC_STAT_LEFT, cv2.CC_STAT_TOP, cv2.CC_STAT_WIDTH, cv2.CC_STAT_HEIGHT)
        )
        # one pixel of margin so a region touching the crop edge keeps its outline
        crop = np.zeros((h + 2, w + 2), dtype=np.uint8)
        crop[1:-1, 1:-1] = labels[y : y + h, x : x + w] == r
        vertices = outline_vertices(crop, epsilon=costs.simplify_px)
        traced_mask[y : y + h, x : x + w] |= crop[1:-1, 1:-1].astype(bool)
        total += Traced(regions=1, vertices=vertices, seconds=costs.trace_region + costs.trace_vertex * vertices)
    return total, traced_mask
