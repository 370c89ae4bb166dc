"""The headless demo loop: train both plugins briefly on the done images, auto-label the rest, and
score the proposals against the generated ground truth.

Training and auto-labelling go through the engine's Python API
(:func:`labeler.learning.training.train`, :func:`labeler.learning.autolabel.auto_label`), exactly
as ``labeler train`` and ``labeler auto-label`` do. Scores on the not-done images:

- segmenter: per image, IoU of the union of the proposed masks of the true class with the true
  mask (mean over images; an image with no such proposal scores 0), and class accuracy (the class
  of the largest proposed area is the true one);
- localizer: IoU of its one box with the true box, and class accuracy;
- baselines for scale: the mean training box placed on every image (box IoU), and the most common
  training class (accuracy).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from labeler.core.annotation import Kind, State
from labeler.core.geometry import annotation_mask, box_iou
from labeler.core.store import Project
from labeler.demo.project import DemoProject
from labeler.demo.scenes import SHAPES

PLUGINS: tuple[str, ...] = ("segmenter", "localizer")
# Small, fast networks that suit 160 x 120 scenes and a budget of seconds (the rest are the
# plugins' defaults). The segmenter works at half size: its crops then hold most of a scene.
DEMO_SETTINGS: dict[str, dict[str, Any]] = {
    "segmenter": {"scale": 0.5, "crop": 64, "widths": "8,16,32", "convs": 1, "batch_size": 8},
    "localizer": {"input_size": 64, "width": 16, "batch_size": 16},
}
Say = Callable[[str], None]


@dataclass(frozen=True)
class PluginRun:
    """One plugin's round: its new version, validation metrics, and scores on the not-done images."""

    plugin: str
    version_id: int | None
    metric_name: str
    metrics: dict[str, float]
    train_seconds: float
    label_seconds: float
    proposals: int
    scores: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class DemoResult:
    """Everything the headless demo measured, plugin by plugin, plus the baselines."""

    runs: tuple[PluginRun, ...]
    baselines: dict[str, float]
    images_scored: int


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    union = np.logical_or(a, b).sum()
    return float(np.logical_and(a, b).sum() / union) if union else 1.0


def score_segmenter(project: Project, demo: DemoProject, version_id: int) -> dict[str, float]:
    """Mean mask IoU with the true masks and class accuracy on the not-done images."""
    ious, hits = [], []
    for image_id in demo.unlabelled:
        scene = demo.truth[image_id]
        h, w = scene.mask.shape
        proposals = [
            a
            for a in project.annotations(image_id, states=[State.PROPOSED], kinds=[Kind.MASK])
            if a.model_version == version_id
        ]
        true_id = _category_id(project, scene.shape)
        union = np.zeros((h, w), dtype=bool)
        area_by_class: dict[int, int] = {}
        for ann in proposals:
            mask = annotation_mask(ann, h, w)
            area_by_class[ann.category_id] = area_by_class.get(ann.category_id, 0) + int(mask.sum())
            if ann.category_id == true_id:
                union |= mask
        ious.append(_iou(union, scene.mask))
        hits.append(bool(area_by_class) and max(area_by_class, key=area_by_class.__getitem__) == true_id)
    return {"mask_iou": float(np.mean(ious)), "class_accuracy": float(np.mean(hits))}


def score_localizer(project: Project, demo: DemoProject, version_id: int) -> dict[str, float]:
    """Mean box IoU with the true boxes and class accuracy on the not-done images."""
    ious, hits = [], []
    for image_id in demo.unlabelled:
        scene = demo.truth[image_id]
        boxes = [
            a
            for a in project.annotations(image_id, states=[State.PROPOSED], kinds=[Kind.BOX])
            if a.model_version == version_id
        ]
        if not boxes:
            ious.append(0.0)
            hits.append(False)
            continue
        best = max(boxes, key=lambda a: a.score or 0.0)
        ious.append(box_iou(best.box_xywh or (0, 0, 0, 0), scene.box_xywh))
        hits.append(best.category_id == _category_id(project, scene.shape))
    return {"box_iou": float(np.mean(ious)), "class_accuracy": float(np.mean(hits))}


def baselines(demo: DemoProject) -> dict[str, float]:
    """What guessing scores: the mean labelled box on every image, and the commonest labelled class."""
    labelled = [demo.truth[i] for i in demo.labelled]
    test = [demo.truth[i] for i in demo.unlabelled]
    mean_box = tuple(float(v) for v in np.mean([s.box_xywh for s in labelled], axis=0))
    counts = np.bincount([s.category_index for s in labelled], minlength=len(SHAPES))
    common = int(np.argmax(counts))
    return {
        "mean_box_iou": float(np.mean([box_iou(mean_box, s.box_xywh) for s in test])) if test else 0.0,
        "majority_class_accuracy": float(np.mean([s.category_index == common for s in test])) if test else 0.0,
    }


def _category_id(project: Project, name: str) -> int:
    category = project.category_by_name(name)
    if category is None:
        raise LookupError(f"the demo project lost its category {name!r}")
    return category.id


def run_loop(
    demo: DemoProject,
    *,
    budget: float = 25.0,
    say: Say = print,
    seed: int = 0,
) -> DemoResult:
    """Train each plugin for ``budget`` seconds, auto-label the not-done images with the new
    version, and score the proposals. ``say`` receives the lines of the running commentary."""
    from labeler.learning.autolabel import auto_label, load_model
    from labeler.learning.plugins import get_plugin
    from labeler.learning.training import train

    runs = []
    with Project.open(demo.root) as project:
        for name in PLUGINS:
            plugin = get_plugin(name)
            say(f"training the {name} for {budget:.0f} s on {len(demo.labelled)} done images ...")
            start = time.monotonic()
            result = train(
                project,
                plugin,
                overrides=DEMO_SETTINGS.get(name, {}),
                time_budget=budget,
                from_version=None,
                activate="always",
                seed=seed,
            )
            train_seconds = time.monotonic() - start
            if result.version is None:
                raise RuntimeError(f"training the {name} produced no model version")
            for message in result.messages:
                say(f"  {message}")
            loaded = load_model(project, name, version_id=result.version.id)
            start = time.monotonic()
            labelled = auto_label(project, loaded, list(demo.unlabelled))
            label_seconds = time.monotonic() - start
            version_id = int(result.version.id or 0)
            scores = (score_segmenter if plugin.task == "segmentation" else score_localizer)(project, demo, version_id)
            runs.append(
                PluginRun(
                    plugin=name,
                    version_id=version_id,
                    metric_name=plugin.metric,
                    metrics=dict(result.metrics),
                    train_seconds=train_seconds,
                    label_seconds=label_seconds,
                    proposals=labelled.proposals,
                    scores=scores,
                )
            )
            say(
                f"  version {version_id}: validation {plugin.metric} {result.metrics.get(plugin.metric, float('nan')):.3f}; "
                f"{labelled.proposals} proposals on {labelled.images} images in {label_seconds:.1f} s"
            )
    return DemoResult(runs=tuple(runs), baselines=baselines(demo), images_scored=len(demo.unlabelled))


def report(result: DemoResult) -> list[str]:
    """The figures as lines of text, for the terminal."""
    lines = [f"proposals on the {result.images_scored} images not done, against the generated ground truth:"]
    for run in result.runs:
        validation = ", ".join(f"{k} {v:.3f}" for k, v in sorted(run.metrics.items()))
        lines.append(
            f"  {run.plugin:<10} version {run.version_id}  trained {run.train_seconds:.0f} s  "
            f"validation: {validation or 'none'}"
        )
        if "mask_iou" in run.scores:
            lines.append(
                f"  {'':<10} mask IoU {run.scores['mask_iou']:.3f}   class accuracy {run.scores['class_accuracy']:.3f}"
            )
        else:
            lines.append(
                f"  {'':<10} box IoU  {run.scores['box_iou']:.3f}   class accuracy {run.scores['class_accuracy']:.3f}"
            )
    lines.append(
        f"  baselines  mean box IoU {result.baselines['mean_box_iou']:.3f}   "
        f"majority class accuracy {result.baselines['majority_class_accuracy']:.3f}"
    )
    return lines
