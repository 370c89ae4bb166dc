"""``labeler demo``: the scene generator's labels are exact, the project is built whole, the scores
are right, and the headless loop runs end to end."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import types
from pathlib import Path

import numpy as np
import pytest
from annotation_support import proposal

from labeler.cli import main
from labeler.cli.demo import has_display
from labeler.core.annotation import Kind, State
from labeler.core.geometry import decode_rle, encode_mask, rle_box
from labeler.core.store import ModelVersion, Project, ProjectError
from labeler.demo import SHAPES, build_demo_project, make_scene, make_scenes
from labeler.demo.loop import baselines, report, score_localizer, score_segmenter
from labeler.demo.project import GROUND_TRUTH
from labeler.demo.scenes import SHAPE_COLORS, mask_box

REPO = Path(__file__).resolve().parents[1]


# ---- the generator --------------------------------------------------------------------------


def test_scenes_have_exact_consistent_labels() -> None:
    scenes = make_scenes(30, seed=3)
    assert [s.shape for s in scenes[:6]] == list(SHAPES) * 2
    for s in scenes:
        assert s.image.shape == (120, 160, 3) and s.image.dtype == np.uint8
        assert s.mask.shape == (120, 160) and s.mask.dtype == bool
        assert s.category_index == SHAPES.index(s.shape)
        assert s.mask.sum() > 100  # a main object, not a speck
        x, y, w, h = s.box_xywh
        assert w > 0 and h > 0 and x >= 0 and y >= 0 and x + w <= 160 and y + h <= 120
        # the box is the tight box of the mask, and agrees with COCO's
        ys, xs = np.nonzero(s.mask)
        assert (xs.min(), ys.min(), xs.max() + 1, ys.max() + 1) == (x, y, x + w, y + h)
        assert rle_box(encode_mask(s.mask)) == s.box_xywh
        # the mask lies inside the box
        inside = np.zeros_like(s.mask)
        inside[int(y) : int(y + h), int(x) : int(x + w)] = True
        assert not (s.mask & ~inside).any()
        # pixels of the mask have the class colour; no pixel outside is that colour
        color = np.array(SHAPE_COLORS[s.shape], dtype=float)
        inside_mean = s.image[s.mask].astype(float).mean(axis=0)
        assert np.abs(inside_mean - color).max() < 40
        distance = np.abs(s.image.astype(float) - color).max(axis=2)
        assert (distance[~s.mask] > 45).mean() > 0.999
        assert 0 <= s.distractors <= 3


def test_distractors_never_touch_the_main_object() -> None:
    import cv2

    for s in make_scenes(20, seed=5):
        ring = cv2.dilate(s.mask.astype(np.uint8), np.ones((7, 7), np.uint8)).astype(bool) & ~s.mask
        # around the object there is only background: muted, never the very dark or light grey of distractors
        ring_pixels = s.image[ring].astype(float)
        assert ring_pixels.mean() > 60 and ring_pixels.mean() < 180


def test_generator_is_deterministic() -> None:
    a, b = make_scenes(5, seed=11), make_scenes(5, seed=11)
    for x, y in zip(a, b, strict=True):
        assert np.array_equal(x.image, y.image) and np.array_equal(x.mask, y.mask) and x.box_xywh == y.box_xywh
    c = make_scenes(5, seed=12)
    assert not np.array_equal(a[0].image, c[0].image)


def test_generator_checks_its_arguments() -> None:
    rng = np.random.default_rng(0)
    with pytest.raises(ValueError, match="unknown shape"):
        make_scene(rng, shape="hexagon")
    with pytest.raises(ValueError, match="at least 48"):
        make_scene(rng, width=20, height=20)
    with pytest.raises(ValueError, match="at least one"):
        make_scenes(0)
    with pytest.raises(ValueError, match="empty mask"):
        mask_box(np.zeros((4, 4), dtype=bool))
    assert make_scene(rng, width=64, height=48, shape="triangle").image.shape == (48, 64, 3)


# ---- the project ----------------------------------------------------------------------------


def test_demo_project_holds_images_labels_and_ground_truth(tmp_path: Path) -> None:
    demo = build_demo_project(tmp_path / "demo", count=10, seed=1)
    assert demo.root == (tmp_path / "demo").resolve()
    assert len(demo.labelled) == 6 and len(demo.unlabelled) == 4
    with Project.open(demo.root) as p:
        assert [c.name for c in p.categories()] == list(SHAPES)
        assert p.image_count() == 10 and p.image_count(done=True) == 6
        for image_id in demo.labelled:
            scene = demo.truth[image_id]
            record = p.image(image_id)
            assert record.done and (record.width, record.height) == (160, 120)
            (ann,) = p.annotations(image_id)
            assert ann.kind is Kind.MASK and ann.state is State.ACCEPTED and ann.is_human
            assert p.category(ann.category_id).name == scene.shape
            assert np.array_equal(decode_rle(ann.rle or {}), scene.mask)
            assert np.array_equal(p.read_image(image_id), scene.image)  # PNG: lossless
        for image_id in demo.unlabelled:
            assert not p.image(image_id).done and p.annotations(image_id) == []
    truth = json.loads((demo.root / GROUND_TRUTH).read_text())
    assert truth["seed"] == 1 and truth["labelled"] == 6 and len(truth["images"]) == 10
    for entry in truth["images"]:
        scene = demo.truth[entry["id"]]
        assert entry["category"] == scene.shape and tuple(entry["box_xywh"]) == scene.box_xywh
        assert np.array_equal(decode_rle(entry["rle"]), scene.mask)
        assert (demo.root / entry["file"]).is_file()
    # nothing is left beside it
    assert sorted(x.name for x in tmp_path.iterdir()) == ["demo"]


def test_demo_project_moves_with_its_folder(tmp_path: Path) -> None:
    demo = build_demo_project(tmp_path / "a", count=4)
    os.replace(tmp_path / "a", tmp_path / "b")
    with Project.open(tmp_path / "b") as p:
        assert p.read_image(demo.unlabelled[0]).shape == (120, 160, 3)


def test_demo_project_default_folder_is_fresh(tmp_path: Path) -> None:
    a = build_demo_project(count=3)
    b = build_demo_project(count=3)
    try:
        assert a.root != b.root and Project.is_project(a.root) and Project.is_project(b.root)
    finally:
        import shutil

        shutil.rmtree(a.root)
        shutil.rmtree(b.root)


def test_demo_refuses_a_used_folder(tmp_path: Path) -> None:
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "something.txt").write_text("mine")
    with pytest.raises(ProjectError, match="not empty"):
        build_demo_project(tmp_path / "full", count=3)
    (tmp_path / "file").write_text("x")
    with pytest.raises(ProjectError, match="is a file"):
        build_demo_project(tmp_path / "file", count=3)
    assert (tmp_path / "full" / "something.txt").read_text() == "mine"
    (tmp_path / "empty").mkdir()
    assert build_demo_project(tmp_path / "empty", count=3).root == (tmp_path / "empty").resolve()


def test_failed_build_leaves_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(self: Project, image_id: int, done: bool = True) -> None:
        raise RuntimeError("disk full")

    monkeypatch.setattr(Project, "set_done", broken)
    with pytest.raises(RuntimeError, match="disk full"):
        build_demo_project(tmp_path / "demo", count=4)
    assert list(tmp_path.iterdir()) == []


# ---- the scores -----------------------------------------------------------------------------


def _propose(
    p: Project, plugin: str, demo_truth: dict, ids: tuple[int, ...], *, kind: Kind, wrong: bool = False
) -> int:
    version = p.add_model_version(ModelVersion(plugin=plugin, settings={}, categories=(1, 2, 3), checkpoint="x"))
    for image_id in ids:
        scene = demo_truth[image_id]
        category = p.category_by_name(SHAPES[(scene.category_index + int(wrong)) % 3])
        assert category is not None
        geo = {"rle": encode_mask(scene.mask)} if kind is Kind.MASK else {"box_xywh": scene.box_xywh}
        p.replace_proposals(
            image_id,
            plugin=plugin,
            proposals=[proposal(image_id, category.id, version=version.id, score=0.9, **geo)],
        )
    return int(version.id or 0)


def test_scores_are_one_for_perfect_proposals_and_zero_for_none(tmp_path: Path) -> None:
    demo = build_demo_project(tmp_path / "d", count=8)
    with Project.open(demo.root) as p:
        seg = _propose(p, "segmenter", demo.truth, demo.unlabelled, kind=Kind.MASK)
        loc = _propose(p, "localizer", demo.truth, demo.unlabelled, kind=Kind.BOX)
        assert score_segmenter(p, demo, seg) == {"mask_iou": 1.0, "class_accuracy": 1.0}
        assert score_localizer(p, demo, loc) == {"box_iou": 1.0, "class_accuracy": 1.0}
        wrong = _propose(p, "other-loc", demo.truth, demo.unlabelled, kind=Kind.BOX, wrong=True)
        assert score_localizer(p, demo, wrong) == {"box_iou": 1.0, "class_accuracy": 0.0}
        nothing = p.add_model_version(ModelVersion(plugin="x", settings={}, categories=(), checkpoint="y"))
        assert score_segmenter(p, demo, nothing.id or 0) == {"mask_iou": 0.0, "class_accuracy": 0.0}
        assert score_localizer(p, demo, nothing.id or 0) == {"box_iou": 0.0, "class_accuracy": 0.0}
    base = baselines(demo)
    assert 0.0 <= base["mean_box_iou"] < 1.0 and 0.0 <= base["majority_class_accuracy"] <= 1.0


# ---- the command ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({"DISPLAY": ":0"}, True),
        ({"WAYLAND_DISPLAY": "wayland-0"}, True),
        ({}, False),
        ({"DISPLAY": ":0", "QT_QPA_PLATFORM": "offscreen"}, False),
    ],
)
def test_has_display(monkeypatch: pytest.MonkeyPatch, env: dict[str, str], expected: bool) -> None:
    for key in ("DISPLAY", "WAYLAND_DISPLAY", "QT_QPA_PLATFORM"):
        monkeypatch.delenv(key, raising=False)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setattr(sys, "platform", "linux")
    assert has_display() is expected


def test_with_a_display_the_window_opens_on_the_project(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    opened: list[str | None] = []

    def run_app(*, path: str | None, screenshot: str | None) -> int:  # the real one's signature
        assert screenshot is None
        opened.append(path)
        return 0

    fake = types.ModuleType("labeler.gui.app")
    fake.run_app = run_app
    monkeypatch.setitem(sys.modules, "labeler.gui.app", fake)
    monkeypatch.setenv("DISPLAY", ":0")
    monkeypatch.delenv("QT_QPA_PLATFORM", raising=False)
    assert main(["demo", "--out", str(tmp_path / "d"), "--images", "4"]) == 0
    assert opened == [str((tmp_path / "d").resolve())]
    assert "demo project:" in capsys.readouterr().out


def test_the_real_window_entry_point_takes_what_demo_passes() -> None:
    """The GUI's ``run_app`` accepts the keywords ``labeler demo`` calls it with."""
    import inspect

    app = pytest.importorskip("labeler.gui.app")
    inspect.signature(app.run_app).bind(path="/some/project", screenshot=None)


def test_bad_options_are_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["demo", "--headless", "--budget", "-1"]) == 2
    assert main(["demo", "--headless", "--images", "1"]) == 2
    (tmp_path / "x").write_text("x")
    assert main(["demo", "--headless", "--out", str(tmp_path / "x")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 3 and all(line.startswith("labeler demo: error: ") for line in err)


def test_report_lines() -> None:
    from labeler.demo.loop import DemoResult, PluginRun

    result = DemoResult(
        runs=(
            PluginRun(
                "segmenter", 1, "mean_iou", {"mean_iou": 0.5}, 3.0, 1.0, 4, {"mask_iou": 0.25, "class_accuracy": 1.0}
            ),
            PluginRun("localizer", 2, "score", {"score": 0.7}, 3.0, 1.0, 4, {"box_iou": 0.75, "class_accuracy": 0.5}),
        ),
        baselines={"mean_box_iou": 0.2, "majority_class_accuracy": 0.4},
        images_scored=4,
    )
    text = "\n".join(report(result))
    assert "mask IoU 0.250" in text and "box IoU  0.750" in text and "mean box IoU 0.200" in text
    assert "validation: mean_iou 0.500" in text


@pytest.mark.slow
def test_headless_demo_runs_end_to_end(tmp_path: Path) -> None:
    env = dict(os.environ, LABELER_THREADS="1", QT_QPA_PLATFORM="offscreen")
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "labeler",
            "demo",
            "--headless",
            "--budget",
            "3",
            "--images",
            "20",
            "--out",
            str(tmp_path / "demo"),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=REPO,
        env=env,
    )
    assert proc.returncode == 0, proc.stderr + proc.stdout
    out = proc.stdout
    assert "Traceback" not in proc.stderr
    for expected in ("demo project:", "mask IoU", "box IoU", "class accuracy", "baselines"):
        assert expected in out
    figures = [
        float(tok)
        for line in out.splitlines()
        if "IoU" in line
        for tok in line.replace("IoU", " ").split()
        if tok.replace(".", "", 1).isdigit() and "." in tok
    ]
    assert figures and all(0.0 <= f <= 1.0 for f in figures)
    with Project.open(tmp_path / "demo") as p:
        versions = p.model_versions()
        assert sorted(v.plugin for v in versions) == ["localizer", "segmenter"]
        assert all(v.active for v in versions)
        undone = [r.id for r in p.images(done=False)]
        assert len(undone) == 8
        # every not-done image got the localizer's one box; human labels were left alone
        for image_id in undone:
            boxes = p.annotations(image_id, states=[State.PROPOSED], kinds=[Kind.BOX])
            assert len(boxes) == 1 and boxes[0].model_version is not None
            assert p.image(image_id).uncertainty is not None
        assert len(p.annotations(states=[State.ACCEPTED])) == 12
