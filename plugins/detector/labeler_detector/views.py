"""What the detector's network sees: the image scaled at its own aspect ratio, and random training
views whose boxes move with the pixels (numpy and OpenCV, no torch).

Boxes here are pixel boxes ``(x, y, w, h)`` (top-left corner, pixel-edge coordinates) of the
array they go with, ``(N, 4)`` float arrays.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

INPUT_MEAN = np.array([0.5, 0.5, 0.5], dtype=np.float32)
"""Input normalisation: ``(rgb / 255 - 0.5) / 0.25`` (no statistics of any foreign data set)."""
INPUT_STD = 0.25


def resize(image: np.ndarray, height: int, width: int) -> np.ndarray:
    """``image`` resampled to ``height`` x ``width`` (area filter when shrinking, bilinear else)."""
    h, w = image.shape[:2]
    if (h, w) == (height, width):
        return image
    shrink = height < h and width < w
    return cv2.resize(image, (width, height), interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LINEAR)


def to_input(image: np.ndarray) -> np.ndarray:
    """``(h, w, 3)`` uint8 RGB to the network's ``(3, h, w)`` float32 input (see ``INPUT_STD``)."""
    x = image.astype(np.float32) * (1.0 / 255.0)
    x -= INPUT_MEAN
    x *= 1.0 / INPUT_STD
    return np.ascontiguousarray(x.transpose(2, 0, 1))


def mean_colour(image: np.ndarray) -> tuple[float, float, float]:
    """Mean RGB of an ``(h, w, 3)`` image (from every other pixel of every other row)."""
    r, g, b = image[::2, ::2].reshape(-1, 3).mean(axis=0)
    return (float(r), float(g), float(b))


def scale_boxes(boxes: np.ndarray, sx: float, sy: float) -> np.ndarray:
    out = np.asarray(boxes, dtype=np.float32).reshape(-1, 4).copy()
    out[:, [0, 2]] *= sx
    out[:, [1, 3]] *= sy
    return out


def flip_boxes(boxes: np.ndarray, width: float) -> np.ndarray:
    """Boxes mirrored left-right in an image ``width`` pixels wide."""
    out = np.asarray(boxes, dtype=np.float32).reshape(-1, 4).copy()
    out[:, 0] = width - out[:, 0] - out[:, 2]
    return out


def flip_boxes_vertically(boxes: np.ndarray, height: float) -> np.ndarray:
    out = np.asarray(boxes, dtype=np.float32).reshape(-1, 4).copy()
    out[:, 1] = height - out[:, 1] - out[:, 3]
    return out


def clip_boxes(boxes: np.ndarray, width: float, height: float) -> np.ndarray:
    """Boxes cut to ``[0, width] x [0, height]`` (a box wholly outside gets zero size)."""
    b = np.asarray(boxes, dtype=np.float32).reshape(-1, 4)
    x0 = np.clip(b[:, 0], 0, width)
    y0 = np.clip(b[:, 1], 0, height)
    x1 = np.clip(b[:, 0] + b[:, 2], 0, width)
    y1 = np.clip(b[:, 1] + b[:, 3], 0, height)
    return np.stack([x0, y0, x1 - x0, y1 - y0], axis=1).astype(np.float32)


@dataclass(frozen=True)
class Augment:
    """Strength of the training augmentation; geometric changes move the boxes with the pixels.

    ``zoom`` is the range of the view's scale relative to the inference scale (drawn log-uniform;
    below 1 the image shrinks inside the view with a padded border, above 1 the view is a crop);
    the aspect ratio is the image's own. ``min_visible``: an object with less than this fraction
    of its area in view is not a target; its visible part is left out of the loss.
    """

    zoom: tuple[float, float] = (0.7, 1.4)
    hflip: bool = True
    vflip: bool = False
    min_visible: float = 0.4
    brightness: float = 0.25
    contrast: float = 0.25
    saturation: float = 0.3
    hue_gain: float = 0.05
    grayscale_p: float = 0.05


def jitter_colour(image: np.ndarray, rng: np.random.Generator, aug: Augment) -> np.ndarray:
    """Random brightness, contrast, saturation, channel gains and rare grayscale; uint8 in and out.

    All of them are linear in RGB, so they are composed into one 3x4 matrix applied by OpenCV."""
    luma = np.array([0.299, 0.587, 0.114], dtype=np.float64)
    if rng.random() < aug.grayscale_p:
        colour = np.tile(luma, (3, 1))
    else:
        sat = 1.0 + rng.uniform(-aug.saturation, aug.saturation)
        colour = sat * np.eye(3) + (1.0 - sat) * np.tile(luma, (3, 1))
        colour = np.diag(1.0 + rng.uniform(-aug.hue_gain, aug.hue_gain, size=3)) @ colour
    mean = float(image[::4, ::4].reshape(-1, 3).mean(axis=0) @ luma)
    contrast = 1.0 + rng.uniform(-aug.contrast, aug.contrast)
    brightness = 1.0 + rng.uniform(-aug.brightness, aug.brightness)
    matrix = np.empty((3, 4))
    matrix[:, :3] = brightness * contrast * colour
    matrix[:, 3] = brightness * (1.0 - contrast) * mean
    return cv2.transform(np.ascontiguousarray(image), matrix)


def random_view(
    source: np.ndarray,
    boxes: np.ndarray,
    labels: np.ndarray,
    *,
    scale: float,
    size: int,
    rng: np.random.Generator,
    aug: Augment,
    fill: tuple[float, float, float] | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """A random ``size`` x ``size`` view of ``source`` (uint8 RGB, ``boxes`` in its pixels).

    The source is scaled by ``scale`` (the inference scale relative to ``source``) times a random
    zoom, at its own aspect ratio, and a ``size`` x ``size`` window placed at random on it (parts
    outside the image are filled with ``fill``, by default its mean colour); then flips and colour jitter. Returns
    ``(view, boxes, labels, ignore_boxes)``: the objects at least ``aug.min_visible`` in view with
    their boxes in view pixels (clipped to the view), and the visible parts of the others.
    """
    sh, sw = source.shape[:2]
    lo, hi = np.log(aug.zoom[0]), np.log(aug.zoom[1])
    z = scale * float(np.exp(rng.uniform(lo, hi)))
    ww, wh = sw * z, sh * z  # the scaled image's size
    left = rng.uniform(min(0.0, ww - size), max(0.0, ww - size))
    top = rng.uniform(min(0.0, wh - size), max(0.0, wh - size))
    # view edge coordinate = z * source edge coordinate - (left, top); cv2 maps pixel centres
    matrix = np.array([[z, 0.0, -left + 0.5 * z - 0.5], [0.0, z, -top + 0.5 * z - 0.5]], dtype=np.float64)
    if fill is None:
        fill = mean_colour(source)
    interpolation = cv2.INTER_AREA if z < 0.75 else cv2.INTER_LINEAR
    if z < 0.75:  # warpAffine has no area filter: shrink first, then place
        small = cv2.resize(source, (max(1, round(sw * z)), max(1, round(sh * z))), interpolation=interpolation)
        fx, fy = small.shape[1] / sw, small.shape[0] / sh
        matrix = np.array([[z / fx, 0.0, -left + 0.5 * z / fx - 0.5], [0.0, z / fy, -top + 0.5 * z / fy - 0.5]])
        source_used = small
    else:
        source_used = source
    view = cv2.warpAffine(
        source_used, matrix, (size, size), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=fill
    )
    moved = scale_boxes(boxes, z, z)
    moved[:, 0] -= left
    moved[:, 1] -= top
    full_area = np.maximum(moved[:, 2] * moved[:, 3], 1e-9)
    clipped = clip_boxes(moved, size, size)
    visible = clipped[:, 2] * clipped[:, 3] / full_area
    keep = (visible >= aug.min_visible) & (clipped[:, 2] >= 1.0) & (clipped[:, 3] >= 1.0)
    partial = (~keep) & (clipped[:, 2] > 0) & (clipped[:, 3] > 0)
    out_boxes, out_labels, ignore = clipped[keep], np.asarray(labels)[keep], clipped[partial]
    if aug.hflip and rng.random() < 0.5:
        view = view[:, ::-1]
        out_boxes, ignore = flip_boxes(out_boxes, size), flip_boxes(ignore, size)
    if aug.vflip and rng.random() < 0.5:
        view = view[::-1]
        out_boxes, ignore = flip_boxes_vertically(out_boxes, size), flip_boxes_vertically(ignore, size)
    view = jitter_colour(np.ascontiguousarray(view), rng, aug)
    return view, out_boxes, out_labels, ignore
