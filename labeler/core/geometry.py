"""Geometry of annotations: boxes, polygons, masks and COCO RLE.

Boxes are ``(x, y, w, h)`` in pixels with a top-left origin. Masks in memory are ``(h, w)`` bool
arrays; at rest they are compressed COCO RLE dicts with ``counts`` as ``str``. RLE work goes
through pycocotools, rasterising through OpenCV.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import replace
from typing import Any

import cv2
import numpy as np
from pycocotools import mask as mask_utils

from labeler.core.annotation import Annotation, Kind
from labeler.core.images import max_pixels_limit

Rle = dict[str, Any]


def encode_mask(mask: np.ndarray) -> Rle:
    """Compressed COCO RLE of a ``(h, w)`` boolean mask; ``counts`` is a ``str``."""
    if mask.ndim != 2:
        raise ValueError(f"a mask is 2-D, got shape {mask.shape}")
    rle = mask_utils.encode(_column_major_u8(mask))
    return {"size": [int(rle["size"][0]), int(rle["size"][1])], "counts": rle["counts"].decode("ascii")}


def encode_regions(regions: np.ndarray, count: int) -> list[Rle | None]:
    """Compressed COCO RLE of every region ``1 .. count`` of an ``(h, w)`` integer map of region
    ids (0 = no region), in one pass over the pixels; ``None`` for ids with no pixel.

    Equal to ``encode_mask(regions == r)`` for each ``r``, but the image is walked once rather than
    once per region (a label map with dozens of regions costs what one mask costs).
    """
    if regions.ndim != 2:
        raise ValueError(f"a region map is 2-D, got shape {regions.shape}")
    h, w = regions.shape
    out: list[Rle | None] = [None] * count
    if regions.size == 0 or count == 0:
        return out
    ids = np.ascontiguousarray(regions, dtype=np.int32)
    flat = cv2.transpose(ids).reshape(-1)  # column-major order, as COCO RLE runs
    changes = np.flatnonzero(flat[1:] != flat[:-1]) + 1
    starts = np.concatenate(([0], changes))
    ends = np.concatenate((changes, [flat.size]))
    values = flat[starts]
    keep = (values > 0) & (values <= count)
    starts, ends, values = starts[keep], ends[keep], values[keep]
    order = np.argsort(values, kind="stable")  # runs grouped by region, in pixel order within
    starts, ends, values = starts[order], ends[order], values[order]
    first = np.ones(values.size, dtype=bool)
    first[1:] = values[1:] != values[:-1]
    previous_end = np.concatenate(([0], ends[:-1]))
    previous_end[first] = 0
    # each run contributes (zeros since the region's previous run, ones of this run)
    pairs = np.empty(2 * values.size, dtype=np.int64)
    pairs[0::2] = starts - previous_end
    pairs[1::2] = ends - starts
    group_starts = np.flatnonzero(first)
    group_ends = np.concatenate((group_starts[1:], [values.size]))
    size = [int(h), int(w)]
    for g0, g1 in zip(group_starts.tolist(), group_ends.tolist(), strict=True):
        counts = pairs[2 * g0 : 2 * g1].tolist()
        tail = int(flat.size - ends[g1 - 1])
        if tail:
            counts.append(tail)
        encoded = mask_utils.frPyObjects({"size": size, "counts": counts}, h, w)
        out[int(values[g0]) - 1] = {"size": size, "counts": encoded["counts"].decode("ascii")}
    return out


def _as_pycoco(rle: Rle) -> dict[str, Any]:
    """Any COCO RLE (compressed str/bytes counts, or uncompressed list counts) as pycocotools wants."""
    h, w = (int(v) for v in rle["size"])
    counts = rle["counts"]
    if isinstance(counts, list):
        compressed: dict[str, Any] = mask_utils.frPyObjects({"size": [h, w], "counts": counts}, h, w)
        return compressed
    if isinstance(counts, str):
        counts = counts.encode("ascii")
    return {"size": [h, w], "counts": counts}


def normalize_rle(rle: Rle) -> Rle:
    """Compressed RLE with ``str`` counts from any COCO RLE form."""
    counts = rle["counts"]
    if isinstance(counts, str) and counts.isascii():  # already compressed: only the size is rewritten
        h, w = rle["size"]
        return {"size": [int(h), int(w)], "counts": counts}
    r = _as_pycoco(rle)
    counts = r["counts"]
    return {
        "size": [int(r["size"][0]), int(r["size"][1])],
        "counts": counts.decode("ascii") if isinstance(counts, bytes) else counts,
    }


def decode_rle(rle: Rle) -> np.ndarray:
    """``(h, w)`` bool mask of any COCO RLE (C-contiguous)."""
    decoded = mask_utils.decode(_as_pycoco(rle))  # (h, w) uint8 0/1, column-major
    if decoded.size == 0:
        return np.zeros(decoded.shape, dtype=bool)
    # cv2.transpose is a cache-blocked copy: ~20x faster than numpy's on big masks.
    return cv2.transpose(np.ascontiguousarray(decoded.T)).view(bool)


def _column_major_u8(mask: np.ndarray) -> np.ndarray:
    """``mask`` as a Fortran-ordered uint8 array of 0/1, as pycocotools wants it."""
    binary = mask if mask.dtype == bool else mask.astype(np.uint8) != 0
    u8 = np.ascontiguousarray(binary).view(np.uint8)
    if u8.size == 0:
        return np.asfortranarray(u8)
    return cv2.transpose(u8).T  # a cache-blocked transpose: ~20x faster than numpy's on big masks


def rle_area(rle: Rle) -> float:
    return float(mask_utils.area(_as_pycoco(rle)))


def rle_box(rle: Rle) -> tuple[float, float, float, float]:
    """Tight ``(x, y, w, h)`` box of the mask's pixels (COCO's convention)."""
    x, y, w, h = mask_utils.toBbox(_as_pycoco(rle)).tolist()
    return (float(x), float(y), float(w), float(h))


def polygons_to_mask(polygons: Sequence[np.ndarray], height: int, width: int) -> np.ndarray:
    """Rasterise polygon parts (pixel vertices) into a ``(h, w)`` bool mask, as COCO does."""
    flat = [np.asarray(p, dtype=np.float64).reshape(-1).tolist() for p in polygons]
    flat = [f for f in flat if len(f) >= 6]
    if not flat:
        return np.zeros((height, width), dtype=bool)
    rles = mask_utils.frPyObjects(flat, height, width)
    mask: np.ndarray = mask_utils.decode(mask_utils.merge(rles)).astype(bool)
    return mask


def mask_to_polygons(mask: np.ndarray, *, tolerance: float = 0.5, scale: int = 4) -> list[np.ndarray]:
    """Outer outlines of a ``(h, w)`` bool mask as ``(N, 2)`` polygons in pixel coordinates.

    Unlike tracing pixel centres, the outline follows the pixels' outer edges (to within
    ``1 / (2 * scale)`` px), so rasterising the polygon the COCO way gives the mask back: small
    objects keep their size. The crop around the mask is traced at ``scale`` times the resolution
    and simplified with a Douglas-Peucker ``tolerance`` in pixels. Holes are not kept.
    """
    ys, xs = np.nonzero(mask)
    if len(xs) == 0:
        return []
    x0, y0 = int(xs.min()), int(ys.min())
    crop = np.ascontiguousarray(mask[y0 : int(ys.max()) + 1, x0 : int(xs.max()) + 1], dtype=np.uint8)
    big = cv2.resize(crop, None, fx=scale, fy=scale, interpolation=cv2.INTER_NEAREST)
    contours, _ = cv2.findContours(big, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    parts = []
    for contour in contours:
        if tolerance > 0:
            contour = cv2.approxPolyDP(contour, tolerance * scale, True)
        pts = contour.reshape(-1, 2).astype(np.float64)
        if len(pts) >= 3:
            parts.append((pts + 0.5) / scale + [x0, y0])
    return parts


def polygons_box(polygons: Sequence[np.ndarray]) -> tuple[float, float, float, float]:
    pts = np.concatenate([np.asarray(p, dtype=np.float64).reshape(-1, 2) for p in polygons])
    x0, y0 = pts.min(axis=0)
    x1, y1 = pts.max(axis=0)
    return (float(x0), float(y0), float(x1 - x0), float(y1 - y0))


def polygons_area(polygons: Sequence[np.ndarray]) -> float:
    """Sum of the shoelace areas of the parts, in square pixels."""
    total = 0.0
    for p in polygons:
        p = np.asarray(p, dtype=np.float64).reshape(-1, 2)
        x, y = p[:, 0], p[:, 1]
        total += 0.5 * abs(float(np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1))))
    return total


def as_box(values: Iterable[float]) -> tuple[float, float, float, float]:
    """Four numbers (a list, a numpy row) as a box ``(x, y, w, h)`` of Python floats; ``ValueError``
    when there are not exactly four."""
    x, y, w, h = (float(v) for v in values)
    return (x, y, w, h)


def box_to_mask(box_xywh: Sequence[float], height: int, width: int) -> np.ndarray:
    x, y, w, h = box_xywh
    mask = np.zeros((height, width), dtype=bool)
    x0, y0 = max(0, round(x)), max(0, round(y))
    x1, y1 = min(width, round(x + w)), min(height, round(y + h))
    mask[y0:y1, x0:x1] = True
    return mask


def annotation_box(ann: Annotation) -> tuple[float, float, float, float]:
    """``(x, y, w, h)`` bounding box of any annotation, in pixels."""
    if ann.kind is Kind.BOX:
        assert ann.box_xywh is not None
        return ann.box_xywh
    if ann.kind is Kind.POLYGON:
        assert ann.polygons is not None
        return polygons_box(ann.polygons)
    assert ann.rle is not None
    return rle_box(ann.rle)


def annotation_area(ann: Annotation) -> float:
    """Area in square pixels: box w*h, polygon shoelace area, mask pixel count."""
    if ann.kind is Kind.BOX:
        assert ann.box_xywh is not None
        return float(ann.box_xywh[2] * ann.box_xywh[3])
    if ann.kind is Kind.POLYGON:
        assert ann.polygons is not None
        return polygons_area(ann.polygons)
    assert ann.rle is not None
    return rle_area(ann.rle)


def annotation_mask(ann: Annotation, height: int, width: int) -> np.ndarray:
    """``(h, w)`` bool mask of any annotation (boxes fill their rectangle)."""
    if ann.kind is Kind.BOX:
        assert ann.box_xywh is not None
        return box_to_mask(ann.box_xywh, height, width)
    if ann.kind is Kind.POLYGON:
        assert ann.polygons is not None
        return polygons_to_mask(ann.polygons, height, width)
    assert ann.rle is not None
    mask = decode_rle(ann.rle)
    if mask.shape != (height, width):
        raise ValueError(f"mask is {mask.shape[1]}x{mask.shape[0]}, image is {width}x{height}")
    return mask


def box_iou(a: Sequence[float], b: Sequence[float]) -> float:
    """Intersection over union of two ``(x, y, w, h)`` boxes."""
    ax0, ay0, aw, ah = a
    bx0, by0, bw, bh = b
    iw = max(0.0, min(ax0 + aw, bx0 + bw) - max(ax0, bx0))
    ih = max(0.0, min(ay0 + ah, by0 + bh) - max(ay0, by0))
    inter = iw * ih
    union = aw * ah + bw * bh - inter
    return inter / union if union > 0 else 0.0


def rle_counts(rle: Rle) -> np.ndarray:
    """The run lengths of a COCO RLE (list counts as they are, compressed ``str`` counts decoded
    the way pycocotools' ``rleFrString`` does), as int64."""
    counts = rle["counts"]
    if isinstance(counts, list):
        return np.asarray([int(v) for v in counts], dtype=np.int64)
    if isinstance(counts, bytes):
        counts = counts.decode("ascii")
    if not isinstance(counts, str) or not counts.isascii():
        raise ValueError("RLE counts must be a list of integers or an ASCII string")
    codes = np.frombuffer(counts.encode("ascii"), dtype=np.uint8).astype(np.int64) - 48
    if codes.size and (codes.min() < 0 or codes.max() > 63):
        raise ValueError("RLE counts hold characters outside COCO's alphabet")
    if codes.size >= _VECTOR_FROM:
        runs = _runs_of_codes(codes)
        if runs is not None:
            return runs
    values: list[int] = []
    x, k = 0, 0
    for c in codes.tolist():
        x |= (c & 0x1F) << (5 * k)
        k += 1
        if not c & 0x20:
            if c & 0x10:
                x |= -1 << (5 * k)
            if len(values) > 2:
                x += values[-2]
            values.append(x)
            x, k = 0, 0
        elif k > 12:
            raise ValueError("RLE counts hold a number too large")
    if k:
        raise ValueError("RLE counts end in the middle of a number")
    return np.asarray(values, dtype=np.int64)


_VECTOR_FROM = 48
"""Counts strings this long or longer are decoded with numpy (below, Python's loop is quicker)."""


def _runs_of_codes(codes: np.ndarray) -> np.ndarray | None:
    """The runs of COCO's compressed counts, given as character codes ``0..63``, decoded with
    numpy; ``None`` (decode it the slow, exact way) when a number is longer than 7 characters
    (35 bits, over 17 billion: more than any mask has pixels) or the string is absurdly long,
    where int64 could overflow. The rules are :func:`rle_counts`'s."""
    ends = np.flatnonzero((codes & 0x20) == 0)  # the last character of each number
    if ends.size == 0 or ends[-1] != codes.size - 1:
        raise ValueError("RLE counts end in the middle of a number")
    starts = np.empty_like(ends)
    starts[0] = 0
    starts[1:] = ends[:-1] + 1
    lengths = ends - starts + 1
    if int(lengths.max()) > 13:
        raise ValueError("RLE counts hold a number too large")
    if int(lengths.max()) > 7 or codes.size > 1 << 27:
        return None
    position = np.arange(codes.size) - np.repeat(starts, lengths)
    raw = np.bitwise_or.reduceat((codes & 0x1F) << (5 * position), starts)
    negative = (codes[ends] & 0x10) != 0
    raw[negative] |= np.left_shift(-1, 5 * lengths[negative])
    # each number from the fourth on is a difference from the one two places before it
    values = raw.copy()
    values[1::2] = np.cumsum(raw[1::2])
    values[2::2] = np.cumsum(raw[2::2])
    return values


def _is_whole(value: Any) -> bool:
    return type(value) is int or (isinstance(value, (int, np.integer)) and not isinstance(value, bool))


class _RecentChecks:
    """The last ``size`` keys added (up to twice as many) in two generations: when the new one is
    full it becomes the old one and the older is dropped whole, which costs less than evicting
    keys one by one and never drops the keys just added (emptying it all at once dropped the masks
    of a batch checked ahead before the writer and the store came to check them)."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._new: dict[tuple[int, int, str], None] = {}
        self._old: dict[tuple[int, int, str], None] = {}

    def __contains__(self, key: tuple[int, int, str]) -> bool:
        return key in self._new or key in self._old

    def add(self, key: tuple[int, int, str]) -> None:
        if len(self._new) >= self.size:
            self._old, self._new = self._new, {}
        self._new[key] = None

    def add_many(self, keys: Sequence[tuple[int, int, str]]) -> None:
        if len(self._new) + len(keys) > self.size:
            self._old, self._new = self._new, {}
        self._new.update(dict.fromkeys(keys))

    def clear(self) -> None:
        self._new.clear()
        self._old.clear()


_CHECKED = _RecentChecks(20_000)
"""Recently checked ``(h, w, counts)`` of whole RLEs: a mask passes several doors on its way in
(the format's reader, the import's writer, the store), and the check is a pure function of these.
Each entry holds a reference to a counts string its caller holds anyway."""


def remember_checked(h: int, w: int, counts: str) -> None:
    """Note that the compressed RLE ``counts`` of an ``h x w`` mask was found whole."""
    _CHECKED.add((h, w, counts))


def remember_checked_many(keys: Sequence[tuple[int, int, str]]) -> None:
    """:func:`remember_checked` of each ``(h, w, counts)``."""
    _CHECKED.add_many(keys)


def check_rle(rle: Any, *, max_pixels: int) -> Rle:
    """``rle`` as compressed RLE once it is known to be whole: a ``size`` of two positive integers
    within ``max_pixels``, and non-negative runs that sum to ``h * w``. ``ValueError`` otherwise."""
    if not isinstance(rle, dict) or "size" not in rle or "counts" not in rle:
        raise ValueError("a mask needs a COCO RLE {'size': [h, w], 'counts': ...}")
    size = rle["size"]
    if not (isinstance(size, (list, tuple)) and len(size) == 2 and _is_whole(size[0]) and _is_whole(size[1])):
        raise ValueError("an RLE size must be two integers [h, w]")
    h, w = int(size[0]), int(size[1])
    if h <= 0 or w <= 0 or h * w > max_pixels:
        raise ValueError(f"an RLE size of {h} x {w} is not a usable mask size")
    text = rle["counts"]
    key = (h, w, text) if isinstance(text, str) else None
    if key is not None and key in _CHECKED:
        return {"size": [h, w], "counts": text}
    counts = rle_counts(rle)
    if counts.size and counts.min() < 0:
        raise ValueError("an RLE has negative run lengths")
    if int(counts.sum()) != h * w:
        raise ValueError(f"the RLE's runs cover {int(counts.sum())} pixels, not {h} x {w}")
    if key is None:
        return normalize_rle({"size": [h, w], "counts": text})
    remember_checked(h, w, text)
    return {"size": [h, w], "counts": text}  # what normalize_rle makes of str counts


def checked_annotation(
    ann: Annotation, width: int | None, height: int | None, *, max_pixels: int | None = None
) -> Annotation | None:
    """``ann`` with its geometry made safe for an image of ``width`` x ``height`` pixels (``None``:
    unknown, then only finiteness and magnitude are checked): finite numbers, boxes and polygon
    vertices clipped to the image, masks of the image's size. ``None`` when nothing of it lies on
    the image; ``ValueError`` for geometry no export could write (non-finite, wrong mask size).
    ``max_pixels`` is the largest mask (:func:`~labeler.core.images.max_pixels_limit` if ``None``;
    a caller checking many reads it once)."""
    limit = 1e7  # pixels: no image is this large; beyond it a coordinate is poison, not a label
    if ann.kind is Kind.BOX:
        assert ann.box_xywh is not None
        box = np.asarray(ann.box_xywh, dtype=np.float64)
        if not np.isfinite(box).all() or np.abs(box).max() > limit:
            raise ValueError("a box has non-finite or absurd coordinates")
        x0, y0, x1, y1 = box[0], box[1], box[0] + box[2], box[1] + box[3]
        if width is not None and height is not None:
            x0, x1 = min(max(x0, 0.0), width), min(max(x1, 0.0), width)
            y0, y1 = min(max(y0, 0.0), height), min(max(y1, 0.0), height)
        degenerate = box[2] <= 0 or box[3] <= 0  # drawn so (a canvas edge): kept where it touches the image
        if (
            x1 < x0
            or y1 < y0
            or (not degenerate and (x1 <= x0 or y1 <= y0))
            or (
                degenerate
                and width is not None
                and height is not None
                and not (0 <= box[0] <= width and 0 <= box[1] <= height)
            )
        ):
            return None
        clipped = (float(x0), float(y0), float(x1 - x0), float(y1 - y0))
        return ann if clipped == ann.box_xywh else replace(ann, box_xywh=clipped)
    if ann.kind is Kind.POLYGON:
        assert ann.polygons is not None
        parts = []
        changed = False
        for part in ann.polygons:
            if not np.isfinite(part).all() or np.abs(part).max() > limit:
                raise ValueError("a polygon has non-finite or absurd coordinates")
            if width is not None and height is not None:
                clipped = np.clip(part, 0.0, [float(width), float(height)])
                changed = changed or not np.array_equal(clipped, part)
                part = clipped
            if polygons_area([part]) > 0:
                parts.append(part)
            else:
                changed = True
        if not parts:
            return None
        return replace(ann, polygons=tuple(parts)) if changed else ann
    assert ann.rle is not None
    rle = checked_mask(ann.rle, width, height, max_pixels=max_pixels_limit() if max_pixels is None else max_pixels)
    return ann if rle == ann.rle else replace(ann, rle=rle)


def checked_mask(rle: Any, width: int | None, height: int | None, *, max_pixels: int) -> Rle:
    """A mask's RLE as :func:`checked_annotation` checks it, for a caller holding the RLE alone:
    whole (:func:`check_rle`) and, where the image's ``width`` x ``height`` is known, of that
    size; returned as compressed RLE with ``str`` counts. ``ValueError`` otherwise."""
    checked = check_rle(rle, max_pixels=max_pixels)
    if width is not None and height is not None and checked["size"] != [height, width]:
        raise ValueError(f"a {checked['size'][1]} x {checked['size'][0]} mask on a {width} x {height} image")
    return checked


def grow_into_gaps(labels: np.ndarray) -> None:
    """Fill the zeros of a ``uint8`` label map in place from their known neighbours, one 3 x 3
    dilation at a time (a gap pixel takes the largest label next to it), until no gap is left or
    no known label reaches the remaining ones. How small regions are absorbed into their
    surroundings, on a whole image (the segmenter) and band by band (tiled auto-label)."""
    kernel = np.ones((3, 3), np.uint8)
    while True:
        gaps = labels == 0
        if not gaps.any():
            return
        spread = cv2.dilate(labels, kernel)
        if not spread[gaps].any():
            return  # nothing known anywhere near the gaps
        np.copyto(labels, spread, where=gaps)
