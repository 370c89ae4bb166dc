"""Pure geometry edits the canvas tools make (no Qt): move, clamp, paint and erase.

Pixel conventions as everywhere (:mod:`labeler.core.annotation`): scene / image coordinates are
pixels with the origin at the top-left corner of the top-left pixel, so pixel ``(col, row)`` covers
``[col, col + 1) x [row, row + 1)`` and its centre is at ``(col + 0.5, row + 0.5)``.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import replace

import cv2
import numpy as np

from labeler.core.annotation import Annotation, Kind
from labeler.core.geometry import decode_rle, encode_mask

#: Sub-pixel precision of brush strokes handed to OpenCV (coordinates scaled by ``2**SHIFT``).
SHIFT = 4


def clamp_box(x0: float, y0: float, x1: float, y1: float, width: int, height: int) -> tuple[float, float, float, float]:
    """``(x, y, w, h)`` of the box between two corners (any order), clipped to the image."""
    left, right = sorted((x0, x1))
    top, bottom = sorted((y0, y1))
    left, right = min(max(left, 0.0), width), min(max(right, 0.0), width)
    top, bottom = min(max(top, 0.0), height), min(max(bottom, 0.0), height)
    return (left, top, right - left, bottom - top)


def shift_mask(mask: np.ndarray, dx: int, dy: int) -> np.ndarray:
    """``mask`` moved by whole pixels; what leaves the image is cut off, what comes in is empty."""
    h, w = mask.shape
    out = np.zeros_like(mask)
    if abs(dx) >= w or abs(dy) >= h:
        return out
    src = mask[max(0, -dy) : h - max(0, dy), max(0, -dx) : w - max(0, dx)]
    out[max(0, dy) : max(0, dy) + src.shape[0], max(0, dx) : max(0, dx) + src.shape[1]] = src
    return out


def translate(ann: Annotation, dx: float, dy: float, width: int, height: int) -> Annotation:
    """The annotation moved by ``(dx, dy)`` pixels and kept inside the ``width`` x ``height`` image.

    Boxes and polygons move by the exact amount (clipped to the image); masks move by whole pixels.
    """
    if ann.kind is Kind.BOX:
        assert ann.box_xywh is not None
        x, y, w, h = ann.box_xywh
        nx = min(max(x + dx, 0.0), max(0.0, width - w))
        ny = min(max(y + dy, 0.0), max(0.0, height - h))
        return replace(ann, box_xywh=(nx, ny, w, h))
    if ann.kind is Kind.POLYGON:
        assert ann.polygons is not None
        parts = [np.clip((*p, dx, dy), (0.0, 0.0), (float(width), float(height))) for p in ann.polygons]
        return replace(ann, polygons=tuple(parts))
    assert ann.rle is not None
    mask = decode_rle(ann.rle)
    return replace(ann, rle=encode_mask(shift_mask(mask, round(dx), round(dy))))


def stroke_mask(points: Sequence[tuple[float, float]], diameter: float, height: int, width: int) -> np.ndarray:
    """``(h, w)`` bool mask of a round brush of ``diameter`` pixels dragged through ``points``.

    The brush covers every pixel whose centre lies within ``diameter / 2`` of the stroke (a single
    point paints a disc). At least one pixel is painted for any diameter.
    """
    canvas = np.zeros((height, width), dtype=np.uint8)
    if not points:
        return canvas.astype(bool)
    scale = 1 << SHIFT
    pts = [(round((x - 0.5) * scale), round((y - 0.5) * scale)) for x, y in points]
    radius = max(0, round(diameter / 2.0 * scale))
    thickness = max(1, round(diameter))
    for p in pts:
        cv2.circle(canvas, p, radius, 1, -1, cv2.LINE_8, SHIFT)
    for a, b in itertools.pairwise(pts):
        cv2.line(canvas, a, b, 1, thickness, cv2.LINE_8, SHIFT)
    # The first point alone must still paint the pixel under the cursor.
    col, row = int(np.floor(points[0][0])), int(np.floor(points[0][1]))
    if 0 <= row < height and 0 <= col < width:
        canvas[row, col] = 1
    return canvas.astype(bool)


def stroke_bounds(
    points: Sequence[tuple[float, float]], diameter: float, width: int, height: int
) -> tuple[int, int, int, int]:
    """``(x0, y0, x1, y1)`` pixel bounds (end exclusive, clipped to the image) of a brush stroke."""
    pts = np.asarray(points, dtype=np.float64).reshape(-1, 2)
    r = diameter / 2.0 + 2.0
    x0 = max(0, int(np.floor(pts[:, 0].min() - r)))
    y0 = max(0, int(np.floor(pts[:, 1].min() - r)))
    x1 = min(width, int(np.ceil(pts[:, 0].max() + r)) + 1)
    y1 = min(height, int(np.ceil(pts[:, 1].max() + r)) + 1)
    return x0, y0, x1, y1


def paint_into(mask: np.ndarray, stroke: np.ndarray, *, erase: bool) -> np.ndarray:
    """``mask`` with the stroke's pixels set (brush) or cleared (eraser)."""
    painted: np.ndarray = (mask & ~stroke) if erase else (mask | stroke)
    return painted


def translate_all(anns: Sequence[Annotation], dx: float, dy: float, width: int, height: int) -> list[Annotation]:
    return [translate(a, dx, dy, width, height) for a in anns]
