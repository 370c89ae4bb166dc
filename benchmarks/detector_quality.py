"""Detector quality and speed on the real sets in ``../shared/data`` (bccd; fruit and raccoon).

    .venv/bin/python benchmarks/detector_quality.py --data bccd --budget 300 [--folds K] [--set key=value ...]

bccd is read as a user would bring it in: a project is made in a temporary folder over
``bccd/JPEGImages`` and ``bccd/Annotations`` imported with labeler's VOC importer (``labeler
import P bccd/Annotations --format voc``); its images and accepted boxes are read back from the
store. fruit and raccoon are read, and split, by ``benchmarks/localizer_quality.py``, so the
figures compare with the localizer's on the same held-out images.

Training: :func:`labeler.learning.loop.fit` for ``--budget`` seconds on ``--threads`` threads
with the plugin's defaults (or ``--set``). Printed on the held-out images: COCO mAP@0.5 and
mAP@[.5:.95] overall and per class (pycocotools' COCOeval, through the plugin's ``evaluate``),
and the mean IoU of the best-scored proposal with the labelled box when every image holds one
object (the localizer's ``box_iou``). Speed: milliseconds per image of the bare forward, of the
whole prediction (inputs, forward, NMS) and with decoding; and (``--autolabel``, on bccd) the
model stored as a version of the project and ``labeler auto-label``'s engine
(:func:`labeler.learning.autolabel.auto_label`: decoding, network, NMS, storage) run over a folder
of at least 64 of the held-out images, in images per second.

Held-out split (bccd): images ordered by the SHA-1 of their file stem; the first 20 % are held
out. ``--folds K``: K-fold cross-validation over that order (fold k holds out every K-th image
from the k-th on), one training run per fold, mean and spread printed.

Other processes on the machine change the speed figures (and, through the time budget, the
quality ones); say what else was running when quoting them.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.util
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
from folds import folds_of, summarize  # benchmarks/folds.py, beside this script
from timing import mean_ms  # benchmarks/timing.py

from labeler.core.geometry import box_iou
from labeler.core.images import read_image
from labeler.learning.api import LabelledImage, resolve_settings

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
HELD_OUT = 0.2


def data_root() -> Path:
    env = os.environ.get("LABELER_DATA")
    return Path(env) if env else REPO.parent / "shared" / "data"


def _script(name: str) -> Any:
    spec = importlib.util.spec_from_file_location(f"_bench_{name}", HERE / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def load_bccd(project_dir: Path) -> tuple[Any, list[LabelledImage], list[Path]]:
    """The bccd set imported through the VOC importer into a new project at ``project_dir``:
    ``(project, samples, image paths)`` in the SHA-1 order of the file stems."""
    from labeler.core.store import Project
    from labeler.formats.voc import import_voc
    from labeler.learning.dataset import labelled_image, project_classes

    base = data_root() / "bccd"
    if not base.is_dir():
        raise SystemExit(f"bccd not found at {base} (set LABELER_DATA)")
    project = Project.create(project_dir)
    paths = sorted((base / "JPEGImages").glob("*.jpg"), key=lambda p: hashlib.sha1(p.stem.encode()).hexdigest())
    ids = project.add_images(paths)
    report = import_voc(project, base / "Annotations", images_dir=base / "JPEGImages")
    classes = project_classes(project)
    samples = [labelled_image(project, i, classes) for i in ids]
    print(f"bccd: imported {report}", flush=True)
    return project, samples, paths


def run(
    train: list[LabelledImage],
    held: list[LabelledImage],
    held_paths: list[Path],
    overrides: dict[str, str],
    *,
    budget: float,
    threads: int = 2,
    seed: int = 0,
    speed: bool = True,
    autolabel: Any = None,
    log: Any = print,
) -> dict[str, Any]:
    """Train on ``train``, measure on ``held``; returns the figures. ``autolabel(model, settings)``,
    if given, measures the engine's auto-labelling and returns its figures."""
    import torch

    import labeler.learning.loop as loop
    from labeler_detector import DetectorPlugin

    plugin = DetectorPlugin()
    settings = resolve_settings(plugin, overrides)
    classes = list(train[0].classes)
    log(
        f"{len(train)} training, {len(held)} held-out images, classes {[c.name for c in classes]}; "
        f"settings {json.dumps(overrides) if overrides else 'defaults'}"
    )
    torch.set_num_threads(threads)
    items = [plugin.prepare(s, settings=settings) for s in train]
    torch.manual_seed(seed)
    model = plugin.build_model(num_classes=len(classes), settings=settings)
    set_threads = loop._set_threads
    loop._set_threads = lambda world: torch.set_num_threads(threads)
    try:
        result = loop.fit(plugin, model, items, settings=settings, time_budget=budget, seed=seed)
    finally:
        loop._set_threads = set_threads
    model = result.model.eval()
    log(
        f"trained {result.steps} steps, {result.epochs:.1f} epochs, {result.images_per_second:.1f} views/s, "
        f"last losses { {k: round(v, 4) for k, v in result.losses.items()} }"
    )

    def predict(samples: list[LabelledImage]) -> list[Any]:
        out = []
        with torch.inference_mode():
            for s in samples:
                x = plugin.inputs(s.image, settings=settings)
                out.append(
                    plugin.proposals(model(x), image_shape=s.image.shape[:2], classes=classes, settings=settings)
                )
        return out

    predictions = predict(held)
    metrics = plugin.evaluate(predictions, held, settings=settings)
    figures: dict[str, Any] = {
        "settings": overrides,
        "budget_s": budget,
        "held_out": len(held),
        **metrics,
        "train_views_per_s": result.images_per_second,
        "epochs": result.epochs,
        "proposals_per_image": float(np.mean([len(p.proposals) for p in predictions])),
    }
    if all(len(s.annotations) == 1 for s in held):
        ious = []
        for p, s in zip(predictions, held, strict=True):
            boxes = [q for q in p.proposals if q.box_xywh is not None]
            truth = s.annotations[0].box_xywh
            ious.append(box_iou(max(boxes, key=lambda q: q.score).box_xywh, truth) if boxes and truth else 0.0)
        figures["best_box_iou"] = float(np.mean(ious))
    per_class = "  ".join(f"{c.name} {metrics.get('map50/' + c.name, float('nan')):.3f}" for c in classes)
    log(
        f"held-out: mAP@0.5 {metrics['map50']:.3f}  mAP@[.5:.95] {metrics['map']:.3f}  per class mAP@0.5: {per_class}"
        + (f"  best-proposal box IoU {figures['best_box_iou']:.3f}" if "best_box_iou" in figures else "")
        + f"  ({figures['proposals_per_image']:.1f} proposals/image)"
    )
    if speed:
        inputs = [plugin.inputs(s.image, settings=settings) for s in held]
        with torch.inference_mode():
            forward_ms = mean_ms(model, inputs, warmup=3)
        t0 = time.perf_counter()
        predict(held)
        predict_ms = 1000 * (time.perf_counter() - t0) / len(held)
        t0 = time.perf_counter()
        with torch.inference_mode():
            for path in held_paths:
                image = read_image(path)
                plugin.proposals(
                    model(plugin.inputs(image, settings=settings)),
                    image_shape=image.shape[:2],
                    classes=classes,
                    settings=settings,
                )
        decode_ms = 1000 * (time.perf_counter() - t0) / len(held_paths)
        figures.update(forward_ms=forward_ms, predict_ms=predict_ms, predict_with_decode_ms=decode_ms)
        log(
            f"speed, one image at a time: bare forward {forward_ms:.1f} ms, predict (inputs + forward + NMS) "
            f"{predict_ms:.1f} ms, with full-size decoding {decode_ms:.1f} ms"
        )
    if autolabel is not None:
        figures.update(autolabel(model, settings))
    return figures


def autolabel_speed(
    project: Any, held_ids: list[int], held_paths: list[Path], classes: list[Any], *, folder: int = 64, log: Any = print
) -> Any:
    """A callback for :func:`run`: stores the model as a version of ``project`` and auto-labels a
    folder of at least ``folder`` held-out images (files repeated under other names), best of three."""

    def measure(model: Any, settings: dict[str, Any]) -> dict[str, float]:
        from labeler.core.store import ModelVersion
        from labeler.learning.autolabel import auto_label
        from labeler.learning.checkpoints import (
            checkpoint_stem,
            classes_metadata,
            load_version,
            save_checkpoint,
        )

        bench_models = _script("bench_models")
        stem = checkpoint_stem("detector")
        weights = save_checkpoint(
            project.models_dir,
            stem,
            model,
            {
                "plugin": "detector",
                "task": "detection",
                "metric": "map50",
                "settings": settings,
                "classes": classes_metadata(classes),
                "parent": None,
                "data": {},
                "metrics": {},
                "created": time.time(),
            },
        )
        version = project.add_model_version(
            ModelVersion(
                plugin="detector",
                settings=dict(settings),
                categories=tuple(c.id for c in classes),
                checkpoint=weights.relative_to(project.root).as_posix(),
                metrics={},
                data={},
                parent=None,
                created=time.time(),
            ),
            activate=True,
        )
        from labeler.learning.plugins import get_plugin

        loaded = load_version(project, version, get_plugin("detector"))
        paths = bench_models.speed_folder(Path(project.root) / "folder", held_paths, folder)
        ids = project.add_images(paths)
        images = [read_image(p) for p in paths]
        seconds = forward = streamed = float("inf")
        proposals = 0
        for _ in range(3):
            forward = min(forward, bench_models.bare_forward_seconds(loaded, images))
            streamed = min(streamed, bench_models.bare_forward_seconds(loaded, images, as_auto_label=True))
            done = auto_label(project, loaded, ids)
            seconds, proposals = min(seconds, done.seconds), done.proposals
        n = len(ids)
        log(
            f"auto-label (decode, network, NMS, storage) over {n} images: {n / seconds:.1f} images/s "
            f"({1000 * seconds / n:.1f} ms/image, {proposals / n:.1f} proposals/image); bare forward "
            f"{1000 * forward / n:.1f} ms/image one by one, {1000 * streamed / n:.1f} ms as auto-labelling runs it"
        )
        return {
            "autolabel_images_per_s": n / seconds,
            "autolabel_ms": 1000 * seconds / n,
            "forward_ms_one_by_one": 1000 * forward / n,
            "forward_ms_streamed": 1000 * streamed / n,
        }

    return measure


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", choices=("bccd", "fruit", "raccoon"), required=True)
    parser.add_argument("--budget", type=float, default=300.0, help="training seconds (per fold)")
    parser.add_argument("--folds", type=int, default=0, help="K-fold cross-validation (bccd; 0 = the fixed split)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="plugin setting")
    parser.add_argument("--threads", type=int, default=2, help="torch threads (the targets assume 2 cores)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--autolabel", action="store_true", help="also measure the engine's auto-labelling (bccd)")
    parser.add_argument("--no-speed", action="store_true", help="skip the per-image speed figures")
    parser.add_argument("--json", action="store_true", help="also print the figures as JSON lines")
    args = parser.parse_args(argv)
    overrides = dict(kv.split("=", 1) for kv in args.set)
    log = lambda text: print(text, flush=True)  # noqa: E731
    results = []
    with tempfile.TemporaryDirectory(prefix="labeler-detector-") as tmp:
        if args.data == "bccd":
            project, samples, paths = load_bccd(Path(tmp) / "project")
            ids = [s.image_id for s in samples]
            n_held = round(HELD_OUT * len(samples))
            splits = folds_of(len(samples), args.folds) if args.folds > 1 else [list(range(n_held))]
            for k, held_idx in enumerate(splits):
                held_set = set(held_idx)
                train = [s for i, s in enumerate(samples) if i not in held_set]
                held = [samples[i] for i in held_idx]
                held_paths = [paths[i] for i in held_idx]
                if len(splits) > 1:
                    log(f"fold {k + 1}/{len(splits)}")
                measure = (
                    autolabel_speed(project, [ids[i] for i in held_idx], held_paths, list(samples[0].classes), log=log)
                    if args.autolabel and k == 0
                    else None
                )
                results.append(
                    run(
                        train,
                        held,
                        held_paths,
                        overrides,
                        budget=args.budget,
                        threads=args.threads,
                        seed=args.seed,
                        speed=not args.no_speed and k == 0,
                        autolabel=measure,
                        log=log,
                    )
                )
            project.close()
        else:
            train, held, _, held_paths = _script("localizer_quality").load_samples(args.data)
            results.append(
                run(
                    train,
                    held,
                    list(held_paths),
                    overrides,
                    budget=args.budget,
                    threads=args.threads,
                    seed=args.seed,
                    speed=not args.no_speed,
                    log=log,
                )
            )
    if len(results) > 1:
        summarize(
            results, [k for k in results[0] if k.startswith("map")], log=log, what=f", {args.budget:.0f} s per fold"
        )
    if args.json:
        for r in results:
            print(json.dumps(r))
    return 0


if __name__ == "__main__":
    sys.exit(main())
