"""Box to mask and click refinement: GrabCut (``cv2.grabCut``) on a window around the object.

:func:`prepare` reads the window once per box (and, when given, the model's foreground
probabilities there); :func:`segment` then turns the box plus any clicks into a mask, quickly
enough to run after every click. ``segment`` is a pure function of the prepared window, the
clicks and the mask before the last click, so a result can be recomputed (or dropped as stale)
at any time.

What it does beyond plain GrabCut (each measured by ``benchmarks/bench_assist.py``):

- the window is shrunk to at most :data:`~labeler.assist.window.WORK_SIDE` pixels, so GrabCut can
  run more iterations; the mask is brought back to full resolution with smooth edges;
- seeding: outside the box is background; inside it, the inscribed ellipse is the shape prior;
  with model probabilities, the model's log-odds (weighted :data:`MODEL`) join the prior and the
  model's foreground inside the box is where the cut starts;
- clicks are disks of definite foreground / background, with a wider disk of probable label
  around each, as wide as the click's distance to the current boundary allows; with a model, a
  click also moves the model's threshold around it (:func:`_model_logits`) and its own disk stops
  short of the boundary it was made next to, so a click on a thin strip along the model's edge
  corrects that stretch of edge instead of claiming a disk across it;
- post-processing keeps the regions under the positive clicks (or, without them, the region that
  covers the box best) and fills holes that hold no negative click.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

import cv2
import numpy as np

from labeler.assist import energy
from labeler.assist.window import PixelSource, Window, box_window, grown, is_gray, mask_to_window, read_window

#: GrabCut iterations for the box alone and after each click.
BOX_ITERATIONS = 4
CLICK_ITERATIONS = 2
#: Definite-label disk of a click, in working pixels (radius).
CLICK_RADIUS = 3
#: Extra context around the window for the model, in image pixels (networks need surroundings).
MODEL_CONTEXT = 32

#: Foreground probability map of an ``(h, w, 3)`` uint8 RGB crop: ``(h, w)`` float in [0, 1].
ProbabilityFn = Callable[[np.ndarray], np.ndarray]


@dataclass(frozen=True)
class Click:
    """A click at ``(x, y)`` image pixels: ``positive`` = on the object, else not on it.

    ``room`` is set by :func:`segment` (leave it ``None``): the distance in working pixels from
    the click to the boundary of the mask it corrected, measured when it was made, which bounds
    what the click claims from then on (see :func:`_hard_and_wide`)."""

    x: float
    y: float
    positive: bool
    room: float | None = None


@dataclass(frozen=True)
class Prepared:
    """One object's window, ready for :func:`segment`: ``image`` is the window's RGB pixels at the
    working scale, ``bins`` each pixel's colour-histogram bin, ``edges`` the smoothness weights,
    ``edge_distance`` each pixel's distance to the nearest image edge,
    ``box`` the box in working pixels ``(x0, y0, x1, y1)``, ``prior`` the model's foreground
    probability there (or ``None``), ``initial`` the mask of the box alone (working pixels)."""

    window: Window
    box_xywh: tuple[float, float, float, float]
    image: np.ndarray
    bins: np.ndarray
    edges: tuple[np.ndarray, ...]
    edge_distance: np.ndarray
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
    clicks: tuple[Click, ...] = ()
    """The clicks this mask was made with, their ``room`` set: pass them back with the next click."""

    def full(self, width: int, height: int) -> np.ndarray:
        """``(height, width)`` bool mask of the whole image."""
        out = np.zeros((height, width), dtype=bool)
        w = self.window
        out[w.y0 : w.y1, w.x0 : w.x1] = self.mask
        return out

    @property
    def empty(self) -> bool:
        return not bool(self.mask.any())


def prepare(
    source: PixelSource,
    box_xywh: tuple[float, float, float, float],
    *,
    probability: ProbabilityFn | None = None,
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
    prior = None
    if probability is not None:
        context = grown(window, MODEL_CONTEXT, source.size)
        wide = read_window(source, context)
        p = np.asarray(probability(wide), dtype=np.float32)
        if p.shape != wide.shape[:2]:
            raise ValueError(f"the probability map is {p.shape}, its crop {wide.shape[:2]}")
        ox, oy = context.to_work(window.x0, window.y0)
        h, w = window.work_shape
        oxi, oyi = round(ox), round(oy)
        prior = np.clip(p[oyi : oyi + h, oxi : oxi + w], 0.0, 1.0).astype(np.float32)
        if prior.shape != (h, w):
            prior = np.asarray(cv2.resize(p, (w, h), interpolation=cv2.INTER_LINEAR), dtype=np.float32)
    features = energy.colour_features(image, gray=is_gray(image))
    box_f = (float(box_xywh[0]), float(box_xywh[1]), float(box_xywh[2]), float(box_xywh[3]))
    partial = Prepared(
        window,
        box_f,
        image,
        energy.bin_index(features),
        energy.pairwise(features),
        energy.edge_distance(image),
        box,
        prior,
        np.zeros(image.shape[:2], dtype=bool),
    )
    initial = _run(partial, (), None)
    return Prepared(window, box_f, image, partial.bins, partial.edges, partial.edge_distance, box, prior, initial)


def segment(prepared: Prepared, clicks: Sequence[Click] = (), *, previous: MaskResult | None = None) -> MaskResult:
    """The mask of the prepared box with ``clicks`` (image pixels) as hard constraints.

    ``previous`` is the mask shown before the last click (by default the box's own): GrabCut
    starts from it, and how far each click lies from its boundary sets how wide a region the
    click speaks for. Clicks taken from ``previous.clicks`` keep the ``room`` measured when they
    were made; new ones are measured on ``previous``.
    """
    if not clicks:
        return MaskResult(prepared.window, mask_to_window(prepared.initial, prepared.window), prepared.initial)
    start = prepared.initial
    if previous is not None and previous.window == prepared.window and previous.work.shape == start.shape:
        start = previous.work
    measured = _with_room(prepared, tuple(clicks), start)
    work = _run(prepared, measured, start)
    return MaskResult(prepared.window, mask_to_window(work, prepared.window), work, measured)


# ---- the algorithm ------------------------------------------------------------------------------

#: Log-odds of the box's shape prior at the box's centre (0 on the inscribed ellipse).
SHAPE = 3.0
#: Log-odds the previous mask lends each pixel after a click (so what was right stays).
PREVIOUS = 1.5
#: Weight of the model's log-odds, and their clip.
MODEL = 4.0
MODEL_CLIP = 6.0
#: Log-odds of a click's wider region (up to the current boundary).
WIDE = 6.0
#: Share of a click's region (its distance to the current boundary) that becomes definite.
HARD_SHARE = 0.9
#: Weight of the colour models' log-likelihood ratio.
COLOUR = 1.0
#: With a model: a click moves the model's decision threshold around it, so that the clicked pixel
#: gets this log-odds on the clicked side, fading as a Gaussian whose spread is this many times the
#: click's room (at least MIN_SPREAD working pixels).
THRESHOLD_MARGIN = 2.0
THRESHOLD_SPREAD = 2.0
MIN_SPREAD = 3.0


def _ellipse(prepared: Prepared) -> np.ndarray:
    """Log-odds of the inscribed-ellipse prior: ``SHAPE * (1 - r)`` with ``r`` the normalised
    elliptical radius from the box's centre."""
    h, w = prepared.bins.shape
    bx0, by0, bx1, by1 = prepared.box
    cx, cy = (bx0 + bx1) / 2.0, (by0 + by1) / 2.0
    rx, ry = max(1.0, (bx1 - bx0) / 2.0), max(1.0, (by1 - by0) / 2.0)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    r = np.sqrt(((xx + 0.5 - cx) / rx) ** 2 + ((yy + 0.5 - cy) / ry) ** 2)
    prior: np.ndarray = SHAPE * (1.0 - r)
    return prior


def _work_pixel(prepared: Prepared, click: Click) -> tuple[int, int]:
    """The working pixel ``(col, row)`` a click lands on."""
    h, w = prepared.bins.shape
    x, y = prepared.window.to_work(click.x, click.y)
    return int(np.clip(round(x - 0.5), 0, w - 1)), int(np.clip(round(y - 0.5), 0, h - 1))


def _with_room(prepared: Prepared, clicks: tuple[Click, ...], mask: np.ndarray) -> tuple[Click, ...]:
    """``clicks`` with ``room`` set where it is not: the distance from the click to the nearest
    pixel of ``mask`` whose label differs from the click's pixel's (the boundary the click is
    next to), in working pixels."""
    if all(c.room is not None for c in clicks):
        return clicks
    inside = cv2.distanceTransform(mask.astype(np.uint8), cv2.DIST_L2, 3)
    outside = cv2.distanceTransform((~mask).astype(np.uint8), cv2.DIST_L2, 3)
    limit = float(max(mask.shape))
    out = []
    for click in clicks:
        if click.room is None:
            cx, cy = _work_pixel(prepared, click)
            room = min(float(inside[cy, cx] if mask[cy, cx] else outside[cy, cx]), limit)
            click = replace(click, room=room)
        out.append(click)
    return tuple(out)


def _own_radius(prepared: Prepared, click: Click) -> int:
    """The radius of the disk a click fixes whatever else happens. With a model's probabilities
    the boundary is where the model puts it, to the pixel: the disk then stops short of the
    boundary the click was made next to, so a click in a thin strip claims the strip and not the
    far side of it (which would take a click back). Without a model, :data:`CLICK_RADIUS`."""
    if prepared.prior is None or click.room is None:
        return CLICK_RADIUS
    return int(np.clip(click.room - 1.0, 0, CLICK_RADIUS))


def _hard_and_wide(
    prepared: Prepared, clicks: tuple[Click, ...], previous: np.ndarray | None
) -> tuple[np.ndarray, np.ndarray]:
    """Hard labels (+1 / -1 / 0) and the clicks' wide regions' log-odds."""
    h, w = prepared.bins.shape
    hard = np.full((h, w), -1, dtype=np.int8)
    bx0, by0, bx1, by1 = prepared.box
    hard[by0:by1, bx0:bx1] = 0
    for click in clicks:  # a positive click outside the box extends the object there
        if click.positive and not _in_box(prepared, click):
            _open_towards(hard, prepared, click)
    wide = np.zeros((h, w), dtype=np.float32)
    window = prepared.window
    disks: list[tuple[int, int, int, int, bool]] = []
    if previous is not None:
        inside = cv2.distanceTransform(previous.astype(np.uint8), cv2.DIST_L2, 3)
        outside = cv2.distanceTransform((~previous).astype(np.uint8), cv2.DIST_L2, 3)
    for click in clicks:
        x, y = window.to_work(click.x, click.y)
        cx, cy = _work_pixel(prepared, click)
        own = _own_radius(prepared, click)
        reach = 0
        if previous is not None:
            # a positive click outside the current mask, or a negative one inside it: the region
            # around it, up to the current boundary, probably shares its label
            reach = int(min(float(outside[cy, cx] if click.positive else inside[cy, cx]), max(h, w)))
        if reach > CLICK_RADIUS:
            disk = np.zeros((h, w), np.uint8)
            cv2.circle(disk, (cx, cy), reach, 1, -1)
            wide[disk > 0] = WIDE if click.positive else -WIDE
        # the core of that region is definite, unless a click of the other kind lies in it
        # and no farther than the nearest image edge: a click on a small detached part speaks for it alone
        core = max(own, int(min(HARD_SHARE * reach, float(prepared.edge_distance[cy, cx]))))
        others = [window.to_work(o.x, o.y) for o in clicks if o.positive != click.positive]
        if any(np.hypot(ox - x, oy - y) <= core + CLICK_RADIUS for ox, oy in others):
            core = own
        disks.append((cx, cy, core, own, click.positive))
    for cx, cy, core, _own, positive in disks:
        cv2.circle(hard, (cx, cy), core, 1 if positive else -1, -1)
    for cx, cy, _core, own, positive in disks:  # every click's own pixel stays as clicked
        cv2.circle(hard, (cx, cy), own, 1 if positive else -1, -1)
    return hard, wide


def _model_logits(prepared: Prepared, clicks: tuple[Click, ...]) -> np.ndarray | None:
    """The model's clipped log-odds of the object, with each click's threshold shift: where the
    model puts a clicked pixel on the wrong side, its log-odds around the click are raised (or
    lowered) so that the pixel lands :data:`THRESHOLD_MARGIN` on the clicked side, the shift
    fading with distance (the user's click says the model's threshold is wrong here, not that its
    ranking of the pixels is). Clicks are applied in order, each on the shifts before it."""
    if prepared.prior is None:
        return None
    p = np.clip(prepared.prior.astype(np.float32), 1e-4, 1 - 1e-4)
    logits: np.ndarray = np.clip(np.log(p / (1 - p)), -MODEL_CLIP, MODEL_CLIP)
    h, w = logits.shape
    shift = np.zeros((h, w), np.float32)
    for click in clicks:
        cx, cy = _work_pixel(prepared, click)
        at = float(logits[cy, cx] + shift[cy, cx])
        need = (THRESHOLD_MARGIN - at) if click.positive else (-THRESHOLD_MARGIN - at)
        if (need > 0) != click.positive or need == 0:
            continue  # the model (as shifted so far) already agrees with the click
        sigma = THRESHOLD_SPREAD * max(click.room or 0.0, MIN_SPREAD)
        reach = int(3 * sigma) + 1
        x0, x1, y0, y1 = max(0, cx - reach), min(w, cx + reach + 1), max(0, cy - reach), min(h, cy + reach + 1)
        yy, xx = np.mgrid[y0:y1, x0:x1].astype(np.float32)
        shift[y0:y1, x0:x1] += need * np.exp(-((xx - cx) ** 2 + (yy - cy) ** 2) / (2.0 * sigma * sigma))
    shifted: np.ndarray = logits + shift
    return shifted


def _run(prepared: Prepared, clicks: tuple[Click, ...], previous: np.ndarray | None) -> np.ndarray:
    """Energy of the box, the clicks and the previous mask -> bool mask in working pixels."""
    hard, wide = _hard_and_wide(prepared, clicks, previous)
    logits = _model_logits(prepared, clicks)
    model = None
    if logits is not None:
        model = MODEL * np.clip(logits, -MODEL_CLIP, MODEL_CLIP)
        if clicks:  # what the clicks made of the model is what the holes are judged by
            prepared = replace(prepared, prior=(1.0 / (1.0 + np.exp(-np.clip(logits, -30.0, 30.0)))).astype(np.float32))
    if previous is None:
        prior = _ellipse(prepared)
        start = (prior > 0) if model is None else (model > 0) & (hard == 0)
        iterations = BOX_ITERATIONS
    else:
        prior = np.where(previous, PREVIOUS, -PREVIOUS).astype(np.float32)
        start = previous
        iterations = CLICK_ITERATIONS
    if model is not None:
        prior = prior + model
    prior = prior + wide
    start = (start | (hard > 0)) & (hard >= 0)
    if not start.any():
        start = hard == 0
    mask = energy.segment_energy(
        prepared.bins, prepared.edges, prior, hard, start, iterations=iterations, colour_weight=COLOUR
    )
    return _clean(mask, prepared, clicks, previous)


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
    labels[max(0, y0 - 2) : y1 + 2, max(0, x0 - 2) : x1 + 2] = 0


def _clean(mask: np.ndarray, prepared: Prepared, clicks: tuple[Click, ...], previous: np.ndarray | None) -> np.ndarray:
    """Keep the regions the user means (under a positive click, the one that covers the box best,
    and those mostly inside the previous mask), fill holes without negative clicks."""
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
    keep[_best_region(regions, stats, prepared)] = True
    if previous is not None:
        overlap = np.bincount(regions[previous], minlength=count)
        keep |= overlap * 2 > stats[:, cv2.CC_STAT_AREA]
    keep[0] = False
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
