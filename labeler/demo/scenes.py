"""Synthetic scenes with exactly known labels, for ``labeler demo`` (numpy + OpenCV, no torch, no Qt).

Each scene is a ``(h, w, 3)`` uint8 RGB image: a textured, noisy background, one *main object*
(a disc, a square or a triangle, each class in its own colour) and a few small grey distractor
shapes that never touch it. The main object is drawn without anti-aliasing, so its mask is exact:
every pixel of the mask has the object's colour (plus noise) and no other pixel does.

Conventions (as everywhere in labeler): pixels, origin at the top-left corner, ``box_xywh`` is
``(x, y, w, h)`` with ``w = x_max - x_min + 1`` (the tight box of the mask's pixels, as COCO's
``toBbox`` gives it). The generator is deterministic: the same seed gives the same scenes.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

SHAPES: tuple[str, ...] = ("disc", "square", "triangle")
"""Category names of the main objects, in category order."""

SHAPE_COLORS: dict[str, tuple[int, int, int]] = {
    "disc": (220, 50, 40),
    "square": (40, 190, 70),
    "triangle": (50, 90, 230),
}
"""RGB fill colour of each class (far apart, and far from the muted background)."""

DEFAULT_WIDTH = 160
DEFAULT_HEIGHT = 120


@dataclass(frozen=True, eq=False)
class Scene:
    """One generated image and the exact label of its main object.

    ``image`` is ``(h, w, 3)`` uint8 RGB; ``mask`` is ``(h, w)`` bool; ``shape`` is one of
    :data:`SHAPES` (``category_index`` its position there); ``box_xywh`` is the tight box of
    ``mask`` in pixels; ``distractors`` is how many grey shapes were drawn besides.
    """

    image: np.ndarray
    shape: str
    category_index: int
    mask: np.ndarray
    box_xywh: tuple[float, float, float, float]
    distractors: int


def _background(rng: np.random.Generator, height: int, width: int, noise: float) -> np.ndarray:
    """Muted, smoothly varying colour (blurred coarse noise) with fine texture and pixel noise."""
    coarse = rng.uniform(70, 150, size=(max(2, height // 20), max(2, width // 20), 3)).astype(np.float32)
    base = cv2.resize(coarse, (width, height), interpolation=cv2.INTER_CUBIC)
    grey = base.mean(axis=2, keepdims=True)
    base = 0.35 * base + 0.65 * grey  # keep it unsaturated: class colours stand out
    fine = cv2.GaussianBlur(rng.normal(0, 12, size=(height, width)).astype(np.float32), (0, 0), 1.2)
    pixels: np.ndarray = base + fine[..., None] + rng.normal(0, noise, size=(height, width, 3))
    out: np.ndarray = np.clip(pixels, 0, 255).astype(np.uint8)
    return out


def _shape_mask(shape: str, cx: float, cy: float, size: float, angle: float, height: int, width: int) -> np.ndarray:
    """Bool mask of a shape centred at ``(cx, cy)``; ``size`` is the disc's radius or the
    circumradius of the square and the triangle; ``angle`` in radians rotates the polygons."""
    mask = np.zeros((height, width), dtype=np.uint8)
    if shape == "disc":
        cv2.circle(mask, (round(cx), round(cy)), round(size), 1, thickness=-1, lineType=cv2.LINE_8)
    else:
        corners = 4 if shape == "square" else 3
        pts = np.array(
            [
                (
                    cx + size * math.cos(angle + 2 * math.pi * k / corners),
                    cy + size * math.sin(angle + 2 * math.pi * k / corners),
                )
                for k in range(corners)
            ]
        )
        cv2.fillPoly(mask, [np.round(pts).astype(np.int32)], 1, lineType=cv2.LINE_8)
    return mask.astype(bool)


def mask_box(mask: np.ndarray) -> tuple[float, float, float, float]:
    """Tight ``(x, y, w, h)`` box of a non-empty bool mask, in pixels."""
    ys, xs = np.nonzero(mask)
    if len(xs) == 0:
        raise ValueError("an empty mask has no box")
    x0, y0 = int(xs.min()), int(ys.min())
    return (float(x0), float(y0), float(xs.max() - x0 + 1), float(ys.max() - y0 + 1))


def make_scene(
    rng: np.random.Generator,
    *,
    width: int = DEFAULT_WIDTH,
    height: int = DEFAULT_HEIGHT,
    shape: str | None = None,
    noise: float = 8.0,
    max_distractors: int = 3,
) -> Scene:
    """One scene drawn with ``rng``; ``shape`` picks the main object's class (random if ``None``)."""
    if width < 48 or height < 48:
        raise ValueError(f"scenes are at least 48 x 48 pixels, not {width} x {height}")
    shape = shape if shape is not None else SHAPES[int(rng.integers(len(SHAPES)))]
    if shape not in SHAPES:
        raise ValueError(f"unknown shape {shape!r}; one of {', '.join(SHAPES)}")
    image = _background(rng, height, width, noise)
    side = min(width, height)
    size = float(rng.uniform(0.15, 0.3) * side)  # radius / circumradius, in pixels
    margin = size + 2
    cx = float(rng.uniform(margin, width - margin))
    cy = float(rng.uniform(margin, height - margin))
    mask = _shape_mask(shape, cx, cy, size, float(rng.uniform(0, 2 * math.pi)), height, width)

    # Distractors first (small, grey, never within 4 pixels of the main object), then the object.
    keep_out = cv2.dilate(mask.astype(np.uint8), np.ones((9, 9), np.uint8)).astype(bool)
    drawn = 0
    for _ in range(int(rng.integers(0, max_distractors + 1))):
        for _attempt in range(10):
            d_size = float(rng.uniform(0.04, 0.08) * side)
            dx = float(rng.uniform(d_size + 1, width - d_size - 1))
            dy = float(rng.uniform(d_size + 1, height - d_size - 1))
            d_shape = SHAPES[int(rng.integers(len(SHAPES)))]
            d_mask = _shape_mask(d_shape, dx, dy, d_size, float(rng.uniform(0, 2 * math.pi)), height, width)
            if d_mask.any() and not (d_mask & keep_out).any():
                level = float(rng.choice([rng.uniform(20, 55), rng.uniform(185, 235)]))
                d_pixels = level + rng.normal(0, noise, size=(int(d_mask.sum()), 3))
                image[d_mask] = np.clip(d_pixels, 0, 255).astype(np.uint8)
                keep_out |= d_mask
                drawn += 1
                break

    color = np.array(SHAPE_COLORS[shape], dtype=np.float64) * rng.uniform(0.85, 1.1)
    pixels = color + rng.normal(0, noise, size=(int(mask.sum()), 3))
    image[mask] = np.clip(pixels, 0, 255).astype(np.uint8)
    return Scene(
        image=image,
        shape=shape,
        category_index=SHAPES.index(shape),
        mask=mask,
        box_xywh=mask_box(mask),
        distractors=drawn,
    )


def make_scenes(
    count: int,
    *,
    seed: int = 0,
    width: int = DEFAULT_WIDTH,
    height: int = DEFAULT_HEIGHT,
    noise: float = 8.0,
    max_distractors: int = 3,
) -> list[Scene]:
    """``count`` scenes from ``seed``, the classes taking turns (so every class appears evenly in
    any run of consecutive scenes) and everything else random."""
    if count < 1:
        raise ValueError("make at least one scene")
    rng = np.random.default_rng(seed)
    return [
        make_scene(
            rng, width=width, height=height, shape=SHAPES[i % len(SHAPES)], noise=noise, max_distractors=max_distractors
        )
        for i in range(count)
    ]
