"""Segmenter quality and speed on the real sets in ``../shared/data`` (membrane, camvid).

    .venv/bin/python benchmarks/segmenter_quality.py --data membrane --budget 300 [--set key=value ...]

Trains the ``segmenter`` plugin with :func:`labeler.learning.loop.fit` for ``--budget`` seconds of
wall-clock time on ``--threads`` CPU threads (2, as the targets assume), then predicts the images it
did not train on and prints mean IoU (overall and per class), pixel accuracy, training images
(crops) per second, inference milliseconds per image (decode + pre-processing + forward + proposals)
and the bare network forward per image.

Splits (fixed): membrane trains on images 0-19 and is measured on 20-23 (sorted numerically);
camvid trains on ``train/`` (15) and is measured on ``val/`` (5). ``--folds K``: K-fold
cross-validation over all the images instead (in the order above, fold k holds out every K-th image
from the k-th; one run per fold; mean, spread and each fold's figures printed). Membrane's class is
``membrane`` (label value 0) and its background is the cell interior; CamVid's 11 classes are
all foreground, its value 11 (unlabelled) is the ignore mask, so background has no true pixels and
counts in the mean only if predicted (see ``labeler_segmenter.postprocess.scores_from_confusion``).
Settings are the plugin's defaults overlaid by the per-set presets below, then by ``--set``.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
from folds import folds_of, summarize  # benchmarks/folds.py, beside this script

from labeler.core.annotation import Annotation, Category, Kind
from labeler.core.geometry import annotation_mask, encode_mask
from labeler.core.images import read_image
from labeler.learning.api import LabelledImage, Prediction, resolve_settings
from labeler.simulation.annotator import IGNORED, UNCOVERED, ImageTruth, manual_seconds, review_masks

CAMVID_CLASSES = (
    "sky",
    "building",
    "pole",
    "road",
    "pavement",
    "tree",
    "sign",
    "fence",
    "car",
    "pedestrian",
    "bicyclist",
)
CAMVID_IGNORE = 11
PRESETS: dict[str, dict[str, str]] = {
    "membrane": {"rotate": "15", "widths": "24,48,96"},
    "camvid": {"scale": "0.5"},
}
"""Per-set settings over the plugin's defaults. Membrane: wider layers (its thin membranes need
the capacity; 0.809 against 0.807 with the default widths, both with test-time flips) and larger
rotations. It keeps the default left-right flips only: its labels sit about one pixel above the
membranes in the images, which up-down flips turn into contradictory targets (a model trained
with them places membranes one pixel below the labels: shifting its output up by one pixel gained
0.005 mean IoU, and training without them gained 0.005 to 0.007). CamVid: half size, so each crop sees twice the
context and a step costs a quarter (its objects stay recognisable; membranes do not)."""


def data_dir() -> Path:
    env = os.environ.get("LABELER_DATA")
    return Path(env) if env else Path(__file__).resolve().parents[2] / "shared" / "data"


def _label_png(path: Path) -> np.ndarray:
    import cv2

    label = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)
    if label is None:
        raise SystemExit(f"cannot read label image {path}")
    return label


def _sample(
    image_id: int, image_path: Path, class_map: np.ndarray, classes: tuple[Category, ...], ignore: np.ndarray | None
) -> LabelledImage:
    """A done image whose label is one mask annotation per class present in ``class_map``
    (values 1..K = classes, 0 = background)."""
    anns = tuple(
        Annotation(image_id=image_id, category_id=c.id, kind=Kind.MASK, rle=encode_mask(class_map == k))
        for k, c in enumerate(classes, start=1)
        if (class_map == k).any()
    )
    return LabelledImage(
        image_id=image_id, image=read_image(image_path), annotations=anns, classes=classes, ignore_mask=ignore
    )


def load_all(name: str) -> tuple[list[LabelledImage], list[Path], int]:
    """Every image of a data set with its path, and how many of them (at the end) make the fixed
    held-out split: membrane's last 4, CamVid's 5 ``val`` images."""
    root = data_dir() / name
    if not root.is_dir():
        raise SystemExit(f"data set not found: {root} (set LABELER_DATA)")
    if name == "membrane":
        classes = (Category(1, "membrane", (255, 0, 0)),)
        paths = sorted((root / "image").glob("*.png"), key=lambda p: int(p.stem))
        samples = []
        for i, p in enumerate(paths):
            label = _label_png(root / "label" / p.name)
            samples.append(_sample(i, p, (label < 128).astype(np.uint8), classes, None))
        return samples, paths, 4
    if name == "camvid":
        classes = tuple(Category(k + 1, n, (0, 0, 0)) for k, n in enumerate(CAMVID_CLASSES))
        samples, paths = [], []
        for split in ("train", "val"):
            for p in sorted((root / split).glob("*.png")):
                label = _label_png(root / f"{split}annot" / p.name)
                ignore = label >= CAMVID_IGNORE
                class_map = np.where(ignore, 0, label.astype(np.int32) + 1)
                samples.append(_sample(len(samples), p, class_map, classes, ignore))
                paths.append(p)
        return samples, paths, sum(1 for p in paths if p.parent.name == "val")
    raise SystemExit(f"unknown data set {name!r}")


def load(name: str) -> tuple[list[LabelledImage], list[LabelledImage], list[Path]]:
    """``(train, held_out, held_out_image_paths)`` of the fixed split."""
    samples, paths, held = load_all(name)
    return samples[:-held], samples[-held:], paths[-held:]


def correction_effort(predictions: list[Prediction], held: list[LabelledImage]) -> tuple[float, float]:
    """What the loop benchmark's annotator spends on the held-out images given these proposals
    (verify each, then trace every error region: :func:`labeler.simulation.annotator.review_masks`)
    and what drawing them by hand costs, in seconds: the figure the loop's effort ratio is made of,
    measured on one trained model."""
    loop = manual = 0.0
    for prediction, sample in zip(predictions, held, strict=True):
        h, w = sample.image.shape[:2]
        label_map = np.full((h, w), UNCOVERED, dtype=np.int32)
        for ann in sample.annotations:
            label_map[annotation_mask(ann, h, w)] = ann.category_id
        if sample.ignore_mask is not None:
            label_map[sample.ignore_mask] = IGNORED
        truth = ImageTruth(width=w, height=h, label_map=label_map)
        shown = [
            Annotation(id=k, image_id=sample.image_id, category_id=p.category_id, kind=p.kind, rle=p.rle, score=p.score)
            for k, p in enumerate(prediction.proposals, start=1)
        ]
        loop += review_masks(sample.image_id, truth, shown).seconds
        manual += manual_seconds(truth)
    return loop, manual


def run_split(
    plugin: Any,
    settings: dict[str, Any],
    train: list[LabelledImage],
    held: list[LabelledImage],
    held_paths: list[Path],
    *,
    args: argparse.Namespace,
    speed: bool,
) -> dict[str, float]:
    """Train on ``train`` for ``args.budget`` seconds, measure on ``held``; print and return the metrics
    (and, with ``speed``, the inference speed)."""
    import torch

    from labeler.learning.loop import fit

    classes = train[0].classes
    t0 = time.perf_counter()
    items = [plugin.prepare(s, settings=settings) for s in train]
    print(f"prepared {len(items)} training images in {time.perf_counter() - t0:.1f} s; held out {len(held)}")

    torch.manual_seed(args.seed)
    model = plugin.build_model(num_classes=len(classes), settings=settings)
    print(f"parameters: {sum(p.numel() for p in model.parameters()):,}")
    last = [0.0]

    def progress(info: dict) -> None:
        if info["elapsed"] - last[0] >= 30 or info["eta"] == 0:
            last[0] = info["elapsed"]
            losses = " ".join(f"{k}={v:.3f}" for k, v in info["losses"].items())
            print(f"  {info['elapsed']:6.1f}s epoch {info['epoch']:6.1f} step {info['step']:5d} {losses}", flush=True)

    result = fit(
        plugin,
        model,
        items,
        settings=settings,
        time_budget=args.budget,
        epochs=args.epochs,
        seed=args.seed,
        progress=progress,
    )
    torch.set_num_threads(args.threads)
    model = result.model.eval()
    print(
        f"trained {result.steps} steps, {result.images} crops in {result.seconds:.1f} s: "
        f"{result.images_per_second:.2f} training crops/s ({settings['crop']}px)"
    )

    predictions = []
    parts = {"decode": 0.0, "inputs": 0.0, "forward": 0.0, "proposals": 0.0}
    with torch.inference_mode():
        model(plugin.inputs(held[0].image, settings=settings))  # warm-up (kernel selection)
        for path in held_paths:
            t0 = time.perf_counter()
            image = read_image(path)
            t1 = time.perf_counter()
            x = plugin.inputs(image, settings=settings)
            t2 = time.perf_counter()
            out = model(x)
            t3 = time.perf_counter()
            predictions.append(plugin.proposals(out, image_shape=image.shape[:2], classes=classes, settings=settings))
            t4 = time.perf_counter()
            for key, dt in zip(parts, (t1 - t0, t2 - t1, t3 - t2, t4 - t3), strict=True):
                parts[key] += dt * 1000 / len(held_paths)
    metrics = plugin.evaluate(predictions, held, settings=settings)
    for key, value in metrics.items():
        if key.startswith("iou/"):
            print(f"  IoU {key[4:]:<12s} {value:.3f}")
    loop_s, manual_s = correction_effort(predictions, held)
    metrics = {**metrics, "effort_ratio": loop_s / manual_s if manual_s else 0.0}
    print(
        f"{args.data}: mean IoU {metrics['mean_iou']:.3f}, pixel accuracy {metrics['pixel_accuracy']:.3f} "
        f"on {len(held)} held-out images; correcting the proposals {loop_s / 60:.1f} min against "
        f"{manual_s / 60:.1f} min by hand (effort ratio {metrics['effort_ratio']:.3f}, the loop benchmark's "
        "annotator and costs)"
    )
    if not speed:
        return dict(metrics)
    infer_ms = sum(parts.values())
    with torch.inference_mode():
        xs = [plugin.inputs(s.image, settings=settings) for s in held]
        t0 = time.perf_counter()
        for x in xs:
            model(x)
        forward_ms = (time.perf_counter() - t0) * 1000 / len(xs)
    print("inference parts, ms/image: " + ", ".join(f"{k} {v:.1f}" for k, v in parts.items()))
    print(
        f"inference {infer_ms:.1f} ms/image (decode + inputs + forward + proposals), bare forward "
        f"{forward_ms:.1f} ms/image: {forward_ms / infer_ms:.0%} of bare-forward speed; "
        f"{sum(len(p.proposals) for p in predictions) / len(predictions):.1f} proposals/image"
    )
    return dict(metrics)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", choices=("membrane", "camvid"), required=True)
    parser.add_argument("--budget", type=float, default=300.0, help="training seconds (wall clock)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="plugin setting")
    parser.add_argument(
        "--epochs",
        type=float,
        default=None,
        help="also stop after this many passes over the training images (fixed work, for "
        "comparing settings on a busy machine)",
    )
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--folds", type=int, default=0, help="K-fold cross-validation (0 = the fixed split)")
    args = parser.parse_args(argv)

    os.environ["LABELER_THREADS"] = str(args.threads)  # fit() sets torch's threads from it
    import torch

    from labeler_segmenter import SegmenterPlugin

    torch.set_num_threads(args.threads)
    plugin = SegmenterPlugin()
    overrides = dict(PRESETS[args.data])
    for item in args.set:
        key, sep, value = item.partition("=")
        if not sep:
            raise SystemExit(f"--set takes KEY=VALUE, not {item!r}")
        overrides[key.strip()] = value.strip()
    settings = resolve_settings(plugin, overrides)
    print(f"settings: {settings}")

    if args.folds > 1:
        samples, paths, _ = load_all(args.data)
        results = []
        for k, held_idx in enumerate(folds_of(len(samples), args.folds)):
            print(f"fold {k + 1}/{args.folds}")
            held_set = set(held_idx)
            train = [x for i, x in enumerate(samples) if i not in held_set]
            results.append(
                run_split(
                    plugin,
                    settings,
                    train,
                    [samples[i] for i in held_idx],
                    [paths[i] for i in held_idx],
                    args=args,
                    speed=False,
                )
            )
        summarize(results, ["mean_iou", "pixel_accuracy", "effort_ratio"], what=f", {args.budget:.0f} s per fold")
        return 0
    train, held, held_paths = load(args.data)
    run_split(plugin, settings, train, held, held_paths, args=args, speed=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
