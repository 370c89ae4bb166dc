"""Images bigger than the memory budget: run at a reduced size, proposals scaled back.

One image must never cost more than a stated budget. A model's post-processing works at the size
of the image it is given (the segmenter's per-pixel probabilities, region map and masks take
about 15-20 bytes a pixel), so an image of more than :data:`PREDICT_PIXELS` pixels (a 20000 x
20000 JPEG header says 400 MP, i.e. about 7 GB) is decoded as small as will do (JPEG: 1/2, 1/4,
1/8 in the decoder), resized to fit the budget, and predicted there; its proposals are then
scaled to the image's own size without ever materialising a full-size array: boxes and polygons
by multiplication, masks by stretching their run-length encoding (nearest neighbour). Decoding a
non-JPEG image still takes its full size for a moment (3 bytes a pixel).
"""

from __future__ import annotations

import math
from dataclasses import replace
from typing import Any

import numpy as np

from labeler.core.annotation import Kind
from labeler.learning.api import Prediction, Proposal

PREDICT_PIXELS = 25_000_000
"""Most pixels an image is predicted at (a 6000 x 4000 photo is); bigger ones run reduced."""


def work_shape(height: int, width: int, *, budget: int | None = None) -> tuple[int, int]:
    """``(h, w)`` to predict an image of ``height x width`` at: its own size within ``budget``
    pixels (default :data:`PREDICT_PIXELS`), else shrunk evenly to fit it."""
    budget = PREDICT_PIXELS if budget is None else budget
    if height * width <= budget:
        return height, width
    factor = math.sqrt(budget / (height * width))
    return max(1, int(height * factor)), max(1, int(width * factor))


def scale_prediction(prediction: Prediction, *, source: tuple[int, int], target: tuple[int, int]) -> Prediction:
    """``prediction`` made on an image of ``source = (h, w)`` pixels, in pixels of the same image
    at ``target = (H, W)``. Masks are stretched by nearest neighbour (target row ``y`` takes source
    row ``floor(y * h / H)``, as OpenCV's ``INTER_NEAREST``). ``extra["label_map"]`` (a dense map
    at the source size) is dropped."""
    (h, w), (H, W) = source, target
    sx, sy = W / w, H / h
    proposals: list[Proposal] = []
    for p in prediction.proposals:
        kind = Kind(p.kind)
        if kind is Kind.BOX and p.box_xywh is not None:
            x, y, bw, bh = (float(v) for v in p.box_xywh)
            proposals.append(replace(p, box_xywh=(x * sx, y * sy, bw * sx, bh * sy)))
        elif kind is Kind.POLYGON and p.polygons is not None:
            parts = tuple(np.asarray(part, dtype=np.float64).reshape(-1, 2) * [sx, sy] for part in p.polygons)
            proposals.append(replace(p, polygons=parts))
        elif kind is Kind.MASK and p.rle is not None:
            proposals.append(replace(p, rle=upscale_rle(p.rle, H, W)))
        else:
            proposals.append(p)
    extra = {k: v for k, v in prediction.extra.items() if k != "label_map"}
    return Prediction(proposals=tuple(proposals), uncertainty=prediction.uncertainty, extra=extra)


def upscale_rle(rle: dict[str, Any], height: int, width: int) -> dict[str, Any]:
    """A COCO RLE mask stretched to ``height x width`` (nearest neighbour, each side at least as
    big as the mask's), computed from its runs: memory grows with the number of runs in the
    result, never with its pixels."""
    from pycocotools import mask as mask_utils

    from labeler.core.geometry import decode_rle

    mask = decode_rle(rle)
    h, w = mask.shape
    if (h, w) == (height, width):
        return rle
    if height < h or width < w:
        raise ValueError(f"upscale_rle makes masks bigger, not {w}x{h} -> {width}x{height}")
    # transitions down each source column: at row t (0..h) the value changes
    padded = np.zeros((h + 2, w), dtype=np.int8)
    padded[1:-1] = mask
    rows, cols = np.nonzero(np.diff(padded, axis=0))  # (t, j), t in 0..h
    # source row t starts at target row ceil(t * H / h); source column j covers target columns
    # ceil(j * W / w) .. ceil((j + 1) * W / w) - 1
    target_rows = -(-rows.astype(np.int64) * height // h)
    col_start = -(-np.arange(w + 1, dtype=np.int64) * width // w)
    reps = np.diff(col_start)
    per = reps[cols]
    first_col = np.repeat(col_start[cols], per)
    offsets = np.arange(per.sum(), dtype=np.int64) - np.repeat(np.cumsum(per) - per, per)
    positions = (first_col + offsets) * height + np.repeat(target_rows, per)
    # a column ending in the mask and the next starting in it meet at the same position: no change
    positions, counts = np.unique(positions, return_counts=True)
    positions = positions[counts % 2 == 1]
    total = height * width
    bounds = positions.tolist()
    if not bounds or bounds[-1] != total:
        bounds.append(total)
    runs = np.diff(np.asarray([0, *bounds], dtype=np.int64)).tolist()
    encoded = mask_utils.frPyObjects({"size": [height, width], "counts": runs}, height, width)
    return {"size": [height, width], "counts": encoded["counts"].decode("ascii")}
