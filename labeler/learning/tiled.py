"""Auto-labelling images too big to decode whole, by overlapping tiles (detection and segmentation).

When: an image that :func:`labeler.core.tiles.pyramid_info` sends through a tile pyramid (over
:data:`~labeler.core.tiles.PYRAMID_ABOVE_PIXELS`, 100 MP, or a tiled TIFF with a side over
:data:`~labeler.core.tiles.TILED_TIFF_ABOVE_SIDE`), auto-labelled by a plugin whose task is
``"detection"`` or ``"segmentation"``, and pyvips installed. Other images, and the localizer (one
box per image, which must see the whole image), keep the reduced-size path of
:mod:`labeler.learning.bigimages`.

Tiles: squares of :func:`tile_side` full-resolution pixels (the last row and column flush with the
image's edge), overlapping by :data:`OVERLAP_FRACTION` of a side, read at full resolution through
:meth:`labeler.core.tiles.TilePyramid.read_region` (a tiled TIFF straight from the file, other
formats from the pyramid cached beside the project), a batch read ahead in a thread while the
network runs on the one before. Each tile goes through the plugin's own ``inputs`` as a training
image would: the tile side is the median long side of the project's done images (the images the
model learnt from, so objects come at the scale they were learnt at: the detector scales each
tile so its long side is its ``input_size`` exactly as it scaled those images), or
:data:`DEFAULT_TILE_SIDE` when none is known; clamped to :data:`MIN_TILE_SIDE` ..
:data:`MAX_TILE_SIDE`.

Detection: each tile's proposals (the plugin's own NMS within the tile) in full-image pixels; a box
within :data:`EDGE_MARGIN` of a tile edge that is not the image's edge is cut by the tile. An
object no bigger than the overlap is seen whole by a neighbour; a bigger one is cut in every tile
that sees it, and its pieces are joined (:func:`join_cut_boxes`: pieces of one class from
neighbouring tiles that share the band their tiles overlap in, each cut on the side facing the
other). A piece left cut after that (its other part was not found) is dropped. Then one
non-maximum suppression over the whole image
(``cv2.dnn.NMSBoxes``, across classes, IoU the plugin's ``nms_iou`` setting if it has one, else
:data:`NMS_IOU`), so an object in the overlap seen whole by two tiles gets one proposal.

Segmentation: see :mod:`labeler.learning.tiled_masks` (probabilities kept in each tile's central
part, regions merged across bands of tile columns, masks built as run-length encodings; no
full-size array). Masks are refused on images over the pixel limit
(:func:`labeler.core.images.mask_refusal`), as the store refuses them: such an image is reported
with that message and skipped.

Memory: a batch of tiles, their network inputs and outputs, and for segmentation a few bands of
the image's height by a tile's width; never the image.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from labeler.core.annotation import Kind
from labeler.core.images import ImageError
from labeler.learning.api import PluginError, Prediction, Proposal
from labeler.learning.predict import check_prediction, forward, network_input, outputs_to_prediction

if TYPE_CHECKING:
    from labeler.core.store import Project
    from labeler.core.tiles import SourceInfo, TilePyramid
    from labeler.learning.checkpoints import LoadedModel

TILED_TASKS = ("detection", "segmentation")
"""Plugin tasks that auto-label huge images by tiles."""
OVERLAP_FRACTION = 0.25
"""Overlap of neighbouring tiles, as a fraction of the tile side: at least the largest object."""
DEFAULT_TILE_SIDE = 1024
"""Tile side (full-resolution pixels) when the project has no done image of known size."""
MIN_TILE_SIDE = 256
MAX_TILE_SIDE = 4096
MAX_SEGMENT_TILE_SIDE = 512
"""Largest segmentation tile: the segmenter runs at full resolution (its ``scale``) on any tile up
to its ``max_side``, so a smaller tile changes nothing but memory, which grows with the tile's
area (its default network peaks near 0.9 GB of RSS on a 1024 x 1024 input, 0.3 GB on 512)."""
TILE_BATCH = 8
"""Tiles read, and sent through the network, at once."""
EDGE_MARGIN = 0.01
"""A box within this fraction of a tile side (at least 2 pixels) of an inner tile edge is cut."""
NMS_IOU = 0.5
"""IoU of the image-wide non-maximum suppression when the plugin has no ``nms_iou`` setting."""

TileProgress = Callable[[int, int], None]
"""Called with ``(tiles done, tiles in all)`` after each batch of tiles."""


class TilingCancelled(Exception):
    """The run was stopped while an image was being predicted by tiles."""


def axis_starts(length: int, side: int, overlap: int) -> list[int]:
    """Start offsets of tiles of ``side`` pixels covering ``[0, length)`` with at least
    ``overlap`` pixels in common between neighbours; the last tile ends at ``length`` (one tile
    of ``length`` when it is no longer than ``side``)."""
    if length <= side:
        return [0]
    step = max(1, side - overlap)
    count = -(-(length - side) // step) + 1
    return sorted({min(k * step, length - side) for k in range(count)})


def central_bounds(starts: Sequence[int], side: int, length: int) -> list[tuple[int, int]]:
    """The part ``[c0, c1)`` of each tile (along one axis) that is kept: neighbouring tiles split
    their overlap half-and-half; the first starts at 0 and the last ends at ``length``."""
    cuts = [0] + [(starts[k - 1] + min(side, length) + starts[k]) // 2 for k in range(1, len(starts))] + [length]
    return [(cuts[k], cuts[k + 1]) for k in range(len(starts))]


@dataclass(frozen=True)
class TileGrid:
    """The tiles of a ``width`` x ``height`` image: column starts ``xs``, row starts ``ys``, in
    full-resolution pixels, each tile ``side`` (or the image's side, if smaller) square."""

    width: int
    height: int
    side: int
    overlap: int
    xs: tuple[int, ...]
    ys: tuple[int, ...]

    @classmethod
    def for_image(cls, width: int, height: int, *, side: int, overlap: int | None = None) -> TileGrid:
        if overlap is None:
            overlap = int(side * OVERLAP_FRACTION)
        if not 0 <= overlap < side:
            raise ValueError(f"the overlap must be in [0, {side}), not {overlap}")
        xs = tuple(axis_starts(width, side, overlap))
        ys = tuple(axis_starts(height, side, overlap))
        return cls(width, height, side, overlap, xs, ys)

    def rect(self, col: int, row: int) -> tuple[int, int, int, int]:
        """``(x, y, w, h)`` of tile ``(col, row)``."""
        x, y = self.xs[col], self.ys[row]
        return x, y, min(self.side, self.width - x), min(self.side, self.height - y)

    @property
    def count(self) -> int:
        return len(self.xs) * len(self.ys)


def tiled_info(path: Path, task: str) -> SourceInfo | None:
    """The header of ``path`` if a plugin of ``task`` auto-labels it by tiles, else ``None``."""
    if task not in TILED_TASKS:
        return None
    from labeler.core.tiles import pyramid_info

    return pyramid_info(path)


def tile_side(project: Project, task: str = "detection") -> int:
    """The tile side for this project's models of ``task`` (see the module docstring); for
    segmentation at most :data:`MAX_SEGMENT_TILE_SIDE`."""
    sides = [max(r.width, r.height) for r in project.images(done=True) if r.width and r.height]
    side = DEFAULT_TILE_SIDE if not sides else round(float(np.median(sides)))
    side = int(min(MAX_TILE_SIDE, max(MIN_TILE_SIDE, side)))
    return min(side, MAX_SEGMENT_TILE_SIDE) if task == "segmentation" else side


def open_full_resolution(path: Path, cache_dir: Path, info: SourceInfo) -> TilePyramid:
    """A reader of ``path``'s full resolution by regions: a tiled TIFF (upright) is read from the
    file itself, without building the rest of its pyramid; other images through their pyramid in
    ``cache_dir`` (built first if it is not there)."""
    from labeler.core.tiles import Level, TilePyramid, open_pyramid

    if info.tiled and info.orientation == 1:
        source = Path(path).resolve()
        return TilePyramid(source, source, (Level(0, 1, info.width, info.height),), source_level0=True)
    return open_pyramid(path, cache_dir)


def _read_ahead(
    reader: TilePyramid, rects: Sequence[tuple[int, int, int, int]], batch: int
) -> Iterator[list[tuple[tuple[int, int, int, int], np.ndarray]]]:
    """The tiles at ``rects`` in groups of ``batch``, the next group read in a thread meanwhile."""
    groups = [list(rects[k : k + batch]) for k in range(0, len(rects), batch)]

    def read(group: list[tuple[int, int, int, int]]) -> list[np.ndarray]:
        return [reader.read_region(0, *rect) for rect in group]

    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="labeler-tiles") as pool:
        pending = pool.submit(read, groups[0]) if groups else None
        for k, group in enumerate(groups):
            assert pending is not None
            pixels = pending.result()
            pending = pool.submit(read, groups[k + 1]) if k + 1 < len(groups) else None
            yield list(zip(group, pixels, strict=True))


def tile_outputs(loaded: LoadedModel, tiles: Sequence[np.ndarray], *, device: str | None = None) -> list[Any]:
    """The network's outputs for each tile: one forward pass for same-shaped tiles on a GPU, or
    on the CPU for inputs small enough to batch there (auto-labelling's own rule,
    :data:`~labeler.learning.autolabel.CPU_BATCH_IMAGE_ELEMENTS`), else one by one (a batch of
    eight 1024 x 1024 segmenter inputs would hold gigabytes of activations)."""
    import torch

    from labeler.learning.autolabel import BATCH_ELEMENTS, CPU_BATCH_IMAGE_ELEMENTS, _split_outputs

    device = loaded.device if device is None else device
    xs = [network_input(loaded.plugin, t, settings=loaded.settings, device="cpu") for t in tiles]
    on_gpu = str(device).startswith("cuda")
    small = all(
        x.numel() * (len(xs) if on_gpu else 1) <= (BATCH_ELEMENTS if on_gpu else CPU_BATCH_IMAGE_ELEMENTS) for x in xs
    )
    if len(xs) > 1 and small and all(x.shape == xs[0].shape for x in xs):
        split = _split_outputs(forward(loaded.plugin, loaded.model, torch.cat(xs).to(device)), len(xs))
        if split is not None:
            return split
    return [forward(loaded.plugin, loaded.model, x.to(device)) for x in xs]


@dataclass
class _Run:
    """What a tiled prediction needs besides the model: cancel and progress."""

    cancel: threading.Event | None = None
    progress: TileProgress | None = None

    def step(self, done: int, total: int) -> None:
        if self.cancel is not None and self.cancel.is_set():
            raise TilingCancelled("auto-labelling was stopped")
        if self.progress is not None:
            self.progress(done, total)


def predict_tiled(
    loaded: LoadedModel,
    path: Path,
    info: SourceInfo,
    *,
    cache_dir: Path,
    side: int,
    overlap: int | None = None,
    batch: int | None = None,
    cancel: threading.Event | None = None,
    progress: TileProgress | None = None,
) -> Prediction:
    """The checked proposals of ``loaded`` on the image at ``path`` (header ``info``), predicted
    by tiles of ``side`` pixels (see the module docstring), in full-resolution pixels.

    Raises :class:`ImageError` when a tile cannot be read or masks cannot be made on an image of
    this size, :class:`TilingCancelled` when ``cancel`` is set, :class:`PluginError` when the
    plugin misbehaves."""
    from labeler.core.images import mask_refusal

    batch = TILE_BATCH if batch is None else max(1, batch)
    batch = TILE_BATCH if batch is None else max(1, batch)
    width, height = info.upright_size
    task = loaded.plugin.task
    if task == "segmentation":
        refusal = mask_refusal(width, height)
        if refusal is not None:
            raise ImageError(f"{path.name}: {refusal}")
    grid = TileGrid.for_image(width, height, side=side, overlap=overlap)
    reader = open_full_resolution(path, cache_dir, info)
    run = _Run(cancel, progress)
    if task == "detection":
        prediction = _detect(loaded, reader, grid, batch=batch, run=run)
    elif task == "segmentation":
        from labeler.learning.tiled_masks import segment_tiled

        prediction = segment_tiled(loaded, reader, grid, batch=batch, step=run.step)
    else:
        raise ValueError(f"plugins of task {task!r} do not predict by tiles")
    return check_prediction(loaded.plugin, prediction, image_shape=(height, width), classes=loaded.classes)


def tiles_column_major(grid: TileGrid) -> list[tuple[int, int, int, int]]:
    """Every tile's rect, column by column (top to bottom within a column)."""
    return [grid.rect(c, r) for c in range(len(grid.xs)) for r in range(len(grid.ys))]


def _detect(loaded: LoadedModel, reader: TilePyramid, grid: TileGrid, *, batch: int, run: _Run) -> Prediction:
    boxes: list[np.ndarray] = []
    scores: list[float] = []
    categories: list[int] = []
    doubts: list[float] = []
    pieces: list[CutBox] = []
    margin = edge_margin(grid.side)
    done = 0
    rects = tiles_column_major(grid)
    run.step(0, len(rects))
    for group in _read_ahead(reader, rects, batch):
        outputs = tile_outputs(loaded, [pixels for _, pixels in group])
        for (rect, pixels), out in zip(group, outputs, strict=True):
            tile = outputs_to_prediction(
                loaded.plugin, out, image_shape=pixels.shape[:2], classes=loaded.classes, settings=loaded.settings
            )
            if not tile.proposals:
                doubts.append(tile.uncertainty)
            for p in tile.proposals:
                if Kind(p.kind) is not Kind.BOX or p.box_xywh is None:
                    raise PluginError(loaded.plugin.name, "a detection plugin proposed something other than a box")
                box = np.asarray(p.box_xywh, dtype=np.float64) + np.array([rect[0], rect[1], 0.0, 0.0])
                if not cut_by_tile(box, rect, (grid.width, grid.height), margin=margin):
                    boxes.append(box)
                    scores.append(float(p.score))
                    categories.append(p.category_id)
                else:
                    pieces.append(CutBox(box, float(p.score), p.category_id, rect))
        done += len(group)
        run.step(done, len(rects))
    for joined in join_cut_boxes(pieces, (grid.width, grid.height), margin=margin):
        boxes.append(joined.box)
        scores.append(joined.score)
        categories.append(joined.category_id)
    iou = float(loaded.settings.get("nms_iou", NMS_IOU))
    return stitch_boxes(np.asarray(boxes).reshape(-1, 4), np.asarray(scores), categories, iou=iou, doubts=doubts)


def edge_margin(side: int) -> float:
    """Pixels from an inner tile edge within which a box counts as cut (:data:`EDGE_MARGIN`)."""
    return max(2.0, EDGE_MARGIN * side)


def cut_by_tile(
    box_xywh: np.ndarray, rect: tuple[int, int, int, int], image_size: tuple[int, int], *, margin: float
) -> bool:
    """Whether a box ``(x, y, w, h)`` (full-image pixels) found in the tile at ``rect`` reaches
    within ``margin`` of one of the tile's edges that is not an edge of the ``(width, height)``
    image: the tile then saw only part of the object."""
    x, y, w, h = (float(v) for v in box_xywh)
    tx, ty, tw, th = rect
    width, height = image_size
    return bool(
        (tx > 0 and x <= tx + margin)
        or (ty > 0 and y <= ty + margin)
        or (tx + tw < width and x + w >= tx + tw - margin)
        or (ty + th < height and y + h >= ty + th - margin)
    )


@dataclass(frozen=True)
class CutBox:
    """A box ``(x, y, w, h)`` (full-image pixels) found in the tile at ``rect`` and cut by it."""

    box: np.ndarray
    score: float
    category_id: int
    rect: tuple[int, int, int, int]


def join_cut_boxes(pieces: Sequence[CutBox], image_size: tuple[int, int], *, margin: float) -> list[CutBox]:
    """The objects bigger than the tiles' overlap, from their pieces (boxes cut by their tiles,
    see :func:`cut_by_tile`): two pieces of one class from neighbouring tiles are parts of one
    object when, along each axis, either their extents agree (IoU at least 0.5) or they meet
    across the tiles' edges (each cut on the side facing the other, both covering at least half of
    the band their tiles overlap in). Each group of pieces becomes the box around them all, with
    the best score of its pieces, kept only if no side of it is still cut (a part not found); the
    ``rect`` of a joined box is its own extent."""
    if not pieces:
        return []
    extents = np.array([[p.box[0], p.box[1], p.box[0] + p.box[2], p.box[1] + p.box[3]] for p in pieces])
    tiles = np.array([[r[0], r[1], r[0] + r[2], r[1] + r[3]] for r in (p.rect for p in pieces)], dtype=np.float64)
    width, height = image_size
    # cut[i] = (left, top, right, bottom): the piece reaches that inner edge of its tile
    cut = np.stack(
        [
            (tiles[:, 0] > 0) & (extents[:, 0] <= tiles[:, 0] + margin),
            (tiles[:, 1] > 0) & (extents[:, 1] <= tiles[:, 1] + margin),
            (tiles[:, 2] < width) & (extents[:, 2] >= tiles[:, 2] - margin),
            (tiles[:, 3] < height) & (extents[:, 3] >= tiles[:, 3] - margin),
        ],
        axis=1,
    )
    by_tile: dict[tuple[float, float], list[int]] = {}
    for i, piece in enumerate(pieces):
        by_tile.setdefault((piece.rect[0], piece.rect[1]), []).append(i)
    xs = sorted({k[0] for k in by_tile})
    ys = sorted({k[1] for k in by_tile})
    parent = list(range(len(pieces)))

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    def along(a: int, b: int, axis: int) -> bool:
        lo, hi = extents[[a, b], axis], extents[[a, b], axis + 2]
        inter = min(hi) - max(lo)
        if inter <= 0:
            return False
        if inter >= 0.5 * (max(hi) - min(lo)):
            return True  # the same extent
        first, second = (a, b) if tiles[a, axis] < tiles[b, axis] else (b, a)
        band = tiles[first, axis + 2] - tiles[second, axis]  # where the two tiles overlap
        return bool(band > 0 and cut[first, axis + 2] and cut[second, axis] and inter >= 0.5 * band)

    for (tx, ty), members in by_tile.items():
        cx, cy = xs.index(tx), ys.index(ty)
        neighbours = [
            (xs[i], ys[j])
            for i in range(cx, min(cx + 2, len(xs)))
            for j in range(max(cy - 1, 0), min(cy + 2, len(ys)))
            if (i, j) != (cx, cy) and (i > cx or j > cy)
        ]
        for key in neighbours:
            for a in members:
                for b in by_tile.get(key, ()):
                    if pieces[a].category_id == pieces[b].category_id and along(a, b, 0) and along(a, b, 1):
                        parent[root(a)] = root(b)
    groups: dict[int, list[int]] = {}
    for i in range(len(pieces)):
        groups.setdefault(root(i), []).append(i)
    joined = []
    for members in groups.values():
        if len(members) < 2:
            continue
        x0, y0 = extents[members, 0].min(), extents[members, 1].min()
        x1, y1 = extents[members, 2].max(), extents[members, 3].max()
        edges = (x0, y0, x1, y1)
        still_cut = any(
            cut[i, side] and abs(extents[i, side] - edges[side]) <= margin for i in members for side in range(4)
        )
        if still_cut:
            continue
        box = np.array([x0, y0, x1 - x0, y1 - y0])
        rect = (int(x0), int(y0), int(np.ceil(x1 - x0)), int(np.ceil(y1 - y0)))
        best = max(members, key=lambda i: pieces[i].score)
        joined.append(CutBox(box, pieces[best].score, pieces[best].category_id, rect))
    return joined


def stitch_boxes(
    boxes: np.ndarray, scores: np.ndarray, categories: Sequence[int], *, iou: float, doubts: Sequence[float] = ()
) -> Prediction:
    """One proposal per object from the whole boxes ``(N, 4)`` ``(x, y, w, h)`` of every tile:
    OpenCV's non-maximum suppression across classes (``cv2.dnn.NMSBoxes``, ``iou``), best score
    first. Uncertainty as the detector's: the mean ``1 - |2 p - 1|`` over the kept boxes, else the
    largest of ``doubts`` (the tiles' own uncertainties when they proposed nothing)."""
    import cv2

    if len(boxes) == 0:
        return Prediction(proposals=(), uncertainty=float(max(doubts, default=0.0)))
    rects = [tuple(float(v) for v in b) for b in boxes]
    conf = [float(s) for s in scores]
    kept = cv2.dnn.NMSBoxes(rects, conf, 0.0, iou, top_k=len(rects))
    order = sorted((int(i) for i in np.asarray(kept).reshape(-1)), key=lambda i: -conf[i])
    proposals = tuple(
        Proposal(category_id=int(categories[i]), kind=Kind.BOX, score=conf[i], box_xywh=rects[i])  # type: ignore[arg-type]
        for i in order
    )
    kept_scores = np.asarray([conf[i] for i in order])
    uncertainty = float(np.mean(1.0 - np.abs(2.0 * kept_scores - 1.0))) if len(order) else 0.0
    return Prediction(proposals=proposals, uncertainty=float(np.clip(uncertainty, 0.0, 1.0)))
