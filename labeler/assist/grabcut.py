"""Box to mask and click refinement: GrabCut (``cv2.grabCut``) on a window around the object.

:func:`prepare` reads the window once per box (and, when given, the model's foreground
probabilities there); :func:`segment` then turns the box plus any clicks into a mask, quickly
enough to run after every click. ``segment`` is a pure function of the prepared window and the
clicks, so a result can be recomputed (or dropped as stale) at any time.

What it does beyond plain GrabCut (each measured by ``benchmarks/bench_assist.py``):

- the window is shrunk to at most :data:`~labeler.assist.window.WORK_SIDE` pixels, so GrabCut can
  run more iterations; the mask is brought back to full resolution with smooth edges;
- seeding: outside the box is background; inside it, a core is probable foreground and a ring
  along the box's sides probable background, so the first colour models are cleaner; with model
  probabilities (and :data:`PRIOR_ALONE`), the model's foreground inside the box is the mask,
  edited by the click regions, without GrabCut (on membrane cells GrabCut only spoiled it);
  otherwise they seed the colour models, and for grayscale images the probability is one of the
  three features GrabCut models (with the intensity and a smoothed intensity);
- clicks are disks of definite foreground / background, with a wider disk of probable label
  around each, as wide as the click's distance to the current boundary allows;
- post-processing keeps the regions under the positive clicks (or, without them, the region that
  covers the box best) and fills holes that hold no negative click.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import cv2
import numpy as np

from labeler.assist.window import ImagePixels, Window, box_window, grown, is_gray, mask_to_window, read_window

#: GrabCut iterations for the box alone and after each click.
BOX_ITERATIONS = 5
CLICK_ITERATIONS = 3
#: Definite-label disk of a click, in working pixels (radius).
CLICK_RADIUS = 3
#: Extra context around the window for the model, in image pixels (networks need surroundings).
MODEL_CONTEXT = 32

#: Foreground probability map of an ``(h, w, 3)`` uint8 RGB crop: ``(h, w)`` float in [0, 1].
ProbabilityFn = Callable[[np.ndarray], np.ndarray]


@dataclass(frozen=True)
class Click:
    """A click at ``(x, y)`` image pixels: ``positive`` = on the object, else not on it."""

    x: float
    y: float
    positive: bool


@dataclass(frozen=True)
class Prepared:
    """One object's window, ready for :func:`segment`: ``image`` is the window's RGB pixels at the
    working scale, ``features`` what GrabCut models (``(h, w, 3)`` uint8), ``box`` the box in
    working pixels ``(x0, y0, x1, y1)``, ``prior`` the model's foreground probability there (or
    ``None``), ``initial`` the mask of the box alone (working pixels)."""

    window: Window
    box_xywh: tuple[float, float, float, float]
    image: np.ndarray
    features: np.ndarray
    box: tuple[int, int, int, int]
    prior: np.ndarray | None
    initial: np.ndarray


@dataclass(frozen=True)
class MaskResult:
    """A mask made by a tool: ``mask`` covers ``window`` at full resolution (``(height, width)``
    of the window), ``work`` is the same at the working scale; :meth:`full` places it in the
    whole image."""

    window: Window
    mask: np.ndarray
    work: np.ndarray

    def full(self, width: int, height: int) -> np.ndarray:
        """``(height, width)`` bool mask of the whole image."""
        out = np.zeros((height, width), dtype=bool)
        w = self.window
        out[w.y0:w.y1, w.x0:w.x1] = self.mask
        return out

    @property
    def empty(self) -> bool:
        return not bool(self.mask.any())


def prepare(
    source: ImagePixels, box_xywh: tuple[float, float, float, float], *, probability: ProbabilityFn | None = None,
) -> Prepared:
    """Read the window around ``box_xywh`` (image pixels, ``(x, y, w, h)``) and make the box's mask.

    ``probability``, when given, is asked once for the object's class probability on the window
    (with :data:`MODEL_CONTEXT` pixels of surroundings).
    """
    window = box_window(box_xywh, source.size)
    image = read_window(source, window)
    box = window.box_to_work(box_xywh)
    if box[2] - box[0] < 2 or box[3] - box[1] < 2:
        raise ValueError(f"the box {box_xywh} is too small to make a mask in")
    prior: np.ndarray | None = None
    if probability is not None:
        context = grown(window, MODEL_CONTEXT, source.size)
        wide = read_window(source, context)
        p = np.asarray(probability(wide), dtype=np.float32)
        if p.shape != wide.shape[:2]:
            raise ValueError(f"the probability map is {p.shape}, its crop {wide.shape[:2]}")
        ox, oy = context.to_work(window.x0, window.y0)
        h, w = window.work_shape
        oxi, oyi = round(ox), round(oy)
        prior = np.clip(p[oyi:oyi + h, oxi:oxi + w], 0.0, 1.0)
        if prior.shape != (h, w):
            prior = cv2.resize(p, (w, h), interpolation=cv2.INTER_LINEAR)
    features = _features(image, prior)
    bx, by, bw, bh = (float(v) for v in box_xywh)
    partial = Prepared(window, (bx, by, bw, bh), image, features, box, prior,
                       np.zeros(image.shape[:2], dtype=bool))
    initial = _run(partial, (), None)
    return Prepared(window, partial.box_xywh, image, features, box, prior, initial)


def segment(prepared: Prepared, clicks: Sequence[Click] = (), *, previous: MaskResult | None = None) -> MaskResult:
    """The mask of the prepared box with ``clicks`` (image pixels) as hard constraints.

    ``previous`` is the mask shown before the last click (by default the box's own): GrabCut
    starts from it, and how far each click lies from its boundary sets how wide a region the
    click speaks for.
    """
    if not clicks:
        work = prepared.initial
    else:
        start = prepared.initial
        if previous is not None and previous.window == prepared.window and previous.work.shape == start.shape:
            start = previous.work
        work = _run(prepared, tuple(clicks), start)
    return MaskResult(prepared.window, mask_to_window(work, prepared.window), work)


# ---- the algorithm ------------------------------------------------------------------------------

def _features(image: np.ndarray, prior: np.ndarray | None) -> np.ndarray:
    """What GrabCut's colour models see: RGB; for grayscale images intensity, smoothed intensity
    and (with a model) its probability, or local contrast."""
    if not is_gray(image):
        return image
    gray = image[..., 0]
    smooth = cv2.GaussianBlur(gray, (0, 0), 2.0)
    if prior is not None:
        third = np.clip(prior * 255.0 + 0.5, 0, 255).astype(np.uint8)
    else:
        mean = cv2.blur(gray.astype(np.float32), (7, 7))
        sq = cv2.blur(gray.astype(np.float32) ** 2, (7, 7))
        third = np.clip(np.sqrt(np.maximum(sq - mean * mean, 0.0)) * 4.0, 0, 255).astype(np.uint8)
    return np.ascontiguousarray(np.dstack([gray, smooth, third]))


def _seed(prepared: Prepared) -> np.ndarray:
    """GrabCut labels of the box alone (see the module docstring)."""
    h, w = prepared.features.shape[:2]
    bx0, by0, bx1, by1 = prepared.box
    labels = np.full((h, w), cv2.GC_BGD, dtype=np.uint8)
    if prepared.prior is not None:
        inside = prepared.prior[by0:by1, bx0:bx1]
        labels[by0:by1, bx0:bx1] = np.where(inside >= 0.5, cv2.GC_PR_FGD, cv2.GC_PR_BGD)
        if not (labels == cv2.GC_PR_FGD).any():
            labels[by0:by1, bx0:bx1] = cv2.GC_PR_FGD
        return labels
    labels[by0:by1, bx0:bx1] = cv2.GC_PR_BGD
    bw, bh = bx1 - bx0, by1 - by0
    rx, ry = max(1, round(bw * RING)), max(1, round(bh * RING))
    labels[by0 + ry:by1 - ry, bx0 + rx:bx1 - rx] = cv2.GC_PR_FGD
    return labels


#: Share of a click's region (its distance to the current boundary) that becomes definite.
HARD_SHARE = 0.6
#: With model probabilities, the mask is the model's foreground edited by the click regions (no GrabCut).
PRIOR_ALONE = True
#: Width of the probable-background ring along the box's sides, as a fraction of the box side.
RING = 0.1


def _click_disks(labels: np.ndarray, prepared: Prepared, clicks: tuple[Click, ...], previous: np.ndarray | None) -> None:
    """Stamp the clicks into ``labels``: definite disks, and wider probable disks."""
    window = prepared.window
    disks: list[tuple[int, int, int, bool]] = []
    if previous is not None:
        inside = cv2.distanceTransform(previous.astype(np.uint8), cv2.DIST_L2, 3)
        outside = cv2.distanceTransform((~previous).astype(np.uint8), cv2.DIST_L2, 3)
    for click in clicks:
        x, y = window.to_work(click.x, click.y)
        cx, cy = int(np.clip(round(x - 0.5), 0, labels.shape[1] - 1)), int(np.clip(round(y - 0.5), 0, labels.shape[0] - 1))
        wide = 0
        if previous is not None:
            # a positive click outside the current mask, or a negative one inside it: the region
            # around it, up to the current boundary, probably shares its label
            wide = int(min(float(outside[cy, cx] if click.positive else inside[cy, cx]), max(labels.shape)))
        if wide > CLICK_RADIUS:
            cv2.circle(labels, (cx, cy), wide, int(cv2.GC_PR_FGD if click.positive else cv2.GC_PR_BGD), -1)
        # the core of that region is definite, unless a click of the other kind lies in it
        hard = max(CLICK_RADIUS, int(HARD_SHARE * wide))
        others = [window.to_work(o.x, o.y) for o in clicks if o.positive != click.positive]
        if any(np.hypot(ox - x, oy - y) <= hard + CLICK_RADIUS for ox, oy in others):
            hard = CLICK_RADIUS
        disks.append((cx, cy, hard, click.positive))
    for cx, cy, hard, positive in disks:  # definite disks last, so they win
        cv2.circle(labels, (cx, cy), hard, int(cv2.GC_FGD if positive else cv2.GC_BGD), -1)


def _run(prepared: Prepared, clicks: tuple[Click, ...], previous: np.ndarray | None) -> np.ndarray:
    """GrabCut labels -> bool mask in working pixels."""
    labels = _seed(prepared)
    if previous is not None:
        bx0, by0, bx1, by1 = prepared.box
        inside = np.zeros_like(previous)
        inside[by0:by1, bx0:bx1] = True
        labels[inside & previous] = cv2.GC_PR_FGD
        labels[inside & ~previous] = cv2.GC_PR_BGD
        # a positive click outside the box extends the object there
    for click in clicks:
        if click.positive and not _in_box(prepared, click):
            _open_towards(labels, prepared, click)
    _click_disks(labels, prepared, clicks, previous)
    iterations = CLICK_ITERATIONS if previous is not None else BOX_ITERATIONS
    if prepared.prior is not None and PRIOR_ALONE:
        # the model's own foreground in the box; its neighbours are cut off by the region rule
        mask = (labels == cv2.GC_PR_FGD) | (labels == cv2.GC_FGD)
    else:
        mask = _grabcut(prepared.features, labels, iterations)
    return _clean(mask, prepared, clicks)


def _in_box(prepared: Prepared, click: Click) -> bool:
    x, y = prepared.window.to_work(click.x, click.y)
    bx0, by0, bx1, by1 = prepared.box
    return bx0 <= x < bx1 and by0 <= y < by1


def _open_towards(labels: np.ndarray, prepared: Prepared, click: Click) -> None:
    """A positive click outside the box: the band between the box and the click becomes
    undecided, so the object may grow there."""
    x, y = prepared.window.to_work(click.x, click.y)
    bx0, by0, bx1, by1 = prepared.box
    x0, x1 = int(min(bx0, x)), int(max(bx1, x + 1))
    y0, y1 = int(min(by0, y)), int(max(by1, y + 1))
    region = labels[max(0, y0 - 2):y1 + 2, max(0, x0 - 2):x1 + 2]
    region[region == cv2.GC_BGD] = cv2.GC_PR_BGD


def _grabcut(features: np.ndarray, labels: np.ndarray, iterations: int) -> np.ndarray:
    fg: np.ndarray = (labels == cv2.GC_FGD) | (labels == cv2.GC_PR_FGD)
    bg = ~fg
    if not fg.any():
        return fg
    if not bg.any():
        return fg
    work = labels.copy()
    bgd, fgd = np.zeros((1, 65), np.float64), np.zeros((1, 65), np.float64)
    try:
        cv2.grabCut(features, work, (0, 0, 0, 0), bgd, fgd, iterations, cv2.GC_INIT_WITH_MASK)  # rect: unused with a mask
    except cv2.error:  # too few samples of one side for its colour model: keep the seed
        return fg
    grown: np.ndarray = (work == cv2.GC_FGD) | (work == cv2.GC_PR_FGD)
    return grown


def _clean(mask: np.ndarray, prepared: Prepared, clicks: tuple[Click, ...]) -> np.ndarray:
    """Keep the regions the user means, fill holes without negative clicks."""
    if not mask.any():
        return mask
    count, regions, stats, _ = cv2.connectedComponentsWithStats(mask.astype(np.uint8), connectivity=8)
    window = prepared.window
    points = [window.to_work(c.x, c.y) for c in clicks]
    keep = np.zeros(count, dtype=bool)
    h, w = mask.shape
    for click, (x, y) in zip(clicks, points, strict=True):
        if click.positive:
            cx, cy = int(np.clip(x, 0, w - 1)), int(np.clip(y, 0, h - 1))
            keep[regions[cy, cx]] = True
    keep[0] = False
    if not keep.any():
        keep[_best_region(regions, stats, prepared)] = True
    out = keep[regions]
    # holes: background regions not touching the window's edge and holding no negative click
    holes = ~out
    count_h, hole_regions = cv2.connectedComponents(holes.astype(np.uint8), connectivity=4)
    edge = np.unique(np.concatenate([hole_regions[0], hole_regions[-1], hole_regions[:, 0], hole_regions[:, -1]]))
    fill = np.ones(count_h, dtype=bool)
    fill[edge] = False
    fill[0] = False
    for click, (x, y) in zip(clicks, points, strict=True):
        if not click.positive:
            cx, cy = int(np.clip(x, 0, w - 1)), int(np.clip(y, 0, h - 1))
            fill[hole_regions[cy, cx]] = False
    if prepared.prior is not None:  # a model that sees a hole there keeps it
        for r in np.flatnonzero(fill):
            if float(prepared.prior[hole_regions == r].mean()) < 0.3:
                fill[r] = False
    filled: np.ndarray = out | fill[hole_regions]
    return filled


def _best_region(regions: np.ndarray, stats: np.ndarray, prepared: Prepared) -> int:
    """The region that best explains the box: the most pixels inside it, ties to the centre."""
    bx0, by0, bx1, by1 = prepared.box
    inside = regions[by0:by1, bx0:bx1]
    counts = np.bincount(inside.ravel(), minlength=len(stats)).astype(np.float64)
    counts[0] = -1.0
    return int(np.argmax(counts))
