"""The part of an image an assisted tool works on: a window around the object, at a working scale.

Coordinates: full-resolution image pixels, origin at the top-left corner of the top-left pixel;
boxes are ``(x, y, w, h)``. A :class:`Window` is a pixel-aligned rectangle of the image
(``x0 <= x < x1``, ``y0 <= y < y1``) and the ``scale`` (working pixels per image pixel, at most 1)
at which the algorithms see it, so a big object on a big image costs no more than a small one:
nothing here ever touches more of the image than the window.

:class:`ImagePixels` says where the pixels come from: a full image, or a level of it decoded at
1/``reduce`` size (what the canvas holds for a big image), as grayscale, RGB or the 32-bit
``B, G, R, X`` layout Qt draws from; :class:`PyramidPixels`, an image too big to hold, read by
windows from its tile pyramid (:mod:`labeler.core.tiles`) at the level the working scale needs.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TypeAlias

import cv2
import numpy as np

from labeler.core.tiles import TilePyramid

#: Longest side, in working pixels, of the window the algorithms run on (crops are scaled down to it).
WORK_SIDE = 280
#: Margin around a box, as a fraction of its longer side (and at least MIN_MARGIN image pixels).
MARGIN = 0.15
MIN_MARGIN = 8


@dataclass(frozen=True)
class ImagePixels:
    """Pixels of one image of ``size = (width, height)`` full-resolution pixels.

    ``pixels`` is ``(h, w)`` grayscale, ``(h, w, 3)`` RGB or, with ``bgrx``, ``(h, w, 4)`` in
    ``B, G, R, X`` byte order; it is the image at 1/``reduce`` size per side (``reduce = 1``: the
    full image). The array is only read, never copied whole.
    """

    pixels: np.ndarray
    size: tuple[int, int]
    reduce: int = 1
    bgrx: bool = False

    def __post_init__(self) -> None:
        p = self.pixels
        if p.dtype != np.uint8 or p.ndim not in (2, 3) or (p.ndim == 3 and p.shape[2] not in (1, 3, 4)):
            raise ValueError(f"image pixels must be (h, w), (h, w, 3) or (h, w, 4) uint8, got {p.shape} {p.dtype}")
        if self.size[0] < 1 or self.size[1] < 1:
            raise ValueError(f"image size must be positive, got {self.size}")

    @classmethod
    def of(cls, image: np.ndarray) -> ImagePixels:
        """A full-resolution image array (grayscale or RGB)."""
        return cls(pixels=image, size=(int(image.shape[1]), int(image.shape[0])))


@dataclass(frozen=True)
class PyramidPixels:
    """An image read window by window from its tile pyramid: each window comes from the coarsest
    level that still has at least one pixel per working pixel, so a box on a 40,000 x 40,000 slide
    reads a few tiles at the resolution the tools work at, never the whole image (nor only the
    small overview the canvas holds)."""

    pyramid: TilePyramid

    @property
    def size(self) -> tuple[int, int]:
        return self.pyramid.size


PixelSource: TypeAlias = ImagePixels | PyramidPixels
"""Where the assisted tools read an image's pixels from."""


@dataclass(frozen=True)
class Window:
    """``[x0, x1) x [y0, y1)`` of the image in full-resolution pixels, seen at ``scale``."""

    x0: int
    y0: int
    x1: int
    y1: int
    scale: float

    @property
    def width(self) -> int:
        return self.x1 - self.x0

    @property
    def height(self) -> int:
        return self.y1 - self.y0

    @property
    def work_shape(self) -> tuple[int, int]:
        """``(h, w)`` of the window in working pixels."""
        return max(1, round(self.height * self.scale)), max(1, round(self.width * self.scale))

    def to_work(self, x: float, y: float) -> tuple[float, float]:
        """An image point in working pixel coordinates."""
        h, w = self.work_shape
        return (x - self.x0) * w / self.width, (y - self.y0) * h / self.height

    def box_to_work(self, box_xywh: tuple[float, float, float, float]) -> tuple[int, int, int, int]:
        """``(x0, y0, x1, y1)`` working-pixel bounds of a box (rounded outwards, clipped)."""
        x, y, bw, bh = box_xywh
        ax, ay = self.to_work(x, y)
        bx, by = self.to_work(x + bw, y + bh)
        h, w = self.work_shape
        return (max(0, math.floor(ax)), max(0, math.floor(ay)), min(w, math.ceil(bx)), min(h, math.ceil(by)))

    def contains(self, x: float, y: float) -> bool:
        return self.x0 <= x < self.x1 and self.y0 <= y < self.y1


def box_window(
    box_xywh: tuple[float, float, float, float],
    size: tuple[int, int],
    *,
    margin: float = MARGIN,
    min_margin: int = MIN_MARGIN,
    work_side: int = WORK_SIDE,
) -> Window:
    """The window around a box: the box grown by ``margin`` of its longer side (at least
    ``min_margin`` pixels) on every side, clipped to the ``(width, height)`` image, scaled so its
    longer side is at most ``work_side`` working pixels."""
    width, height = size
    x, y, bw, bh = box_xywh
    if not (bw > 0 and bh > 0):
        raise ValueError(f"a box needs a positive width and height, got {box_xywh}")
    pad = max(float(min_margin), margin * max(bw, bh))
    x0 = max(0, math.floor(x - pad))
    y0 = max(0, math.floor(y - pad))
    x1 = min(width, math.ceil(x + bw + pad))
    y1 = min(height, math.ceil(y + bh + pad))
    if x1 <= x0 or y1 <= y0:
        raise ValueError(f"the box {box_xywh} lies outside the {width} x {height} image")
    scale = min(1.0, work_side / max(x1 - x0, y1 - y0))
    return Window(x0, y0, x1, y1, scale)


def grown(window: Window, pixels: int, size: tuple[int, int]) -> Window:
    """``window`` grown by ``pixels`` image pixels on every side (clipped), same scale."""
    width, height = size
    return Window(
        max(0, window.x0 - pixels),
        max(0, window.y0 - pixels),
        min(width, window.x1 + pixels),
        min(height, window.y1 + pixels),
        window.scale,
    )


def is_gray(image: np.ndarray) -> bool:
    """Whether an ``(h, w, 3)`` image has three equal channels (or is ``(h, w)``)."""
    if image.ndim == 2:
        return True
    return bool(np.array_equal(image[..., 0], image[..., 1]) and np.array_equal(image[..., 1], image[..., 2]))


def _level_bounds(window: Window, reduce: int, level_w: int, level_h: int) -> tuple[int, int, int, int]:
    """``(sx0, sy0, sx1, sy1)``: the pixels of a 1/``reduce`` level (``level_w`` x ``level_h``)
    that cover ``window``."""
    r = reduce
    sx0, sy0 = min(level_w - 1, window.x0 // r), min(level_h - 1, window.y0 // r)
    sx1, sy1 = max(sx0 + 1, min(level_w, -(-window.x1 // r))), max(sy0 + 1, min(level_h, -(-window.y1 // r)))
    return sx0, sy0, sx1, sy1


def read_window(source: PixelSource, window: Window) -> np.ndarray:
    """The window's pixels as ``window.work_shape + (3,)`` uint8 RGB (grayscale made RGB).

    Reads only the window's part of the source (of its level when ``reduce > 1``, of the pyramid
    level the working scale needs for a :class:`PyramidPixels`) and resizes that (area averaging
    when shrinking).
    """
    if isinstance(source, PyramidPixels):
        pyramid = source.pyramid
        # the coarsest level with a pixel per working pixel (level k holds 1 / 2**k of each side)
        fitting = [lv for lv in pyramid.levels if lv.scale * window.scale <= 1.0 + 1e-9]
        level = fitting[-1] if fitting else pyramid.levels[0]
        sx0, sy0, sx1, sy1 = _level_bounds(window, level.scale, level.width, level.height)
        part = pyramid.read_region(level.index, sx0, sy0, sx1 - sx0, sy1 - sy0)
        return _to_work(part, window, level.scale, sx0, sy0, bgrx=False)
    px = source.pixels
    sx0, sy0, sx1, sy1 = _level_bounds(window, source.reduce, px.shape[1], px.shape[0])
    return _to_work(px[sy0:sy1, sx0:sx1], window, source.reduce, sx0, sy0, bgrx=source.bgrx)


def _to_work(part: np.ndarray, window: Window, r: int, sx0: int, sy0: int, *, bgrx: bool) -> np.ndarray:
    """``part``, the pixels ``[sx0, ...) x [sy0, ...)`` of a 1/``r`` level, cut and resized to
    the window at its working scale, as RGB."""
    if part.ndim == 2 or part.shape[2] == 1:
        rgb = cv2.cvtColor(np.ascontiguousarray(part.reshape(part.shape[:2])), cv2.COLOR_GRAY2RGB)
    elif part.shape[2] == 4:
        rgb = cv2.cvtColor(np.ascontiguousarray(part), cv2.COLOR_BGRA2RGB if bgrx else cv2.COLOR_RGBA2RGB)
    else:
        rgb = np.ascontiguousarray(part)
    h, w = window.work_shape
    # the level's pixels cover [sx0 * r, sx1 * r): cut the window out of them exactly
    if r > 1 or (rgb.shape[0], rgb.shape[1]) != (h, w):
        fx, fy = w / window.width, h / window.height
        matrix = np.array(
            [
                [fx * r, 0.0, (sx0 * r - window.x0) * fx + 0.5 * (fx * r - 1)],
                [0.0, fy * r, (sy0 * r - window.y0) * fy + 0.5 * (fy * r - 1)],
            ]
        )
        if fx * r < 1.0 and r == 1 and sx0 * r == window.x0 and sy0 * r == window.y0:
            rgb = cv2.resize(rgb, (w, h), interpolation=cv2.INTER_AREA)
        else:
            rgb = cv2.warpAffine(rgb, matrix, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    return np.ascontiguousarray(rgb)


def mask_to_window(mask_work: np.ndarray, window: Window) -> np.ndarray:
    """A working-resolution bool mask brought to the window's full resolution (smooth edges:
    the mask is interpolated and cut at one half)."""
    if mask_work.shape == (window.height, window.width):
        return mask_work.astype(bool)
    up = cv2.resize(mask_work.astype(np.float32), (window.width, window.height), interpolation=cv2.INTER_LINEAR)
    return up >= 0.5
