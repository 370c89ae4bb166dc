"""Edge-snapping outlines: the path between two clicked points that follows image edges
(``cv2.segmentation.IntelligentScissorsMB``), computed on a window around the two points only."""

from __future__ import annotations

import cv2
import numpy as np

from labeler.assist.window import PixelSource, Window, read_window

#: Margin around the two points, in image pixels, and the largest working side.
SNAP_MARGIN = 24
SNAP_SIDE = 512


def snap_path(source: PixelSource, start: tuple[float, float], end: tuple[float, float]) -> np.ndarray:
    """The ``(N, 2)`` float image-pixel path from ``start`` to ``end`` (both included) along the
    strongest edges between them; a straight segment when the points coincide."""
    width, height = source.size
    (sx, sy), (ex, ey) = start, end
    x0 = max(0, int(np.floor(min(sx, ex))) - SNAP_MARGIN)
    y0 = max(0, int(np.floor(min(sy, ey))) - SNAP_MARGIN)
    x1 = min(width, int(np.ceil(max(sx, ex))) + SNAP_MARGIN + 1)
    y1 = min(height, int(np.ceil(max(sy, ey))) + SNAP_MARGIN + 1)
    if x1 <= x0 or y1 <= y0:
        raise ValueError(f"points {start} and {end} lie outside the {width} x {height} image")
    window = Window(x0, y0, x1, y1, min(1.0, SNAP_SIDE / max(x1 - x0, y1 - y0)))
    image = read_window(source, window)
    h, w = image.shape[:2]

    def to_work(p: tuple[float, float]) -> tuple[int, int]:
        x, y = window.to_work(*p)
        return int(np.clip(x, 0, w - 1)), int(np.clip(y, 0, h - 1))

    a, b = to_work(start), to_work(end)
    if a == b:
        return np.array([start, end], dtype=np.float64)
    tool = cv2.segmentation.IntelligentScissorsMB()
    tool.setEdgeFeatureCannyParameters(32, 100)
    tool.setGradientMagnitudeMaxLimit(200)
    tool.applyImage(image)
    tool.buildMap(a)
    contour = tool.getContour(b).reshape(-1, 2).astype(np.float64)
    if contour.shape[0] == 0:
        return np.array([start, end], dtype=np.float64)
    if tuple(contour[0].astype(int)) != a:  # OpenCV returns target-first by default in some builds
        contour = contour[::-1]
    kx, ky = window.width / w, window.height / h
    path = np.column_stack([x0 + (contour[:, 0] + 0.5) * kx, y0 + (contour[:, 1] + 0.5) * ky])
    path[0], path[-1] = start, end
    return path


def simplify(path: np.ndarray, tolerance: float = 1.0) -> np.ndarray:
    """Douglas-Peucker simplification of an open ``(N, 2)`` path (ends kept)."""
    if len(path) <= 2:
        return path
    out = cv2.approxPolyDP(path.astype(np.float32).reshape(-1, 1, 2), float(tolerance), False)
    return out.reshape(-1, 2).astype(np.float64)
