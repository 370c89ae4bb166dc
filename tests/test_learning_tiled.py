"""Auto-labelling huge images by overlapping tiles: stitched boxes, seamless masks, bounded memory."""

from __future__ import annotations

import itertools
import threading
import tracemalloc
from pathlib import Path
from typing import Any

import numpy as np
import pytest

pyvips = pytest.importorskip("pyvips")

from labeler.core.annotation import Kind, State  # noqa: E402
from labeler.core.store import ModelVersion, Project  # noqa: E402
from labeler.core.tiles import TilePyramid  # noqa: E402
from labeler.learning import tiled  # noqa: E402
from labeler.learning.api import Prediction, Proposal  # noqa: E402
from labeler.learning.autolabel import auto_label, iter_auto_label  # noqa: E402
from labeler.learning.checkpoints import LoadedModel  # noqa: E402
from labeler.learning.tiled import TileGrid, axis_starts, central_bounds, cut_by_tile, stitch_boxes  # noqa: E402


def test_tiles_cover_the_image_with_the_overlap_and_split_it_half_and_half():
    starts = axis_starts(6000, 1024, 256)
    assert starts[0] == 0 and starts[-1] == 6000 - 1024
    assert all(b - a <= 1024 - 256 for a, b in itertools.pairwise(starts))
    bounds = central_bounds(starts, 1024, 6000)
    assert bounds[0][0] == 0 and bounds[-1][1] == 6000
    assert all(a[1] == b[0] for a, b in itertools.pairwise(bounds))  # no gap, no double
    for (c0, c1), s in zip(bounds, starts, strict=True):
        assert s <= c0 < c1 <= s + 1024
    assert axis_starts(500, 1024, 256) == [0] and central_bounds([0], 1024, 500) == [(0, 500)]


def test_a_box_cut_by_an_inner_tile_edge_gives_way_to_the_whole_one():
    image = (3000, 2000)
    left, right = (0, 0, 1024, 1024), (768, 0, 1024, 1024)
    cut = np.array([900.0, 100.0, 124.0, 80.0])  # reaches the left tile's right edge (x = 1024)
    whole = np.array([900.0, 100.0, 200.0, 80.0])
    assert cut_by_tile(cut, left, image, margin=2.0)
    assert not cut_by_tile(whole, right, image, margin=2.0)
    assert not cut_by_tile(np.array([0.0, 0.0, 50.0, 50.0]), left, image, margin=2.0)  # the image's own edge
    # the same object seen whole by two tiles (it lies in their overlap): one proposal after NMS
    twice = np.array([[800.0, 300.0, 150.0, 150.0], [800.5, 300.0, 149.0, 151.0]])
    out = stitch_boxes(twice, np.array([0.8, 0.9]), [1, 1], iou=0.5)
    assert len(out.proposals) == 1 and out.proposals[0].score == pytest.approx(0.9)


class BrightBoxes:
    """A detection plugin whose "network" is the identity and whose proposals are the bounding
    boxes of the bright blobs of a tile (clipped to it, as a real detector's are)."""

    name = "bright"
    task = "detection"
    metric = "map50"
    settings = ()

    def __init__(self) -> None:
        self.shapes: list[tuple[int, int]] = []
        self.lock = threading.Lock()

    def inputs(self, image: np.ndarray, *, settings: Any) -> Any:
        import torch

        with self.lock:
            self.shapes.append(image.shape[:2])
        return torch.from_numpy(np.ascontiguousarray(image[..., 0]))[None]

    def proposals(self, outputs: Any, *, image_shape: Any, classes: Any, settings: Any) -> Prediction:
        import cv2

        tile = outputs[0].numpy()
        count, _, stats, _ = cv2.connectedComponentsWithStats((tile > 200).astype(np.uint8))
        found = tuple(
            Proposal(classes[0].id, Kind.BOX, 0.9, box_xywh=tuple(float(v) for v in stats[k, :4]))  # type: ignore[arg-type]
            for k in range(1, count)
        )
        return Prediction(proposals=found, uncertainty=0.1 if found else 0.0)


class Identity:
    def __call__(self, x: Any) -> Any:
        return x

    def eval(self) -> Identity:
        return self


SQUARES = [  # (x, y, side): across a column edge, a row edge, a corner of four tiles, inside one tile
    (980, 200, 150),
    (2100, 720, 140),
    (1500, 1480, 160),
    (300, 300, 100),
    (5800, 4850, 150),  # at the image's corner
]


def _write_tiff(path: Path, width: int, height: int, squares: list[tuple[int, int, int]]) -> None:
    pixels = np.full((height, width, 3), 40, dtype=np.uint8)
    for x, y, s in squares:
        pixels[y : y + s, x : x + s] = 255
    image = pyvips.Image.new_from_array(pixels)
    image.tiffsave(str(path), tile=True, tile_width=256, tile_height=256, compression="deflate")


def _project(tmp_path: Path, plugin: Any, *, width: int = 6000, height: int = 5000):
    project = Project.create(tmp_path / "proj")
    category = project.add_category("square")
    _write_tiff(project.root / "big.tif", width, height, SQUARES)
    project.add_images([project.root / "big.tif"])
    version = project.add_model_version(
        ModelVersion(plugin=plugin.name, settings={}, categories=(category.id,), checkpoint="none.safetensors"),
        activate=True,
    )
    loaded = LoadedModel(plugin, version, Identity(), (category,), {}, "cpu")
    return project, loaded


def test_detector_by_tiles_proposes_each_object_once_with_its_whole_box(tmp_path, monkeypatch):
    plugin = BrightBoxes()
    project, loaded = _project(tmp_path, plugin)
    image_id = project.images()[0].id
    reads: list[tuple[int, int]] = []
    original = TilePyramid.read_region

    def recording(self, level, x, y, width, height):
        reads.append((width, height))
        return original(self, level, x, y, width, height)

    monkeypatch.setattr(TilePyramid, "read_region", recording)
    monkeypatch.setattr(tiled, "TILE_BATCH", 2)
    import torch  # noqa: F401 - its import's own objects are not the run's

    tracemalloc.start()
    steps = []
    result = auto_label(project, loaded, [image_id], progress=steps.append)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert result.images == 1 and not result.failed
    boxes = sorted(a.box_xywh for a in project.annotations(image_id, states=[State.PROPOSED]))
    assert boxes == sorted((float(x), float(y), float(s), float(s)) for x, y, s in SQUARES)
    grid = TileGrid.for_image(6000, 5000, side=tiled.DEFAULT_TILE_SIDE)
    assert len(reads) == grid.count == 8 * 7  # every tile read once, at full resolution
    assert set(reads) == {(1024, 1024)} and set(plugin.shapes) == {(1024, 1024)}
    # memory grows with the batch, never with the image: two batches of two tiles in the air (each
    # read copied once out of libvips) is 24 MB, the image's RGB alone would be 90 MB
    assert peak < 8 * 1024 * 1024 * 3 + 4_000_000 < 6000 * 5000 * 3
    assert any(s.tiles is not None for s in steps) or len(steps) == 1
    project.close()


def test_a_corrupt_tile_is_that_images_error_and_keeps_its_proposals(tmp_path, monkeypatch):
    from labeler.core.images import ImageError

    plugin = BrightBoxes()
    project, loaded = _project(tmp_path, plugin, width=4200, height=1200)
    image_id = project.images()[0].id
    assert auto_label(project, loaded, [image_id]).proposals > 0
    before = {a.id for a in project.annotations(image_id, states=[State.PROPOSED])}
    calls = {"n": 0}
    original = TilePyramid.read_region

    def failing(self, level, x, y, width, height):
        calls["n"] += 1
        if calls["n"] == 3:
            raise ImageError("big.tif: not a readable image (TIFFReadEncodedTile failed)")
        return original(self, level, x, y, width, height)

    monkeypatch.setattr(TilePyramid, "read_region", failing)
    result = auto_label(project, loaded, [image_id])
    assert "TIFFReadEncodedTile" in result.failed[image_id]
    assert {a.id for a in project.annotations(image_id, states=[State.PROPOSED])} == before
    project.close()


def test_closing_the_run_stops_an_image_between_batches_of_tiles(tmp_path, monkeypatch):
    plugin = BrightBoxes()
    project, loaded = _project(tmp_path, plugin)
    monkeypatch.setattr(tiled, "TILE_BATCH", 1)
    monkeypatch.setattr("labeler.learning.autolabel.TILE_PROGRESS_SECONDS", 0.01)
    slow = threading.Event()
    original = TilePyramid.read_region

    def slow_read(self, *args):
        slow.wait(0.05)
        return original(self, *args)

    monkeypatch.setattr(TilePyramid, "read_region", slow_read)
    steps = iter_auto_label(project, loaded, [project.images()[0].id])
    first = next(steps)
    assert first.tiles is not None and first.done == 0 and first.tiles[1] == 56
    steps.close()  # returns once the tiled image has stopped at its next batch
    assert len(plugin.shapes) < 56
    assert not project.annotations(states=[State.PROPOSED])
    project.close()
