"""Box conventions and box-consistent augmentation for the localizer (numpy and OpenCV, no torch).

Conventions:
- a *pixel box* is ``(x, y, w, h)`` in pixels of an image, top-left corner, width, height, with
  pixel-edge coordinates (the image spans ``[0, width] x [0, height]``), as everywhere in labeler;
- a *normalised box* is the same divided by the image's width and height, so the image spans
  ``[0, 1] x [0, 1]``. The network sees every image stretched to a square (no letterbox), which
  leaves normalised coordinates unchanged: a box normalised on the original image is the box on
  the network input.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np

INPUT_MEAN = np.array([0.5, 0.5, 0.5], dtype=np.float32)
"""Input normalisation: ``(rgb / 255 - 0.5) / 0.25`` (no statistics of any foreign data set)."""
INPUT_STD = 0.25


def normalize_box(box_xywh: Sequence[float], width: int, height: int) -> np.ndarray:
    """Pixel box of an image ``width`` x ``height`` to a normalised ``(x, y, w, h)`` float32 array,
    clipped to the image (a box reaching past the border keeps only its visible part)."""
    if width <= 0 or height <= 0:
        raise ValueError(f"image size must be positive, got {width} x {height}")
    x, y, w, h = (float(v) for v in box_xywh)
    x0, x1 = sorted((x, x + w))
    y0, y1 = sorted((y, y + h))
    x0, x1 = np.clip([x0, x1], 0.0, width) / width
    y0, y1 = np.clip([y0, y1], 0.0, height) / height
    return np.array([x0, y0, x1 - x0, y1 - y0], dtype=np.float32)


def denormalize_box(box: Sequence[float] | np.ndarray, width: int, height: int) -> tuple[float, float, float, float]:
    """Normalised ``(x, y, w, h)`` to a pixel box clipped to the ``width`` x ``height`` image.

    Negative sizes are read as zero; the result is at least one pixel wide and high (moved inside
    the image if needed), so a proposal is always a drawable box.
    """
    x, y, w, h = (float(v) for v in box)
    x0 = min(max(x * width, 0.0), float(width))
    y0 = min(max(y * height, 0.0), float(height))
    x1 = min(max((x + max(w, 0.0)) * width, 0.0), float(width))
    y1 = min(max((y + max(h, 0.0)) * height, 0.0), float(height))
    min_w, min_h = min(1.0, float(width)), min(1.0, float(height))
    if x1 - x0 < min_w:
        x0 = min(x0, width - min_w)
        x1 = x0 + min_w
    if y1 - y0 < min_h:
        y0 = min(y0, height - min_h)
        y1 = y0 + min_h
    return (x0, y0, x1 - x0, y1 - y0)


def flip_box(box: np.ndarray) -> np.ndarray:
    """Normalised box(es) ``(..., 4)`` mirrored left-right: ``x -> 1 - x - w`` (rounding below 0
    is clipped, so a box inside the image stays inside)."""
    out = np.array(box, dtype=np.float32, copy=True)
    out[..., 0] = np.maximum(1.0 - out[..., 0] - out[..., 2], 0.0)
    return out


def box_iou_normalized(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of normalised ``(..., 4)`` xywh boxes, element-wise (0 where the union is empty)."""
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    iw = np.clip(np.minimum(a[..., 0] + a[..., 2], b[..., 0] + b[..., 2]) - np.maximum(a[..., 0], b[..., 0]), 0, None)
    ih = np.clip(np.minimum(a[..., 1] + a[..., 3], b[..., 1] + b[..., 3]) - np.maximum(a[..., 1], b[..., 1]), 0, None)
    inter = iw * ih
    union = a[..., 2] * a[..., 3] + b[..., 2] * b[..., 3] - inter
    return np.where(union > 0, inter / np.where(union > 0, union, 1.0), 0.0)


def resize_square(image: np.ndarray, size: int) -> np.ndarray:
    """Stretch an ``(h, w, 3)`` uint8 image to ``(size, size, 3)``.

    Shrinking uses the area filter, after a bilinear step down to ``4 * size`` for large images:
    the area filter's cost grows with the source's pixels (several times the network's forward
    for a 2-megapixel photo); the two steps cost about a third of that and differ from the pure
    area filter by about 0.1 grey level on average on photos.
    """
    h, w = image.shape[:2]
    if h <= size and w <= size:
        return cv2.resize(image, (size, size), interpolation=cv2.INTER_LINEAR)
    if h > 4 * size or w > 4 * size:
        image = cv2.resize(image, (min(w, 4 * size), min(h, 4 * size)), interpolation=cv2.INTER_LINEAR)
    return cv2.resize(image, (size, size), interpolation=cv2.INTER_AREA)


def to_input(square: np.ndarray) -> np.ndarray:
    """``(s, s, 3)`` uint8 RGB to the network's ``(3, s, s)`` float32 input (see ``INPUT_STD``)."""
    x = square.astype(np.float32) * (1.0 / 255.0)
    x -= INPUT_MEAN
    x *= 1.0 / INPUT_STD
    return np.ascontiguousarray(x.transpose(2, 0, 1))


@dataclass(frozen=True)
class Augment:
    """Strength of the training augmentation (all geometric changes move the box with the pixels).

    ``scale`` is the range of the crop window's side relative to the image (below 1 zooms in,
    above 1 zooms out with a padded border); ``aspect`` the largest relative change of the
    window's aspect ratio; ``min_visible`` the least fraction of the box that must stay inside
    the crop (else another crop is drawn).
    """

    flip: bool = True
    scale: tuple[float, float] = (0.6, 1.3)
    aspect: float = 0.25
    min_visible: float = 0.6
    brightness: float = 0.25
    contrast: float = 0.25
    saturation: float = 0.3
    channel_gain: float = 0.05
    grayscale_p: float = 0.05


def crop_window(
    box: np.ndarray, rng: np.random.Generator, aug: Augment, tries: int = 20
) -> tuple[float, float, float, float]:
    """A random crop window ``(left, top, width, height)`` in normalised coordinates of the
    source that keeps at least ``aug.min_visible`` of ``box``; the whole image if none is found."""
    bx, by, bw, bh = (float(v) for v in box)
    area = max(bw * bh, 1e-12)
    for _ in range(tries):
        side = rng.uniform(*aug.scale)
        ratio = np.exp(rng.uniform(-aug.aspect, aug.aspect))
        cw, ch = side * np.sqrt(ratio), side / np.sqrt(ratio)
        # window position: anywhere such that the window overlaps the image reasonably
        left = rng.uniform(min(0.0, 1.0 - cw), max(0.0, 1.0 - cw))
        top = rng.uniform(min(0.0, 1.0 - ch), max(0.0, 1.0 - ch))
        iw = max(0.0, min(bx + bw, left + cw) - max(bx, left))
        ih = max(0.0, min(by + bh, top + ch) - max(by, top))
        if iw * ih >= aug.min_visible * area:
            return (left, top, cw, ch)
    return (0.0, 0.0, 1.0, 1.0)


def warp_to_window(
    source: np.ndarray, window: tuple[float, float, float, float], size: int, fill: tuple[int, int, int]
) -> np.ndarray:
    """Resample the normalised ``window`` of ``source`` (any square or not) to ``(size, size, 3)``;
    parts of the window outside the source are filled with ``fill``."""
    sh, sw = source.shape[:2]
    left, top, cw, ch = window
    # output edge coordinate = a * source edge coordinate + b, per axis
    ax = size / (sw * cw)
    ay = size / (sh * ch)
    bx = -size * left / cw
    by = -size * top / ch
    # cv2 maps pixel centres: centre = edge - 0.5 on both sides
    matrix = np.array([[ax, 0.0, bx + 0.5 * ax - 0.5], [0.0, ay, by + 0.5 * ay - 0.5]], dtype=np.float64)
    return cv2.warpAffine(
        source, matrix, (size, size), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=fill
    )


def box_in_window(box: np.ndarray, window: tuple[float, float, float, float]) -> np.ndarray:
    """The normalised box as seen in the crop ``window``, clipped to it."""
    left, top, cw, ch = window
    x0 = (box[0] - left) / cw
    y0 = (box[1] - top) / ch
    x1 = (box[0] + box[2] - left) / cw
    y1 = (box[1] + box[3] - top) / ch
    x0, x1 = np.clip([x0, x1], 0.0, 1.0)
    y0, y1 = np.clip([y0, y1], 0.0, 1.0)
    return np.array([x0, y0, x1 - x0, y1 - y0], dtype=np.float32)


def jitter_colour(image: np.ndarray, rng: np.random.Generator, aug: Augment) -> np.ndarray:
    """Random brightness, contrast, saturation, channel gains and rare grayscale; uint8 in and out."""
    x = image.astype(np.float32)
    gray = x @ np.array([0.299, 0.587, 0.114], dtype=np.float32)
    if rng.random() < aug.grayscale_p:
        x = np.repeat(gray[..., None], 3, axis=2)
    else:
        sat = 1.0 + rng.uniform(-aug.saturation, aug.saturation)
        x = gray[..., None] + sat * (x - gray[..., None])
        x *= 1.0 + rng.uniform(-aug.channel_gain, aug.channel_gain, size=3).astype(np.float32)
    contrast = 1.0 + rng.uniform(-aug.contrast, aug.contrast)
    mean = float(gray.mean())
    x = (x - mean) * contrast + mean
    x *= 1.0 + rng.uniform(-aug.brightness, aug.brightness)
    return np.clip(x, 0.0, 255.0).astype(np.uint8)


def augment(
    source: np.ndarray, box: np.ndarray, size: int, rng: np.random.Generator, aug: Augment
) -> tuple[np.ndarray, np.ndarray]:
    """A random view of ``source`` (uint8 RGB) at ``size`` x ``size`` and its normalised box.

    Geometry: random crop window (scale, aspect, translation; see :func:`crop_window`), then a
    horizontal flip with probability 1/2; colour jitter last. The box undergoes exactly the
    geometric transform of the pixels and is clipped to the view.
    """
    window = crop_window(box, rng, aug)
    red, green, blue = (int(v) for v in source.reshape(-1, 3).mean(axis=0))
    view = warp_to_window(source, window, size, (red, green, blue))
    out_box = box_in_window(box, window)
    if aug.flip and rng.random() < 0.5:
        view = view[:, ::-1]
        out_box = flip_box(out_box)
    view = jitter_colour(view, rng, aug)
    return np.ascontiguousarray(view), out_box
