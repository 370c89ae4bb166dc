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

from labeler.core.annotation import Category, Kind, State  # noqa: E402
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


def _project(tmp_path: Path, plugin: Any, *, width: int = 6000, height: int = 5000, squares=SQUARES):
    project = Project.create(tmp_path / "proj")
    category = project.add_category("square")
    _write_tiff(project.root / "big.tif", width, height, squares)
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


BIG_SQUARES = [  # bigger than the overlap (256 px of 1024-px tiles): no tile sees them whole
    (700, 100, 600),  # across one column edge
    (1400, 1400, 700),  # across the corner of four tiles
    (3000, 2000, 1500),  # over three tiles each way: the middle ones cut on both sides
    (300, 3800, 120),  # small, inside one tile
]


def test_objects_bigger_than_the_overlap_are_joined_from_their_pieces(tmp_path):
    project, loaded = _project(tmp_path, BrightBoxes(), squares=BIG_SQUARES)
    image_id = project.images()[0].id
    result = auto_label(project, loaded, [image_id])
    assert result.images == 1 and not result.failed
    boxes = sorted(a.box_xywh for a in project.annotations(image_id, states=[State.PROPOSED]))
    assert boxes == sorted((float(x), float(y), float(s), float(s)) for x, y, s in BIG_SQUARES)
    project.close()


def test_a_piece_whose_other_part_was_not_found_is_dropped_and_classes_do_not_mix():
    image = (6000, 5000)
    left, right = (0, 0, 1024, 1024), (768, 0, 1024, 1024)
    piece_left = tiled.CutBox(np.array([700.0, 100.0, 324.0, 600.0]), 0.9, 1, left)  # cut at x = 1024
    piece_right = tiled.CutBox(np.array([768.0, 100.0, 532.0, 600.0]), 0.7, 1, right)  # cut at x = 768
    (joined,) = tiled.join_cut_boxes([piece_left, piece_right], image, margin=2.0)
    assert joined.box.tolist() == [700.0, 100.0, 600.0, 600.0] and joined.score == 0.9
    assert tiled.join_cut_boxes([piece_left], image, margin=2.0) == []
    other_class = tiled.CutBox(piece_right.box, 0.7, 2, right)
    assert tiled.join_cut_boxes([piece_left, other_class], image, margin=2.0) == []
    shifted = tiled.CutBox(np.array([768.0, 500.0, 532.0, 600.0]), 0.7, 1, right)  # another object lower down
    assert tiled.join_cut_boxes([piece_left, shifted], image, margin=2.0) == []


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


class ColourSegmenter:
    """A hand-built segmentation network (3 x 3 receptive field, as the plugin contract wants:
    ``(1, K + 1, h, w)`` logits): red regions are class 1, green ones class 2, the rest background,
    from the plugin's normalised input."""

    def __init__(self) -> None:
        import torch

        conv = torch.nn.Conv2d(3, 3, 3, padding=1, bias=False)
        weight = torch.zeros(3, 3, 3, 3)
        weight[0, :, 1, 1] = torch.tensor([0.0, 0.0, 1.0])  # background: blue
        weight[1, :, 1, 1] = torch.tensor([1.0, 0.0, 0.0])
        weight[2, :, 1, 1] = torch.tensor([0.0, 1.0, 0.0])
        weight[:, :, 0, 1] = weight[:, :, 1, 1] * 0.25  # a little context from above and below
        weight[:, :, 2, 1] = weight[:, :, 1, 1] * 0.25
        conv.weight.data = weight * 4.0
        self.conv = conv.eval()

    def __call__(self, x: Any) -> Any:
        return self.conv(x)

    def eval(self) -> ColourSegmenter:
        return self


def _picture(width: int, height: int, seed: int = 0) -> np.ndarray:
    """Blue background, red and green discs and bars of many sizes (specks included) everywhere,
    many of them across tile edges."""
    import cv2

    rng = np.random.default_rng(seed)
    pixels = np.zeros((height, width, 3), dtype=np.uint8)
    pixels[..., 2] = 200
    for _ in range(60):
        colour = (230, 0, 0) if rng.random() < 0.5 else (0, 230, 0)
        x, y = int(rng.integers(0, width)), int(rng.integers(0, height))
        cv2.circle(pixels, (x, y), int(rng.integers(1, 90)), colour, -1)
    for _ in range(8):
        x, y = int(rng.integers(0, width)), int(rng.integers(0, height))
        cv2.rectangle(pixels, (x, y), (x + int(rng.integers(200, 900)), y + 12), (230, 0, 0), -1)
    for _ in range(200):  # specks of 1-3 pixels: absorbed by their neighbours, as on a whole image
        x, y = int(rng.integers(0, width - 3)), int(rng.integers(0, height - 3))
        pixels[y : y + int(rng.integers(1, 4)), x : x + int(rng.integers(1, 4))] = (0, 230, 0)
    return pixels


def _painted(proposals, classes, shape):
    from labeler.core.geometry import decode_rle

    out = np.zeros(shape, dtype=np.uint8)
    index = {c.id: k for k, c in enumerate(classes, start=1)}
    for p in proposals:
        mask = decode_rle(p.rle)
        assert not (out[mask] > 0).any()  # regions never overlap
        out[mask] = index[p.category_id]
    return out


def test_segmenter_by_tiles_equals_the_whole_image_prediction(tmp_path):
    from labeler.learning.api import resolve_settings
    from labeler.learning.predict import predict_image
    from labeler_segmenter.plugin import SegmenterPlugin

    plugin = SegmenterPlugin()
    project = Project.create(tmp_path / "proj")
    classes = (project.add_category("red"), project.add_category("green"))
    settings = resolve_settings(plugin, {"max_side": 4096, "min_region": 16})
    version = project.add_model_version(
        ModelVersion(plugin=plugin.name, settings=settings, categories=(1, 2), checkpoint="x.safetensors")
    )
    loaded = LoadedModel(plugin, version, ColourSegmenter(), classes, settings, "cpu")
    width, height = 1900, 1300
    pixels = _picture(width, height)
    path = project.root / "big.tif"
    pyvips.Image.new_from_array(pixels).tiffsave(str(path), tile=True, tile_width=256, tile_height=256)
    from labeler.core.tiles import probe

    info = probe(path)
    whole = predict_image(plugin, loaded.model, pixels, classes=classes, settings=settings)
    by_tiles = tiled.predict_tiled(loaded, path, info, cache_dir=project.root / ".tiles", side=512, overlap=128)
    expected = whole.extra["label_map"]
    got = _painted(by_tiles.proposals, classes, (height, width))
    # the network sees 1 pixel around each pixel, far inside the 64 pixels each tile keeps from
    # its edges, and small regions are absorbed with their whole neighbourhood in view: the same map
    assert np.array_equal(got, expected)
    assert len(by_tiles.proposals) == len(whole.proposals) > 40
    by_mask = {p.rle["counts"]: p.score for p in whole.proposals}
    assert all(by_mask[p.rle["counts"]] == pytest.approx(p.score, abs=1e-5) for p in by_tiles.proposals)
    assert by_tiles.uncertainty == pytest.approx(whole.uncertainty, abs=1e-5)
    project.close()


def test_segmenter_by_tiles_refuses_masks_over_the_pixel_limit(tmp_path, monkeypatch):
    from labeler.core.images import ImageError
    from labeler.core.tiles import probe
    from labeler_segmenter.plugin import SegmenterPlugin

    monkeypatch.setenv("LABELER_MAX_PIXELS", str(1000 * 1000))
    plugin = SegmenterPlugin()
    path = tmp_path / "big.tif"
    pyvips.Image.new_from_array(_picture(1200, 1000)).tiffsave(str(path), tile=True)
    classes = ()
    loaded = LoadedModel(plugin, ModelVersion("segmenter", {}, (), "x"), ColourSegmenter(), classes, {}, "cpu")
    with pytest.raises(ImageError, match="No masks on this 1,200 x 1,000 image"):
        tiled.predict_tiled(loaded, path, probe(path), cache_dir=tmp_path, side=512)


def test_auto_label_segments_a_huge_image_by_bands_never_holding_it_whole(tmp_path, monkeypatch):
    from labeler.learning.api import resolve_settings
    from labeler_segmenter.plugin import SegmenterPlugin

    plugin = SegmenterPlugin()
    project = Project.create(tmp_path / "proj")
    classes = (project.add_category("red"), project.add_category("green"))
    settings = resolve_settings(plugin, {"max_side": 4096, "min_region": 16})
    version = project.add_model_version(
        ModelVersion(plugin=plugin.name, settings=settings, categories=(1, 2), checkpoint="x.safetensors"),
        activate=True,
    )
    loaded = LoadedModel(plugin, version, ColourSegmenter(), classes, settings, "cpu")
    width, height = 6000, 1500  # a side over TILED_TIFF_ABOVE_SIDE: auto-labelled by tiles
    pixels = _picture(width, height, seed=3)
    path = project.root / "wide.tif"
    pyvips.Image.new_from_array(pixels).tiffsave(str(path), tile=True, tile_width=256, tile_height=256)
    del pixels
    project.add_images([path])
    image_id = project.images()[0].id
    result = auto_label(project, loaded, [image_id])
    assert result.images == 1 and not result.failed and result.proposals > 40
    masks = project.annotations(image_id, states=[State.PROPOSED])
    assert all(a.kind is Kind.MASK and list(a.rle["size"]) == [height, width] for a in masks)
    project.close()


def test_segmenter_memory_by_tiles_does_not_grow_with_the_image(tmp_path):
    """Three times the width, the same peak: bands are the image's height by a tile column, the
    rest is a batch of tiles; only the mask runs grow with the image."""
    import torch  # noqa: F401 - its import's own objects are not the run's

    from labeler.core.tiles import probe
    from labeler.learning.api import resolve_settings
    from labeler_segmenter.plugin import SegmenterPlugin

    plugin = SegmenterPlugin()
    settings = resolve_settings(plugin, {"max_side": 4096, "min_region": 16})
    classes = (Category(1, "red", (255, 0, 0)), Category(2, "green", (0, 255, 0)))
    loaded = LoadedModel(
        plugin, ModelVersion("segmenter", settings, (1, 2), "x"), ColourSegmenter(), classes, settings, "cpu"
    )
    peaks = []
    for width in (4000, 12000):
        path = tmp_path / f"wide{width}.tif"
        pyvips.Image.new_from_array(_picture(width, 1200, seed=5)).tiffsave(str(path), tile=True)
        tracemalloc.start()
        prediction = tiled.predict_tiled(loaded, path, probe(path), cache_dir=tmp_path, side=1024, batch=2)
        peaks.append(tracemalloc.get_traced_memory()[1])
        tracemalloc.stop()
        assert prediction.proposals
    assert peaks[1] < 1.25 * peaks[0]
    assert peaks[1] < 12000 * 1200 * 4  # under one full-size int32 region map (58 MB)


def test_tiles_are_the_size_of_the_training_images(tmp_path):
    project = Project.create(tmp_path / "proj")
    assert tiled.tile_side(project) == tiled.DEFAULT_TILE_SIDE  # nothing learnt from yet
    project.add_images([f"a{k}.jpg" for k in range(3)], sizes=[(640, 480), (800, 600), (900, 700)])
    project.set_done_many([r.id for r in project.images()])
    assert tiled.tile_side(project, "detection") == 800  # the median long side of the done images
    assert tiled.tile_side(project, "segmentation") == tiled.MAX_SEGMENT_TILE_SIDE
    project.close()
