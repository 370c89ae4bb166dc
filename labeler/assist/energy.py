"""The graph cut under the box tool: colour models, a shape prior and a min cut (PyMaxflow).

GrabCut (``cv2.grabCut``) only takes labels: it has no place for a prior on where the object is,
so on small or low-contrast objects its colour models often take the whole box for background
and the mask comes back empty. This is the same energy with that place:

- colour: smoothed 3-D histograms of the features (Lab for colour images) of the object and of
  its surroundings, re-estimated from the cut a few times, as GrabCut does with its mixtures;
- shape: a prior in log-odds per pixel (the ellipse inscribed in the box for the box alone, the
  previous mask after clicks, plus the model's class probability where a segmenter exists);
- smoothness: a contrast-sensitive Potts term on the 8-neighbourhood;
- hard labels: what :class:`~labeler.assist.grabcut.Click` disks and the outside of the box fix.
"""

from __future__ import annotations

import cv2
import maxflow
import numpy as np

#: Histogram bins per feature channel.
BINS = 16
#: Weight of the smoothness term (GrabCut's gamma) and of diagonal neighbours relative to it.
SMOOTHNESS = 12.0
#: The log-odds of a hard label.
HARD = 1e6


def colour_features(image: np.ndarray, *, gray: bool) -> np.ndarray:
    """``(h, w, 3)`` uint8 features whose histograms the colour models are: Lab of the slightly
    blurred image for colour images; intensity, smoothed intensity and local contrast for gray."""
    if gray:
        g = image[..., 0]
        smooth = cv2.GaussianBlur(g, (0, 0), 2.0)
        mean = cv2.blur(g.astype(np.float32), (7, 7))
        sq = cv2.blur(g.astype(np.float32) ** 2, (7, 7))
        contrast = np.clip(np.sqrt(np.maximum(sq - mean * mean, 0.0)) * 4.0, 0, 255).astype(np.uint8)
        return np.ascontiguousarray(np.dstack([g, smooth, contrast]))
    blurred = cv2.GaussianBlur(image, (0, 0), 0.8)
    return np.ascontiguousarray(cv2.cvtColor(blurred, cv2.COLOR_RGB2LAB))


def edge_distance(image: np.ndarray) -> np.ndarray:
    """``(h, w)`` float32 distance of each pixel to the nearest Canny edge of the slightly blurred
    image (how far a click's region may reach before the image says something else begins)."""
    gray = cv2.GaussianBlur(cv2.cvtColor(image, cv2.COLOR_RGB2GRAY), (0, 0), 1.0)
    edges = cv2.Canny(gray, 40, 120)
    distance: np.ndarray = cv2.distanceTransform((edges == 0).astype(np.uint8), cv2.DIST_L2, 3)
    return distance


def bin_index(features: np.ndarray) -> np.ndarray:
    """Each pixel's histogram bin, ``(h, w)`` int."""
    q = (features.astype(np.int32) * BINS) >> 8
    bins: np.ndarray = (q[..., 0] * BINS + q[..., 1]) * BINS + q[..., 2]
    return bins


def _histogram(bins: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Smoothed, normalised log-density over the bins of the pixels, weighted."""
    h: np.ndarray = np.bincount(bins.ravel(), weights=weights.ravel(), minlength=BINS**3).reshape(BINS, BINS, BINS)
    for axis in range(3):  # a [1, 2, 1] / 4 blur along each axis
        p = np.pad(h, [(1, 1) if a == axis else (0, 0) for a in range(3)])
        lo = [slice(None)] * 3
        hi = [slice(None)] * 3
        mid = [slice(None)] * 3
        lo[axis], mid[axis], hi[axis] = slice(0, -2), slice(1, -1), slice(2, None)
        h = 0.5 * p[tuple(mid)] + 0.25 * (p[tuple(lo)] + p[tuple(hi)])
    h = h + 1e-3 * max(float(h.sum()), 1.0) / h.size
    density: np.ndarray = np.log(h / h.sum()).ravel()
    return density


def pairwise(features: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Contrast-sensitive weights to the right, down, down-right and down-left neighbours."""
    f = features.astype(np.float32)
    diffs = [
        ((f[:, 1:] - f[:, :-1]) ** 2).sum(-1),
        ((f[1:, :] - f[:-1, :]) ** 2).sum(-1),
        ((f[1:, 1:] - f[:-1, :-1]) ** 2).sum(-1),
        ((f[1:, :-1] - f[:-1, 1:]) ** 2).sum(-1),
    ]
    mean = sum(float(d.sum()) for d in diffs) / max(1, sum(d.size for d in diffs))
    beta = 1.0 / (2.0 * mean) if mean > 0 else 0.0
    h, w = features.shape[:2]
    out = []
    for k, d in enumerate(diffs):
        full = np.zeros((h, w), np.float32)
        weight = SMOOTHNESS * np.exp(-beta * d) / (1.0 if k < 2 else np.sqrt(2.0))
        if k == 0:
            full[:, :-1] = weight
        elif k == 1:
            full[:-1, :] = weight
        elif k == 2:
            full[:-1, :-1] = weight
        else:
            full[:-1, 1:] = weight
        out.append(full)
    return out[0], out[1], out[2], out[3]


_STRUCTURES = (
    np.array([[0, 0, 0], [0, 0, 1], [0, 0, 0]]),
    np.array([[0, 0, 0], [0, 0, 0], [0, 1, 0]]),
    np.array([[0, 0, 0], [0, 0, 0], [0, 0, 1]]),
    np.array([[0, 0, 0], [0, 0, 0], [1, 0, 0]]),
)


def cut(unary_fg: np.ndarray, edges: tuple[np.ndarray, ...]) -> np.ndarray:
    """The min cut of per-pixel log-odds of foreground ``unary_fg`` (``+HARD`` / ``-HARD`` for
    hard labels) with the pairwise ``edges``: ``(h, w)`` bool foreground."""
    g = maxflow.Graph[float]()
    ids = g.add_grid_nodes(unary_fg.shape)
    for weights, structure in zip(edges, _STRUCTURES, strict=True):
        g.add_grid_edges(ids, weights=weights, structure=structure, symmetric=True)
    # source = foreground: the capacity to the source is the cost of labelling it background
    g.add_grid_tedges(ids, np.maximum(unary_fg, 0.0), np.maximum(-unary_fg, 0.0))
    g.maxflow()
    foreground: np.ndarray = ~np.asarray(g.get_grid_segments(ids), dtype=bool)
    return foreground


def segment_energy(
    bins: np.ndarray,
    edges: tuple[np.ndarray, ...],
    prior: np.ndarray,
    hard: np.ndarray,
    start: np.ndarray,
    *,
    iterations: int,
    colour_weight: float = 1.0,
) -> np.ndarray:
    """Alternate colour models and cuts ``iterations`` times from the mask ``start``.

    ``prior``: log-odds of foreground per pixel (shape, model); ``hard``: int8, +1 definite
    foreground, -1 definite background, 0 free. The colour models of the first round come from
    ``start`` (foreground) and its complement.
    """
    mask = start
    free = hard == 0
    for _ in range(max(1, iterations)):
        fg_w = mask.astype(np.float64)
        bg_w = 1.0 - fg_w
        if fg_w.sum() < 10 or bg_w.sum() < 10:
            break
        log_fg, log_bg = _histogram(bins, fg_w), _histogram(bins, bg_w)
        unary = colour_weight * (log_fg[bins] - log_bg[bins]) + prior
        unary = np.where(free, unary, np.where(hard > 0, HARD, -HARD)).astype(np.float64)
        new = cut(unary, edges)
        if np.array_equal(new, mask):
            break
        mask = new
    return mask
