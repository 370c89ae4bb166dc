"""One bad image never stops a run (#18 items 3 and 5, #11's leftover checkpoints): unreadable done
images are skipped and counted, images over the memory budget run reduced, an image that runs out
of memory is skipped, a polygon vertex at 2**31 rasterises at the image's cost, orphan checkpoint
files are swept."""

from __future__ import annotations

import os
import time
from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np
import pytest
from learning_support import minimal_plugin, synthetic_project, trained_project

from labeler.core.annotation import Annotation, Category, Kind, State
from labeler.core.geometry import decode_rle, polygons_to_mask
from labeler.learning import autolabel as autolabel_module
from labeler.learning import bigimages
from labeler.learning.autolabel import auto_label
from labeler.learning.checkpoints import load_version
from labeler.learning.dataset import UNREADABLE
from labeler.learning.evaluation import evaluate_version
from labeler.learning.training import train


def _break_first_done(project) -> int:
    record = project.images(done=True)[0]
    path = project.root / record.path
    path.write_bytes(path.read_bytes()[:40])  # a truncated PNG
    return int(record.id)


def test_an_unreadable_done_image_is_skipped_counted_and_reported(backend, tmp_path: Path):
    project = synthetic_project(backend, tmp_path / "proj", images=8, done=6)
    bad = _break_first_done(project)
    plugin = minimal_plugin()
    result = train(project, plugin, epochs=2)
    assert result.version is not None
    assert result.skipped == {UNREADABLE: 1}
    assert any(f"left out image {bad}, which cannot be read" in m for m in result.messages)
    report = evaluate_version(project, load_version(project, result.version, plugin), split="all")
    assert report["images"] == 5 and report["skipped"] == 1 and report["skipped_reasons"] == {UNREADABLE: 1}
    project.close()


def test_the_segmenter_rasterises_a_vertex_at_2_31_as_the_clipped_polygon():
    from labeler_segmenter.data import clip_polygon, rasterise_target

    cls = Category(1, "a", (255, 0, 0))
    huge = np.array([[0.0, 0.0], [2147483648.0, 0.0], [0.0, 20.0]])
    ann = Annotation(image_id=1, category_id=1, kind=Kind.POLYGON, state=State.ACCEPTED, polygons=(huge,))
    target = rasterise_target([ann], [cls], 32, 32)
    expected = polygons_to_mask([clip_polygon(huge, -1, -1, 33, 33)], 32, 32)
    assert (target == np.where(expected, 1, 0)).all() and target[5, 30] == 1 and target[25, 5] == 0
    outside = replace(ann, polygons=(np.array([[100.0, 100.0], [200.0, 100.0], [100.0, 200.0]]),))
    assert not rasterise_target([outside], [cls], 32, 32).any()
    nan = replace(ann, polygons=(np.array([[0.0, 0.0], [np.nan, 0.0], [0.0, 20.0]]),))
    with pytest.raises(ValueError, match="not a finite number"):
        rasterise_target([nan], [cls], 32, 32)


def test_upscale_rle_is_the_nearest_neighbour_stretch():
    from labeler.core.geometry import encode_mask

    rng = np.random.default_rng(0)
    for _ in range(50):
        h, w = (int(v) for v in rng.integers(1, 12, 2))
        big_h, big_w = h + int(rng.integers(0, 25)), w + int(rng.integers(0, 25))
        mask = rng.random((h, w)) < rng.random()
        got = decode_rle(bigimages.upscale_rle(encode_mask(mask), big_h, big_w))
        expected = cv2.resize(mask.astype(np.uint8), (big_w, big_h), interpolation=cv2.INTER_NEAREST).astype(bool)
        assert got.shape == (big_h, big_w) and (got == expected).all()


class _Spy:
    """The minimal plugin, recording the size of every image it is handed, and failing with
    ``MemoryError`` on images as wide as ``oom_width``."""

    def __init__(self, plugin, oom_width: int | None = None) -> None:
        self._plugin = plugin
        self.seen: list[tuple[int, int]] = []
        self.oom_width = oom_width

    def __getattr__(self, name):
        return getattr(self._plugin, name)

    def inputs(self, image, *, settings):
        self.seen.append(image.shape[:2])
        if self.oom_width is not None and image.shape[1] == self.oom_width:
            raise MemoryError
        return self._plugin.inputs(image, settings=settings)


@pytest.fixture
def trained(backend, tmp_path: Path):
    yield from trained_project(backend, tmp_path / "proj", images=8)


def test_an_image_over_the_budget_runs_reduced_and_its_masks_come_at_full_size(trained, monkeypatch):
    project, loaded = trained
    scene = cv2.imread(str(project.root / project.images(done=True)[0].path))  # a scene it learnt
    path = project.root / "images" / "big.png"
    cv2.imwrite(str(path), cv2.resize(scene, (96, 128), interpolation=cv2.INTER_NEAREST))
    (image_id,) = project.add_images([path])
    monkeypatch.setattr(bigimages, "PREDICT_PIXELS", 48 * 32)
    spy = _Spy(loaded.plugin)
    result = auto_label(project, replace(loaded, plugin=spy), [image_id], workers=1)
    assert result.images == 1 and not result.failed
    assert spy.seen and all(h * w <= 48 * 32 for h, w in spy.seen)
    proposals = project.annotations(image_id, states=[State.PROPOSED])
    assert proposals and all(decode_rle(p.rle).shape == (128, 96) for p in proposals)
    assert project.image_size(image_id) == (96, 128)


def test_an_image_that_runs_out_of_memory_is_skipped_and_the_run_goes_on(trained):
    project, loaded = trained
    wide = np.full((16, 48, 3), 90, np.uint8)
    path = project.root / "images" / "wide.png"
    cv2.imwrite(str(path), wide)
    (wide_id,) = project.add_images([path])
    ids = [r.id for r in project.images(done=False)]
    spy = _Spy(loaded.plugin, oom_width=48)
    result = auto_label(project, replace(loaded, plugin=spy), ids, workers=1)
    assert result.failed == {wide_id: "the image does not fit in memory"}
    assert result.images == len(ids) - 1


def test_the_auto_label_runner_never_opens_a_pipe(trained):
    project, loaded = trained
    fifo = project.root / "images" / "fifo.jpg"
    os.mkfifo(fifo)
    (fifo_id,) = project.add_images([fifo])  # listed by name (as an older version's scan did)
    ids = [r.id for r in project.images(done=False)]
    result = autolabel_module.auto_label(project, loaded, ids, workers=1)
    assert "named pipe" in result.failed[fifo_id] and result.images == len(ids) - 1


def test_a_killed_runs_checkpoint_files_are_swept_by_the_next_run(backend, tmp_path: Path):
    project = synthetic_project(backend, tmp_path / "proj", images=8, done=6)
    plugin = minimal_plugin()
    first = train(project, plugin, epochs=2).version
    models = project.models_dir
    old = time.time() - 3600
    orphans = [
        models / "minimal-20240101-000000-beef.safetensors",
        models / "minimal-20240101-000000-beef.json",
        models / "minimal-20240101-000000-beef-selection.safetensors",
        models / ".minimal-20240101-000000-beef.safetensors.0a1b2c3d.tmp",
    ]
    fresh = models / "minimal-20240101-000001-cafe.safetensors"  # another run may be writing it now
    mine = models / "notes.txt"  # not a name training writes
    for path in [*orphans, fresh, mine]:
        path.write_bytes(b"x")
    for path in [*orphans, mine]:
        os.utime(path, (old, old))
    result = train(project, plugin, epochs=2)
    assert not any(p.exists() for p in orphans) and fresh.exists() and mine.exists()
    assert any("removed 4 checkpoint files" in m for m in result.messages)
    for v in (first, result.version):  # the versions' own files are kept
        assert (project.root / v.checkpoint).is_file() and (project.root / v.checkpoint).with_suffix(".json").is_file()
        assert (project.root / v.data["selection_checkpoint"]).is_file()
    project.close()
