"""The detector's grid: input sizes, box encoding per cell and anchor, and training targets.

Conventions (numpy only, no torch):

- a *pixel box* is ``(x, y, w, h)``: top-left corner, width, height, in pixels with pixel-edge
  coordinates (an image of width ``W`` spans ``[0, W]``), as everywhere in labeler;
- the network sees the image scaled to :func:`input_shape` (both sides multiples of
  :data:`STRIDE_MULTIPLE`, keeping the image's aspect ratio up to that rounding); its output is a
  grid of cells of ``stride`` input pixels (one of :data:`STRIDES`), cell ``(i, j)`` (row, column) spanning
  ``[j, j + 1] x [i, i + 1]`` in *cell units* (input pixels divided by the stride);
- each cell carries ``A`` anchors, square prior sizes in cell units (setting ``anchors``). An
  object is assigned to the anchor nearest its size on a log scale (``sqrt(w * h)``);
- the box of a cell and anchor of size ``a`` is encoded as ``tx = cx - (j + 0.5)``,
  ``ty = cy - (i + 0.5)`` (the box centre's offset from the cell centre, in cells),
  ``tw = log(w / a)``, ``th = log(h / a)``; :func:`decode_boxes` inverts :func:`encode_box`.

Class targets: ``0`` is "no object", ``1 + k`` the model's class ``k``, :data:`IGNORE` excluded from
the loss. An object is the target of the cells of its anchor whose centres lie inside the box
and within ``center_radius`` cells of its centre (always including the cell holding its centre);
the other cells of its anchor whose centres lie inside it are ignored (they see part of the object
and need not call it "no object"). Where objects compete for a cell, the smaller one wins, and
every object keeps the cell of its centre unless a smaller object's centre is there too.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

STRIDES = (8, 16)
"""The grid strides the network offers: input pixels per grid cell (setting ``stride``)."""
STRIDE_MULTIPLE = 32
"""Input sides are multiples of this (the backbone's deepest stage is at 1/32)."""
IGNORE = -1
"""Class target of a cell and anchor left out of the loss."""


def parse_anchors(text: str | Sequence[float]) -> tuple[float, ...]:
    """``"3,8,20"`` (or numbers) to positive anchor sizes in cells, sorted."""
    if isinstance(text, str):
        try:
            values = [float(v) for v in text.replace(" ", "").split(",") if v]
        except ValueError:
            raise ValueError(f"anchors takes comma-separated sizes in cells, e.g. 3,8,20, not {text!r}") from None
    else:
        values = [float(v) for v in text]
    if not values or any(not math.isfinite(v) or v <= 0 for v in values):
        raise ValueError(f"anchors must be one or more positive sizes in cells, not {text!r}")
    return tuple(sorted(values))


def input_shape(height: int, width: int, input_size: int) -> tuple[int, int]:
    """``(h, w)`` of the network input for an image of ``height`` x ``width``: its long side
    scaled to ``input_size`` (``0``: the image's own size), both sides rounded to the nearest
    multiple of :data:`STRIDE_MULTIPLE` (at least one)."""
    if height < 1 or width < 1:
        raise ValueError(f"image size must be positive, got {width} x {height}")
    scale = 1.0 if input_size <= 0 else input_size / max(height, width)
    m = STRIDE_MULTIPLE

    def side(v: int) -> int:
        return max(m, round(v * scale / m) * m)

    return side(height), side(width)


def input_scale(height: int, width: int, input_size: int) -> float:
    """Input pixels per image pixel (the long side's; the short side's differs by the rounding)."""
    return 1.0 if input_size <= 0 else input_size / max(height, width)


def anchor_of(w: float, h: float, anchors: Sequence[float]) -> int:
    """Index of the anchor nearest a ``w`` x ``h`` box (cell units) on a log scale."""
    size = math.sqrt(max(w, 1e-6) * max(h, 1e-6))
    return int(np.argmin([abs(math.log(size / a)) for a in anchors]))


def encode_box(box_cells: Sequence[float] | np.ndarray, row: int, col: int, anchor: float) -> np.ndarray:
    """``(tx, ty, tw, th)`` of an ``(x, y, w, h)`` box in cell units, for cell ``(row, col)`` and
    an anchor of size ``anchor`` (see the module docstring)."""
    x, y, w, h = (float(v) for v in box_cells)
    return np.array(
        [
            x + w / 2 - (col + 0.5),
            y + h / 2 - (row + 0.5),
            math.log(max(w, 1e-6) / anchor),
            math.log(max(h, 1e-6) / anchor),
        ],
        dtype=np.float32,
    )


def decode_boxes(encoded: np.ndarray, anchors: Sequence[float]) -> np.ndarray:
    """``(A, 4, gh, gw)`` encoded boxes to ``(A, gh, gw, 4)`` ``(x, y, w, h)`` boxes in cell units.

    The log sizes are clipped to +-8 so that an untrained network cannot overflow."""
    encoded = np.asarray(encoded, dtype=np.float32)
    a, four, gh, gw = encoded.shape
    if four != 4 or a != len(anchors):
        raise ValueError(f"expected ({len(anchors)}, 4, h, w) encoded boxes, got {encoded.shape}")
    cols = np.arange(gw, dtype=np.float32)[None, None, :] + 0.5
    rows = np.arange(gh, dtype=np.float32)[None, :, None] + 0.5
    size = np.asarray(anchors, dtype=np.float32)[:, None, None]
    cx = encoded[:, 0] + cols
    cy = encoded[:, 1] + rows
    w = np.exp(np.clip(encoded[:, 2], -8.0, 8.0)) * size
    h = np.exp(np.clip(encoded[:, 3], -8.0, 8.0)) * size
    return np.stack([cx - w / 2, cy - h / 2, w, h], axis=-1)


def build_targets(
    boxes: np.ndarray,
    labels: np.ndarray,
    *,
    grid: tuple[int, int],
    anchors: Sequence[float],
    center_radius: float = 1.0,
    ignore_boxes: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Class targets ``(A, gh, gw)`` int64 and box targets ``(A, 4, gh, gw)`` float32.

    ``boxes`` ``(N, 4)`` are ``(x, y, w, h)`` in cell units of a ``grid = (gh, gw)``; ``labels``
    ``(N,)`` their class targets (``1 + class index``). ``ignore_boxes`` ``(M, 4)`` (cell units):
    objects only partly in view, whose cells (on every anchor) are left out of the loss. See the
    module docstring for the assignment.
    """
    gh, gw = grid
    na = len(anchors)
    cls = np.zeros((na, gh, gw), dtype=np.int64)
    target = np.zeros((na, 4, gh, gw), dtype=np.float32)
    owner_area = np.full((na, gh, gw), np.inf)
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    labels = np.asarray(labels, dtype=np.int64).reshape(-1)
    centres = np.arange(gw) + 0.5, np.arange(gh) + 0.5

    def inside(box: np.ndarray) -> tuple[slice, slice]:
        x, y, w, h = box
        c0 = int(np.searchsorted(centres[0], x, side="left"))
        c1 = int(np.searchsorted(centres[0], x + w, side="right"))
        r0 = int(np.searchsorted(centres[1], y, side="left"))
        r1 = int(np.searchsorted(centres[1], y + h, side="right"))
        return slice(r0, r1), slice(c0, c1)

    if ignore_boxes is not None:
        for box in np.asarray(ignore_boxes, dtype=np.float64).reshape(-1, 4):
            rows, cols = inside(box)
            cls[:, rows, cols] = IGNORE
    assigned = [anchor_of(b[2], b[3], anchors) for b in boxes]
    for n in np.argsort(-(boxes[:, 2] * boxes[:, 3]), kind="stable"):  # larger objects first: smaller win
        a = assigned[n]
        x, y, w, h = boxes[n]
        rows, cols = inside(boxes[n])
        region = cls[a, rows, cols]
        region[region == 0] = IGNORE
        cx, cy = x + w / 2, y + h / 2
        r = max(0.5, float(center_radius))
        c0, c1 = max(cols.start, math.floor(cx - r + 0.5)), min(cols.stop, math.floor(cx + r - 0.5) + 1)
        r0, r1 = max(rows.start, math.floor(cy - r + 0.5)), min(rows.stop, math.floor(cy + r - 0.5) + 1)
        area = w * h
        for i in range(r0, r1):
            for j in range(c0, c1):
                if area <= owner_area[a, i, j]:
                    _assign(cls, target, owner_area, a, i, j, boxes[n], labels[n], anchors[a], area)
    # every object keeps the cell of its centre, unless a smaller object's centre is there
    centre_owner = np.full((na, gh, gw), np.inf)
    for n in np.argsort(-(boxes[:, 2] * boxes[:, 3]), kind="stable"):
        a = assigned[n]
        x, y, w, h = boxes[n]
        j = min(max(math.floor(x + w / 2), 0), gw - 1)
        i = min(max(math.floor(y + h / 2), 0), gh - 1)
        area = w * h
        if area <= centre_owner[a, i, j]:
            centre_owner[a, i, j] = area
            _assign(cls, target, owner_area, a, i, j, boxes[n], labels[n], anchors[a], area)
    return cls, target


def _assign(
    cls: np.ndarray,
    target: np.ndarray,
    owner_area: np.ndarray,
    a: int,
    i: int,
    j: int,
    box: np.ndarray,
    label: int,
    anchor: float,
    area: float,
) -> None:
    cls[a, i, j] = label
    target[a, :, i, j] = encode_box(box, i, j, anchor)
    owner_area[a, i, j] = area
