"""Segmentation by tiles: per-pixel classes stitched without seams, regions as RLE masks.

The contract a segmentation plugin keeps (see :mod:`labeler.learning.probabilities`): its network
gives per-pixel logits ``(1, K + 1, h', w')`` (background first, then the version's classes).
Here each tile's softmax is brought to the tile's size (bilinear, as the segmenter does for an
image processed smaller) and kept only in the tile's **central part**: neighbouring tiles split
their overlap half-and-half, so every pixel is decided by the one tile that sees it farthest from
an edge, and a network whose receptive field is within half the overlap gives exactly what it
gives on the whole image (no seam).

Why bands of tile *columns*: COCO RLE runs go down the columns (column-major), so the runs of a
band the image's height tall and a tile column wide are the image's own runs, shifted by
``x0 * height``. A band at a time (with the next one assembled, for context) holds its class map
(uint8), confidence (float32) and region ids (int32): about 9 bytes a pixel of the band, 140 MB
for a 20,000-pixel-tall image and 768-pixel-wide bands, never the image.

Then, as the segmenter does on a whole image (rules of ``labeler_segmenter.postprocess``): regions
(8-connected, background included) under the plugin's ``min_region`` setting are absorbed by a
neighbour (each band with ``min_region + 2`` columns of its neighbours on each side, so every
small region touching it is seen whole); each connected region of a class is one mask proposal,
score its mean probability; regions cut by a band edge are joined (union-find over the touching
columns, 8-connectivity, same class) and their runs concatenated. Regions under ``min_region``
pixels are dropped. Uncertainty: the mean of ``1 - confidence`` over the image divided by
``1 - 1/(K + 1)``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import cv2
import numpy as np

from labeler.core.annotation import Kind
from labeler.core.geometry import grow_into_gaps
from labeler.learning.api import PluginError, Prediction, Proposal

if TYPE_CHECKING:
    from labeler.core.tiles import TilePyramid
    from labeler.learning.checkpoints import LoadedModel
    from labeler.learning.tiled import TileGrid


def tile_classes(loaded: LoadedModel, outputs: Any, shape: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """``(confidence, labels)`` of one tile of ``shape = (h, w)``: max (float32) and argmax
    (uint8) over the softmax of the network's logits, brought to the tile's size."""
    logits = outputs[0] if isinstance(outputs, (tuple, list)) else outputs
    k = len(loaded.classes) + 1
    dims = tuple(getattr(logits, "shape", ()))
    if len(dims) != 4 or dims[0] != 1 or dims[1] != k:
        raise PluginError(loaded.plugin.name, f"expected (1, {k}, h, w) logits, got {dims}")
    z = np.ascontiguousarray(logits[0].detach().float().cpu().numpy(), dtype=np.float32)
    z -= z.max(axis=0, keepdims=True)
    flat = z.reshape(k, -1)
    cv2.exp(flat, dst=flat)
    z /= z.sum(axis=0, keepdims=True)
    h, w = shape
    confidence = np.empty((h, w), dtype=np.float32)
    labels = np.zeros((h, w), dtype=np.uint8)
    for c in range(k):
        channel = z[c] if z.shape[1:] == (h, w) else cv2.resize(z[c], (w, h), interpolation=cv2.INTER_LINEAR)
        if c == 0:
            confidence[...] = channel
            continue
        np.copyto(labels, np.uint8(c), where=channel > confidence)
        np.maximum(confidence, channel, out=confidence)
    return confidence, labels


def absorb_small(labels: np.ndarray, min_region: int) -> np.ndarray:
    """``labels`` with every 8-connected region (background included) under ``min_region`` pixels
    given to a neighbouring region (the highest class where several touch it), as the segmenter
    does."""
    if min_region <= 1:
        return labels
    small = np.zeros(labels.shape, dtype=bool)
    for k in np.unique(labels).tolist():
        _count, comp, stats, _ = cv2.connectedComponentsWithStats((labels == k).view(np.uint8), connectivity=8)
        tiny = stats[:, cv2.CC_STAT_AREA] < min_region
        tiny[0] = False
        if tiny[1:].any():
            small |= tiny[comp]
    if not small.any() or int(labels.max()) >= 255:
        return labels
    grown = labels + np.uint8(1)
    grown[small] = 0
    grow_into_gaps(grown)
    out = grown - np.uint8(1)
    out[grown == 0] = labels[grown == 0]
    return out


class _Regions:
    """Regions of the bands so far: per region its class, area and confidence sum; their runs in
    image positions (column-major); and which regions join across band edges."""

    def __init__(self, height: int) -> None:
        self.height = height
        self.classes: list[np.ndarray] = []
        self.areas: list[np.ndarray] = []
        self.sums: list[np.ndarray] = []
        self.runs: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
        self.pairs: list[np.ndarray] = []
        self.count = 0
        self.last_column: np.ndarray | None = None
        self.class_of = np.zeros(1, dtype=np.int64)

    def add_band(self, labels: np.ndarray, confidence: np.ndarray, x0: int) -> None:
        ids = np.zeros(labels.shape, dtype=np.int32)
        region_class = [np.zeros(1, dtype=np.int64)]
        offset = self.count
        for k in np.unique(labels).tolist():
            if k == 0:
                continue
            n, comp = cv2.connectedComponents((labels == k).view(np.uint8), connectivity=8, ltype=cv2.CV_32S)
            inside = comp > 0
            ids[inside] = comp[inside] + offset
            region_class.append(np.full(n - 1, k, dtype=np.int64))
            offset += n - 1
        new = offset - self.count
        local = np.where(ids > 0, ids - self.count, 0).reshape(-1)
        self.areas.append(np.bincount(local, minlength=new + 1)[1:])
        self.sums.append(np.bincount(local, weights=confidence.reshape(-1), minlength=new + 1)[1:])
        self.class_of = np.concatenate([self.class_of, *region_class[1:]])
        flat = cv2.transpose(ids).reshape(-1)  # column-major: the image's own run order
        changes = np.flatnonzero(flat[1:] != flat[:-1]) + 1
        starts = np.concatenate(([0], changes))
        ends = np.concatenate((changes, [flat.size]))
        values = flat[starts]
        keep = values > 0
        base = np.int64(x0) * self.height
        self.runs.append((starts[keep] + base, ends[keep] + base, values[keep].astype(np.int64)))
        first = ids[:, 0]
        if self.last_column is not None:
            self._join(self.last_column, first)
        self.last_column = ids[:, -1].copy()
        self.count = offset

    def _join(self, left: np.ndarray, right: np.ndarray) -> None:
        h = self.height
        for dr in (-1, 0, 1):
            a = left[max(0, -dr) : h - max(0, dr)]
            b = right[max(0, dr) : h - max(0, -dr)]
            both = (a > 0) & (b > 0)
            a, b = a[both].astype(np.int64), b[both].astype(np.int64)
            same = self.class_of[a] == self.class_of[b]
            if same.any():
                self.pairs.append(np.unique(np.stack([a[same], b[same]], axis=1), axis=0))

    def roots(self) -> np.ndarray:
        parent = np.arange(self.count + 1, dtype=np.int64)

        def find(i: int) -> int:
            while parent[i] != i:
                parent[i] = parent[parent[i]]
                i = int(parent[i])
            return i

        for pairs in self.pairs:
            for a, b in pairs.tolist():
                ra, rb = find(a), find(b)
                if ra != rb:
                    parent[max(ra, rb)] = min(ra, rb)
        return np.asarray([find(i) for i in range(self.count + 1)], dtype=np.int64)

    def proposals(self, loaded: LoadedModel, width: int, min_region: int) -> list[Proposal]:
        from pycocotools import mask as mask_utils

        if self.count == 0:
            return []
        root = self.roots()
        areas = np.bincount(root[1:], weights=np.concatenate(self.areas), minlength=self.count + 1)
        sums = np.bincount(root[1:], weights=np.concatenate(self.sums), minlength=self.count + 1)
        starts = np.concatenate([r[0] for r in self.runs])
        ends = np.concatenate([r[1] for r in self.runs])
        owner = root[np.concatenate([r[2] for r in self.runs])]
        order = np.argsort(owner, kind="stable")  # by region, in image order within (bands go left to right)
        starts, ends, owner = starts[order], ends[order], owner[order]
        total = self.height * width
        size = [int(self.height), int(width)]
        out: list[Proposal] = []
        bounds = np.flatnonzero(np.concatenate(([True], owner[1:] != owner[:-1], [True])))
        for g0, g1 in zip(bounds[:-1].tolist(), bounds[1:].tolist(), strict=True):
            region = int(owner[g0])
            if areas[region] < max(1, min_region):
                continue
            s, e = starts[g0:g1], ends[g0:g1]
            touching = np.flatnonzero(s[1:] == e[:-1]) + 1  # a run continued across a band edge
            if touching.size:
                fresh = np.ones(s.size, dtype=bool)
                fresh[touching] = False
                last = np.ones(s.size, dtype=bool)
                last[touching - 1] = False
                s, e = s[fresh], e[last]
            pairs = np.empty(2 * s.size, dtype=np.int64)
            pairs[0::2] = s - np.concatenate(([0], e[:-1]))
            pairs[1::2] = e - s
            counts = pairs.tolist()
            if total - int(e[-1]):
                counts.append(total - int(e[-1]))
            encoded = mask_utils.frPyObjects({"size": size, "counts": counts}, size[0], size[1])
            category = loaded.classes[int(self.class_of[region]) - 1].id
            out.append(
                Proposal(
                    category_id=category,
                    kind=Kind.MASK,
                    score=min(1.0, max(0.0, float(sums[region] / areas[region]))),
                    rle={"size": size, "counts": encoded["counts"].decode("ascii")},
                )
            )
        return out


def segment_tiled(
    loaded: LoadedModel, reader: TilePyramid, grid: TileGrid, *, batch: int, step: Callable[[int, int], None]
) -> Prediction:
    """Mask proposals of a segmentation version on the image ``reader`` reads, by the tiles of
    ``grid`` (see the module docstring); ``step(done, total)`` after each batch of tiles."""
    from labeler.learning.tiled import _read_ahead, central_bounds, tile_outputs, tiles_column_major

    width, height = grid.width, grid.height
    min_region = int(loaded.settings.get("min_region", 0))
    margin = max(0, min_region) + 2
    col_bounds = central_bounds(grid.xs, grid.side, width)
    row_bounds = central_bounds(grid.ys, grid.side, height)
    rows = len(grid.ys)
    regions = _Regions(height)
    bands: list[tuple[int, np.ndarray, np.ndarray]] = []  # (x0, labels, confidence): at most two
    doubt = 0.0
    k = len(loaded.classes) + 1

    def finish(index: int) -> None:
        nonlocal doubt
        x0, labels, confidence = bands[index]
        parts, left = [labels], 0
        if index > 0:
            parts.insert(0, bands[index - 1][1][:, -margin:])
            left = parts[0].shape[1]
        if index + 1 < len(bands):
            parts.append(bands[index + 1][1][:, :margin])
        window = absorb_small(np.ascontiguousarray(np.concatenate(parts, axis=1)), min_region)
        labels = window[:, left : left + labels.shape[1]]
        regions.add_band(np.ascontiguousarray(labels), confidence, x0)
        doubt += float((1.0 - confidence).sum(dtype=np.float64))

    rects = tiles_column_major(grid)
    done = 0
    step(0, len(rects))
    band_labels = band_conf = None
    for group in _read_ahead(reader, rects, batch):
        outputs = tile_outputs(loaded, [pixels for _, pixels in group])
        for (rect, pixels), out in zip(group, outputs, strict=True):
            col, row = divmod(done, rows)
            done += 1
            (cx0, cx1), (cy0, cy1) = col_bounds[col], row_bounds[row]
            if row == 0:
                band_labels = np.zeros((height, cx1 - cx0), dtype=np.uint8)
                band_conf = np.zeros((height, cx1 - cx0), dtype=np.float32)
            assert band_labels is not None and band_conf is not None
            confidence, labels = tile_classes(loaded, out, pixels.shape[:2])
            x, y = rect[0], rect[1]
            band_labels[cy0:cy1] = labels[cy0 - y : cy1 - y, cx0 - x : cx1 - x]
            band_conf[cy0:cy1] = confidence[cy0 - y : cy1 - y, cx0 - x : cx1 - x]
            if row == rows - 1:  # a band is complete: the one before it can be finished now
                bands.append((cx0, band_labels, band_conf))
                if len(bands) >= 2:
                    finish(len(bands) - 2)
                if len(bands) == 3:
                    bands.pop(0)
        step(done, len(rects))
    if bands:
        finish(len(bands) - 1)
    bands.clear()
    proposals = regions.proposals(loaded, width, min_region)
    mean_doubt = doubt / max(1, width * height)
    uncertainty = mean_doubt / (1.0 - 1.0 / k) if k > 1 else 0.0
    return Prediction(proposals=tuple(proposals), uncertainty=float(min(1.0, max(0.0, uncertainty))))
