"""Pixels and targets for the segmenter (numpy + OpenCV, no torch).

Conventions:
- images are ``(h, w, 3)`` uint8 RGB; network inputs are ``(3, h, w)`` float32, normalised by
  :func:`normalise`;
- a target is an ``(h, w)`` uint8 array of class indices: 0 = background, ``k`` = ``classes[k-1]``,
  :data:`IGNORE` = excluded from loss and metrics;
- the *working scale* (:func:`working_scale`) is the factor by which an image is resized before
  the network sees it, for training and inference alike.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, replace

import cv2
import numpy as np

from labeler.core.annotation import Annotation, Category, Kind
from labeler.core.geometry import annotation_mask

IGNORE = 255
"""Target value of pixels that count for nothing (no label, or a class the model does not know)."""
MAX_CLASSES = 254
MEAN = np.array([0.45, 0.45, 0.45], dtype=np.float32) * 255.0
STD = np.array([0.25, 0.25, 0.25], dtype=np.float32) * 255.0
# Geometry that is more precise is painted last, so it wins where labels overlap.
_PAINT_ORDER = {Kind.BOX: 0, Kind.POLYGON: 1, Kind.MASK: 2}


def normalise(image: np.ndarray) -> np.ndarray:
    """``(h, w, 3)`` uint8 RGB to ``(3, h, w)`` float32 with a fixed mean and spread."""
    out = (image.astype(np.float32) - MEAN) / STD
    return np.ascontiguousarray(out.transpose(2, 0, 1))


def working_scale(height: int, width: int, *, scale: float, max_side: int) -> float:
    """Resize factor for an image of ``height x width`` pixels: ``scale``, lowered so that the
    longer side is at most ``max_side`` pixels (never upscales beyond ``scale``)."""
    if scale <= 0 or max_side <= 0:
        raise ValueError("scale and max_side must be positive")
    return min(scale, max_side / max(height, width))


def working_size(height: int, width: int, factor: float) -> tuple[int, int]:
    """``(h, w)`` after resizing by ``factor`` (at least 1 pixel each)."""
    return max(1, round(height * factor)), max(1, round(width * factor))


def resize_image(image: np.ndarray, factor: float) -> np.ndarray:
    """Image resized by ``factor`` (area averaging when shrinking, linear when enlarging)."""
    if factor == 1.0:
        return image
    h, w = working_size(image.shape[0], image.shape[1], factor)
    interp = cv2.INTER_AREA if factor < 1.0 else cv2.INTER_LINEAR
    return cv2.resize(image, (w, h), interpolation=interp)


def resize_target(target: np.ndarray, factor: float) -> np.ndarray:
    """Target resized by ``factor`` with nearest-neighbour sampling (labels are not averaged)."""
    if factor == 1.0:
        return target
    h, w = working_size(target.shape[0], target.shape[1], factor)
    return cv2.resize(target, (w, h), interpolation=cv2.INTER_NEAREST)


def rasterise_target(
    annotations: Sequence[Annotation],
    classes: Sequence[Category],
    height: int,
    width: int,
    ignore_mask: np.ndarray | None = None,
) -> np.ndarray:
    """``(height, width)`` uint8 class-index map of a done image.

    Pixels covered by an annotation of ``classes[k]`` get ``k + 1`` (boxes fill their rectangle,
    polygons and masks their area); where labels overlap, masks beat polygons beat boxes, and
    among equals the later one wins. Pixels of annotations whose category is not in ``classes``
    and pixels of ``ignore_mask`` get :data:`IGNORE`; all other pixels are background (0).
    """
    if len(classes) > MAX_CLASSES:
        raise ValueError(f"at most {MAX_CLASSES} classes, got {len(classes)}")
    index = {c.id: k + 1 for k, c in enumerate(classes)}
    target = np.zeros((height, width), dtype=np.uint8)
    for ann in sorted(annotations, key=lambda a: _PAINT_ORDER[Kind(a.kind)]):
        inside = _inside(ann, height, width)
        if inside is None:
            continue
        mask = annotation_mask(inside, height, width)
        target[mask] = index.get(ann.category_id, IGNORE)
    if ignore_mask is not None:
        if ignore_mask.shape != (height, width):
            raise ValueError(f"ignore mask is {ignore_mask.shape[1]}x{ignore_mask.shape[0]}, image is {width}x{height}")
        target[ignore_mask.astype(bool)] = IGNORE
    return target


def clip_polygon(points: np.ndarray, x0: float, y0: float, x1: float, y1: float) -> np.ndarray:
    """The part of polygon ``points`` (``(N, 2)``, pixels) inside the rectangle ``[x0, x1] x
    [y0, y1]`` (Sutherland-Hodgman): inside the rectangle it covers the same pixels, and its
    vertices are never far outside, so rasterising it costs what the rectangle costs whatever the
    coordinates (a vertex at 2**31 would make COCO's rasteriser walk billions of steps). May come
    back with fewer than 3 vertices (nothing inside)."""
    pts = np.asarray(points, dtype=np.float64).reshape(-1, 2)
    for axis, bound, keep_below in ((0, x0, False), (0, x1, True), (1, y0, False), (1, y1, True)):
        if len(pts) == 0:
            break
        nxt = np.roll(pts, -1, axis=0)
        a, b = pts[:, axis], nxt[:, axis]
        a_in = a <= bound if keep_below else a >= bound
        b_in = b <= bound if keep_below else b >= bound
        with np.errstate(divide="ignore", invalid="ignore"):
            t = np.where(b != a, (bound - a) / (b - a), 0.0)
        cross = pts + t[:, None] * (nxt - pts)
        cross[:, axis] = bound
        out: list[np.ndarray] = []
        for i in range(len(pts)):  # per edge: keep the start if inside, add the crossing if it crosses
            if a_in[i]:
                out.append(pts[i])
            if a_in[i] != b_in[i]:
                out.append(cross[i])
        pts = np.array(out, dtype=np.float64).reshape(-1, 2)
    return pts


def _inside(ann: Annotation, height: int, width: int) -> Annotation | None:
    """``ann`` with its polygons clipped to just around the image (see :func:`clip_polygon`),
    ``None`` when nothing of it is inside; non-finite coordinates are a ``ValueError`` (the image
    is then skipped)."""
    if Kind(ann.kind) is not Kind.POLYGON or not ann.polygons:
        return ann
    parts = []
    for part in ann.polygons:
        pts = np.asarray(part, dtype=np.float64).reshape(-1, 2)
        if not np.isfinite(pts).all():
            raise ValueError(f"annotation {ann.id} has a polygon vertex that is not a finite number")
        if (pts.min(axis=0) < -1).any() or pts[:, 0].max() > width + 1 or pts[:, 1].max() > height + 1:
            pts = clip_polygon(pts, -1.0, -1.0, width + 1.0, height + 1.0)
        if len(pts) >= 3:
            parts.append(pts)
    return replace(ann, polygons=tuple(parts)) if parts else None


@dataclass(frozen=True)
class Augment:
    """Random changes for one training crop. ``scale_jitter`` 0.2 means a zoom in [1/1.2, 1.2];
    ``rotate`` is the largest rotation in degrees; ``color`` the largest relative change of
    brightness and contrast; ``hflip``/``vflip`` allow mirror images."""

    scale_jitter: float = 0.0
    rotate: float = 0.0
    color: float = 0.0
    hflip: bool = False
    vflip: bool = False


def crop_example(
    image: np.ndarray,
    target: np.ndarray,
    size: int,
    *,
    rng: np.random.Generator | None,
    augment: Augment,
) -> tuple[np.ndarray, np.ndarray]:
    """A ``size x size`` crop of a cached image and its target, with random zoom, rotation and
    flips (one affine warp) when ``rng`` is given, else the centre crop.

    Parts of the crop outside the image are reflected in the image and :data:`IGNORE` in the
    target. Returns ``((3, size, size) float32 normalised, (size, size) int64)``.
    """
    h, w = target.shape
    if rng is None:
        cx, cy, zoom, angle, fx, fy = w / 2, h / 2, 1.0, 0.0, 1.0, 1.0
    else:
        # centre of the crop, in source pixels: anywhere that keeps the crop mostly on the image
        half = size / 2
        cx = rng.uniform(min(half, w / 2), max(w - half, w / 2))
        cy = rng.uniform(min(half, h / 2), max(h - half, h / 2))
        zoom = math.exp(rng.uniform(-1, 1) * math.log1p(augment.scale_jitter)) if augment.scale_jitter else 1.0
        angle = rng.uniform(-augment.rotate, augment.rotate) if augment.rotate else 0.0
        fx = -1.0 if augment.hflip and rng.random() < 0.5 else 1.0
        fy = -1.0 if augment.vflip and rng.random() < 0.5 else 1.0
    if rng is None or (zoom == 1.0 and angle == 0.0):
        # integer-aligned crop without resampling (exact labels)
        x0, y0 = round(cx - size / 2), round(cy - size / 2)
        img = _padded_crop(image, x0, y0, size, reflect=True)
        tgt = _padded_crop(target, x0, y0, size, reflect=False)
        if fx < 0:
            img, tgt = img[:, ::-1], tgt[:, ::-1]
        if fy < 0:
            img, tgt = img[::-1], tgt[::-1]
    else:
        # output pixel p maps to source  c + R(angle) * diag(fx, fy) * (p - size/2) / zoom
        a = math.radians(angle)
        cos, sin = math.cos(a) / zoom, math.sin(a) / zoom
        m = np.array([[cos * fx, -sin * fy, 0.0], [sin * fx, cos * fy, 0.0]])
        centre = np.array([size / 2 - 0.5, size / 2 - 0.5])
        m[:, 2] = np.array([cx - 0.5, cy - 0.5]) - m[:, :2] @ centre
        flags = cv2.WARP_INVERSE_MAP
        img = cv2.warpAffine(image, m, (size, size), flags=cv2.INTER_LINEAR | flags, borderMode=cv2.BORDER_REFLECT_101)
        tgt = cv2.warpAffine(
            target, m, (size, size), flags=cv2.INTER_NEAREST | flags, borderMode=cv2.BORDER_CONSTANT, borderValue=IGNORE
        )
    x = normalise(np.ascontiguousarray(img))
    if rng is not None and augment.color:
        contrast = 1.0 + rng.uniform(-augment.color, augment.color)
        brightness = rng.uniform(-augment.color, augment.color) * 2.0  # in units of the normalised spread
        x = x * np.float32(contrast) + np.float32(brightness)
    return x.astype(np.float32, copy=False), np.ascontiguousarray(tgt).astype(np.int64)


def _padded_crop(array: np.ndarray, x0: int, y0: int, size: int, *, reflect: bool) -> np.ndarray:
    """``array[y0:y0+size, x0:x0+size]``, padded (reflection, or :data:`IGNORE`) where outside."""
    h, w = array.shape[:2]
    top, left = max(0, -y0), max(0, -x0)
    bottom, right = max(0, y0 + size - h), max(0, x0 + size - w)
    inner = array[max(0, y0) : min(h, y0 + size), max(0, x0) : min(w, x0 + size)]
    if top or left or bottom or right:
        pad = ((top, bottom), (left, right)) + ((0, 0),) * (array.ndim - 2)
        if reflect:
            inner = np.pad(inner, pad, mode="reflect" if min(inner.shape[:2]) > 1 else "edge")
        else:
            inner = np.pad(inner, pad, mode="constant", constant_values=IGNORE)
    return inner
