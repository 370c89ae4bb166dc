"""The loop benchmark's simulated annotator: its accounting on cases worked by hand, and the whole
benchmark end to end on generated scenes with a tiny budget."""

from __future__ import annotations

import csv
import importlib.util
import json
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from labeler.core.annotation import Annotation, Kind, State
from labeler.core.geometry import annotation_box, box_iou, encode_mask
from labeler.core.store import Project
from labeler.demo.scenes import SHAPES, make_scenes
from labeler.simulation.annotator import (
    IGNORED,
    UNCOVERED,
    ImageTruth,
    TrueBox,
    manual_seconds,
    review_boxes,
    review_masks,
)
from labeler.simulation.cost import COSTS, outline_vertices, trace_cost
from labeler.simulation.session import SessionSettings, run_session
from labeler.simulation.truth import LabelSource, read_ground_truth

REPO = Path(__file__).resolve().parents[1]


def _box(ann_id: int, category: int, box: tuple[float, float, float, float], score: float) -> Annotation:
    return Annotation(
        image_id=1,
        category_id=category,
        kind=Kind.BOX,
        box_xywh=box,
        state=State.PROPOSED,
        model_version=1,
        score=score,
        id=ann_id,
    )


def _mask(ann_id: int, category: int, mask: np.ndarray, score: float) -> Annotation:
    return Annotation(
        image_id=1,
        category_id=category,
        kind=Kind.MASK,
        rle=encode_mask(mask),
        state=State.PROPOSED,
        model_version=1,
        score=score,
        id=ann_id,
    )


# ---- the cost model ---------------------------------------------------------------------------


def test_a_rectangle_outline_has_four_vertices_and_a_ring_eight() -> None:
    square = np.zeros((40, 40), bool)
    square[5:25, 5:25] = True
    assert outline_vertices(square) == 4
    ring = square.copy()
    ring[10:20, 10:20] = False  # a hole: its outline is traced too
    assert outline_vertices(ring) == 8


def test_regions_under_twenty_pixels_are_left_and_counted() -> None:
    mask = np.zeros((50, 50), bool)
    mask[0:10, 0:10] = True  # 100 px: traced, 4 vertices
    mask[30:33, 30:33] = True  # 9 px: left
    traced, fixed = trace_cost(mask)
    assert (traced.regions, traced.vertices, traced.left, traced.left_pixels) == (1, 4, 1, 9)
    assert traced.seconds == pytest.approx(COSTS.trace_region + 4 * COSTS.trace_vertex)
    assert fixed[0:10, 0:10].all() and not fixed[30:33, 30:33].any()


# ---- boxes, worked by hand --------------------------------------------------------------------


def test_box_review_accepts_fixes_the_class_rejects_and_draws() -> None:
    truth = ImageTruth(
        width=100,
        height=100,
        boxes=(TrueBox(1, (0, 0, 10, 10)), TrueBox(2, (20, 20, 10, 10)), TrueBox(1, (60, 60, 20, 20))),
    )
    shown = [
        _box(11, 1, (0, 0, 10, 10), 0.9),  # right: accepted (1.6 s)
        _box(12, 1, (20, 20, 10, 9), 0.8),  # IoU 0.9, wrong class: accepted and changed (1.6 + 1.0 s)
        _box(13, 1, (60, 60, 12, 12), 0.7),  # IoU 0.36 with the third: rejected (1.6 s), that box drawn (7.0 s)
    ]
    work = review_boxes(1, truth, shown)
    assert work.seconds == pytest.approx(1.6 + (1.6 + 1.0) + 1.6 + 7.0)
    assert (work.shown, work.accepted, work.accepted_unchanged, work.class_changes, work.rejected, work.drawn) == (
        3,
        2,
        1,
        1,
        1,
        1,
    )
    assert work.accept == [11] and work.reject == [13]
    assert [(a.id, a.category_id, a.state, a.model_version) for a in work.edit] == [(12, 2, State.ACCEPTED, None)]
    assert [a.box_xywh for a in work.add] == [(60, 60, 20, 20)]
    assert manual_seconds(truth) == pytest.approx(3 * 7.0)


def test_one_true_box_is_matched_once() -> None:
    truth = ImageTruth(width=50, height=50, boxes=(TrueBox(1, (0, 0, 10, 10)),))
    work = review_boxes(1, truth, [_box(1, 1, (0, 0, 10, 10), 0.6), _box(2, 1, (0, 0, 10, 10), 0.9)])
    assert work.accept == [2] and work.reject == [1]  # the better-scored one is taken first
    assert work.seconds == pytest.approx(2 * 1.6)


# ---- masks, worked by hand --------------------------------------------------------------------


def test_mask_review_accepts_then_paints_out_the_errors() -> None:
    target = np.full((40, 40), UNCOVERED, np.int32)
    target[5:25, 5:25] = 1  # a 20 x 20 square of class 1
    truth = ImageTruth(width=40, height=40, label_map=target)
    proposal = np.zeros((40, 40), bool)
    proposal[5:25, 5:20] = True  # misses a 20 x 5 strip: one region, 4 vertices
    proposal[26:28, 5:10] = True  # spills 10 px outside: left as it is
    stray = np.zeros((40, 40), bool)
    stray[30:36, 30:36] = True  # all outside its class: rejected
    work = review_masks(1, truth, [_mask(1, 1, proposal, 0.9), _mask(2, 1, stray, 0.6)])
    assert work.seconds == pytest.approx(1.6 + 1.6 + (2.0 + 4 * 1.0))
    assert (work.accepted, work.accepted_unchanged, work.rejected) == (1, 1, 1)
    assert (work.traced.regions, work.traced.left, work.traced.left_pixels) == (1, 1, 10)
    assert work.accept == [1] and work.reject == [2]
    # the strip is added as a hand-drawn mask of class 1
    assert len(work.add) == 1 and work.add[0].category_id == 1
    assert manual_seconds(truth) == pytest.approx(2.0 + 4 * 1.0)


def test_a_corrected_mask_proposal_becomes_a_human_label_and_ignored_pixels_cost_nothing() -> None:
    target = np.full((40, 40), 2, np.int32)  # class 2 everywhere ...
    target[10:30, 10:30] = 1  # ... around a square of class 1
    target[0:5, :] = IGNORED  # void: never scored, never painted
    truth = ImageTruth(width=40, height=40, label_map=target)
    square = np.zeros((40, 40), bool)
    square[10:30, 10:34] = True  # spills 4 x 20 = 80 px over class 2 (a region: 4 vertices)
    rest = ~square
    rest[0:5, :] = True  # over the void: does not count
    work = review_masks(1, truth, [_mask(1, 1, square, 0.9), _mask(2, 2, rest, 0.8)])
    assert work.seconds == pytest.approx(2 * 1.6 + (2.0 + 4 * 1.0))
    assert work.accepted == 2 and work.accepted_unchanged == 1
    (edited,) = work.edit
    assert (edited.id, edited.state, edited.model_version) == (1, State.ACCEPTED, None)
    assert work.accept == [2]
    # the painted-out strip comes back as class 2, drawn
    assert [a.category_id for a in work.add] == [2]


# ---- the whole benchmark on generated scenes --------------------------------------------------


def _scenes_as_voc(tmp: Path, count: int) -> tuple[Path, Path]:
    """Generated scenes written as PNGs, with VOC XML from the project's own exporter."""
    from labeler.formats import export_annotations

    images = tmp / "images"
    images.mkdir()
    scenes = make_scenes(count, seed=3)
    with Project.create(tmp / "source") as project:
        cats = [project.add_category(name).id for name in SHAPES]
        for n, scene in enumerate(scenes):
            path = images / f"scene_{n:02d}.png"
            cv2.imwrite(str(path), cv2.cvtColor(scene.image, cv2.COLOR_RGB2BGR))
            (image_id,) = project.add_images([path])
            project.set_image_size(image_id, scene.image.shape[1], scene.image.shape[0])
            project.add_annotation(
                Annotation(
                    image_id=image_id, category_id=cats[scene.category_index], kind=Kind.BOX, box_xywh=scene.box_xywh
                )
            )
        export_annotations(project, tmp / "voc", format="voc")
    return images, tmp / "voc"


def _scenes_as_masks(tmp: Path, count: int) -> tuple[Path, Path]:
    images, labels = tmp / "image", tmp / "label"
    images.mkdir()
    labels.mkdir()
    for n, scene in enumerate(make_scenes(count, seed=5)):
        cv2.imwrite(str(images / f"{n}.png"), cv2.cvtColor(scene.image, cv2.COLOR_RGB2BGR))
        cv2.imwrite(str(labels / f"{n}.png"), (scene.mask * (scene.category_index + 1)).astype(np.uint8))
    return images, labels


def _bench() -> object:
    spec = importlib.util.spec_from_file_location("_bench_loop", REPO / "benchmarks" / "bench_loop.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def cli_args(*flags: str, **options: object) -> list[str]:
    """Command-line words: ``--key value`` per option (``_`` as ``-``; a list repeats the option),
    then ``--flag`` per flag."""
    words: list[str] = []
    for key, value in options.items():
        for item in value if isinstance(value, list) else [value]:
            words += [f"--{key.replace('_', '-')}", str(item)]
    return words + [f"--{flag}" for flag in flags]


def test_bench_loop_end_to_end_on_boxes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    images, voc = _scenes_as_voc(tmp_path, 9)
    out = tmp_path / "loop.json"
    table = tmp_path / "loop.csv"
    picture = tmp_path / "loop.png"
    code = _bench().main(
        cli_args(
            "quiet",
            images=images,
            labels=voc,
            format="voc",
            plugin="localizer",
            seed_images=3,
            retrain_every=3,
            budget=1,
            order="uncertain",
            set=["input_size=64", "width=8"],
            json=out,
            csv=table,
            plot=picture,
        )
    )
    assert code == 0
    printed = capsys.readouterr().out.strip().splitlines()
    summary = json.loads(out.read_text())
    assert printed[-1] == f"effort ratio {summary['effort_ratio']:.3f}"
    for key in ("effort_ratio", "loop_seconds", "manual_seconds", "accepted_fraction", "images", "machine_seconds"):
        assert key in summary
    assert summary["images"] == 9
    assert summary["manual_seconds"] == pytest.approx(9 * 7.0)  # one box per scene
    with open(table, encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == 9
    assert summary["loop_seconds"] == pytest.approx(sum(float(r["seconds"]) for r in rows))
    assert all(float(r["seconds"]) == pytest.approx(7.0) for r in rows[:3])  # the seeds, drawn by hand
    assert summary["effort_ratio"] == pytest.approx(summary["loop_seconds"] / summary["manual_seconds"])
    assert summary["rounds"] and summary["machine_seconds"] > 0
    assert cv2.imread(str(picture)) is not None


def test_a_session_leaves_every_image_done_with_its_true_labels(tmp_path: Path) -> None:
    images, voc = _scenes_as_voc(tmp_path, 8)
    truth = read_ground_truth(tmp_path / "truth", [LabelSource(images, voc, "voc")], masks=False)
    settings = SessionSettings(
        plugin="localizer",
        seed_images=3,
        retrain_every=2,
        budget=1.0,
        order="sequential",
        wait=True,
        overrides={"input_size": 64, "width": 8},
    )
    result = run_session(tmp_path / "work", truth, settings, say=lambda _: None)
    assert [s.step for s in result.steps] == list(range(1, 9))
    assert result.waited_seconds > 0  # it waited for the rounds ...
    assert result.first_proposal_clock is not None
    # ... so every image after the first round's start saw its proposals
    first = result.rounds[0]
    assert all(s.shown >= 0 for s in result.steps)
    assert all(s.model_version is None for s in result.steps if s.clock < first.ready)
    with Project.open(tmp_path / "work") as project:
        assert project.image_count(done=True) == 8
        for record in project.images():
            labels = [a for a in project.annotations(record.id) if a.state is State.ACCEPTED]
            true = truth.truth[(project.root / record.path).resolve()].boxes
            assert len(labels) == len(true) == 1
            assert box_iou(annotation_box(labels[0]), true[0].box_xywh) >= 0.7


def test_bench_loop_end_to_end_on_masks(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    images, labels = _scenes_as_masks(tmp_path, 6)
    out = tmp_path / "loop.json"
    values = ",".join(f"{k + 1}={name}" for k, name in enumerate(SHAPES))
    code = _bench().main(
        cli_args(
            "wait",
            "quiet",
            images=images,
            labels=labels,
            format="masks",
            values=values,
            plugin="segmenter",
            seed_images=3,
            retrain_every=2,
            budget=1,
            set=["widths=4,8,8", "crop=48", "convs=1"],
            json=out,
        )
    )
    assert code == 0
    summary = json.loads(out.read_text())
    assert summary["images"] == 6 and summary["manual_seconds"] > 6 * 2.0
    assert capsys.readouterr().out.strip().splitlines()[-1].startswith("effort ratio ")


def test_bench_loop_says_what_is_missing() -> None:
    with pytest.raises(SystemExit, match="--labels"):
        _bench().main(["--images", "x", "--plugin", "localizer"])
