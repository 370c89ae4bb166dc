"""Taking one region of a mask: the connected part under a click."""

from __future__ import annotations

import cv2
import numpy as np


def region_at(mask: np.ndarray, x: float, y: float) -> np.ndarray | None:
    """The connected region (8-connected) of the ``(h, w)`` bool ``mask`` that holds the pixel
    under the image point ``(x, y)`` (pixels; the pixel ``(i, j)`` covers ``[j, j + 1) x [i, i + 1)``),
    or ``None`` when that pixel is not in the mask or lies outside it.

    Only the bounding rectangle of the mask's pixels is labelled, so a small region of a big
    image costs little.
    """
    h, w = mask.shape
    col, row = int(np.floor(x)), int(np.floor(y))
    if not (0 <= col < w and 0 <= row < h) or not mask[row, col]:
        return None
    rows = np.flatnonzero(mask.any(axis=1))
    cols = np.flatnonzero(mask.any(axis=0))
    r0, r1, c0, c1 = int(rows[0]), int(rows[-1]) + 1, int(cols[0]), int(cols[-1]) + 1
    part = np.ascontiguousarray(mask[r0:r1, c0:c1], dtype=np.uint8)
    _, labels = cv2.connectedComponents(part, connectivity=8)
    out = np.zeros((h, w), dtype=bool)
    out[r0:r1, c0:c1] = labels == labels[row - r0, col - c0]
    return out


def region_count(mask: np.ndarray) -> int:
    """How many connected regions (8-connected) ``mask`` has."""
    if not mask.any():
        return 0
    count, _ = cv2.connectedComponents(np.ascontiguousarray(mask, dtype=np.uint8), connectivity=8)
    return int(count) - 1
