"""Localizer quality and speed on the real sets in ``../shared/data`` (fruit, raccoon).

    .venv/bin/python benchmarks/localizer_quality.py --data fruit --budget 300 [--set key=value ...]

Loads the set as :class:`LabelledImage` lists (one accepted box annotation per image), splits it
into training and held-out images with a fixed rule (below), prepares the training images, trains
with :func:`labeler.learning.loop.fit` for ``--budget`` seconds on 2 threads, and prints, on the
held-out images: class accuracy, mean box IoU, the localizer's ``score``, the IoU of the mean
training box (the trivial baseline) on the same split, training images per second, and
milliseconds per image for prediction (pre-processing, forward, post-processing; and with image
decoding) against the bare forward of the network.

Held-out split: within each class, image stems are ordered by the SHA-1 of the stem and the first
20 % (rounded) are held out; the split never changes with the run, the settings or the machine.
``--folds K``: K-fold cross-validation instead (in the same order within each class, every K-th
image held out; one training run per fold; mean, spread and each fold's figures printed).

Other processes on the machine change the speed figures (and so, through the time budget, the
quality figures); say what else was running when quoting them.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import time
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import numpy as np
from folds import stratified_folds, summarize  # benchmarks/folds.py, beside this script
from timing import mean_ms  # benchmarks/timing.py

from labeler.core.annotation import Annotation, Category, Kind, State
from labeler.core.geometry import box_iou
from labeler.core.images import read_image
from labeler.learning.api import LabelledImage, resolve_settings

REPO = Path(__file__).resolve().parents[1]
HELD_OUT = 0.2


def data_root() -> Path:
    env = os.environ.get("LABELER_DATA")
    return Path(env) if env else REPO.parent / "shared" / "data"


def load_fruit(root: Path) -> tuple[list[tuple[str, Path, str, tuple[float, float, float, float]]], list[str]]:
    """``(stem, image path, class name, box xywh pixels)`` per labelme file, and the class names.

    labelme 3.5 rectangles are two corner points; their order is not trusted (min/max taken).
    Whether or not the labelling tool applied EXIF orientation does not matter here: none of these
    files carries a rotating orientation (5-8; the invalid 0 reads as upright), so the stored
    pixels, the frame :func:`read_image` returns and the labels' frame are one and the same (and
    the loader checks every box lies within the image as read).
    """
    rows = []
    for path in sorted((root / "fruit" / "train").glob("*.json")):
        doc = json.loads(path.read_text())
        shapes = [s for s in doc["shapes"] if s.get("shape_type", "rectangle") == "rectangle"]
        if len(shapes) != 1:
            raise ValueError(f"{path.name}: expected one rectangle, found {len(shapes)}")
        (xa, ya), (xb, yb) = shapes[0]["points"]
        x0, x1 = sorted((float(xa), float(xb)))
        y0, y1 = sorted((float(ya), float(yb)))
        image = path.with_name(doc.get("imagePath") or path.stem + ".jpg")
        rows.append((path.stem, image, shapes[0]["label"], (x0, y0, x1 - x0, y1 - y0)))
    return rows, sorted({r[2] for r in rows})


def load_raccoon(root: Path) -> tuple[list[tuple[str, Path, str, tuple[float, float, float, float]]], list[str]]:
    """Pascal VOC: 1-based inclusive integer corners become ``(xmin - 1, ymin - 1, xmax - xmin + 1,
    ymax - ymin + 1)`` pixel boxes (the usual VOC to COCO conversion)."""
    rows = []
    base = root / "raccoon"
    for path in sorted((base / "annotations").glob("*.xml")):
        doc = ET.parse(path).getroot()
        objects = doc.findall("object")
        if len(objects) != 1:
            raise ValueError(f"{path.name}: expected one object, found {len(objects)}")
        bb = objects[0].find("bndbox")
        assert bb is not None
        xmin, ymin, xmax, ymax = (float(bb.findtext(k) or "nan") for k in ("xmin", "ymin", "xmax", "ymax"))
        name = doc.findtext("filename") or path.stem + ".jpg"
        rows.append(
            (
                path.stem,
                base / "images" / name,
                objects[0].findtext("name") or "raccoon",
                (xmin - 1, ymin - 1, xmax - xmin + 1, ymax - ymin + 1),
            )
        )
    return rows, sorted({r[2] for r in rows})


def split(rows: list[tuple[str, Path, str, Any]]) -> tuple[list[int], list[int]]:
    """Indices of training and held-out rows (see the module docstring)."""
    held: set[int] = set()
    for name in sorted({r[2] for r in rows}):
        members = [i for i, r in enumerate(rows) if r[2] == name]
        members.sort(key=lambda i: hashlib.sha1(rows[i][0].encode()).hexdigest())
        held.update(members[: round(HELD_OUT * len(members))])
    train = [i for i in range(len(rows)) if i not in held]
    return train, sorted(held)


Loaded = tuple[list[LabelledImage], list[LabelledImage], list[Category], list[Path]]


def _load(data: str) -> tuple[list[tuple[str, Path, str, Any]], list[LabelledImage], list[Category]]:
    root = data_root()
    if not root.is_dir():
        raise SystemExit(f"real data sets not found at {root} (set LABELER_DATA)")
    rows, names = (load_fruit if data == "fruit" else load_raccoon)(root)
    classes = [Category(id=i + 1, name=n, color=(200, 50, 50)) for i, n in enumerate(names)]
    by_name = {c.name: c for c in classes}
    samples = []
    for image_id, (stem, path, name, box) in enumerate(rows, start=1):
        image = read_image(path)
        h, w = image.shape[:2]
        x, y, bw, bh = box
        if x < -1 or y < -1 or x + bw > w + 1 or y + bh > h + 1:
            raise ValueError(f"{stem}: box {box} outside the {w}x{h} image as read")
        ann = Annotation(
            image_id=image_id, category_id=by_name[name].id, kind=Kind.BOX, box_xywh=box, state=State.ACCEPTED
        )
        samples.append(LabelledImage(image_id=image_id, image=image, annotations=(ann,), classes=tuple(classes)))
    return rows, samples, classes


def load_samples(data: str) -> Loaded:
    """``(training samples, held-out samples, classes, held-out image paths)`` of the fixed split."""
    rows, samples, classes = _load(data)
    train, held = split(rows)
    return [samples[i] for i in train], [samples[i] for i in held], classes, [rows[i][1] for i in held]


def load_folds(data: str, k: int) -> list[Loaded]:
    """The ``k`` folds of the set, each as :func:`load_samples` returns a split: within each class,
    images in the order of the SHA-1 of their stem, every ``k``-th held out."""
    rows, samples, classes = _load(data)
    order = sorted(range(len(rows)), key=lambda i: (rows[i][2], hashlib.sha1(rows[i][0].encode()).hexdigest()))
    out = []
    for fold in stratified_folds([rows[i][2] for i in order], k):
        held = sorted(order[j] for j in fold)
        held_set = set(held)
        train = [i for i in range(len(rows)) if i not in held_set]
        out.append(([samples[i] for i in train], [samples[i] for i in held], classes, [rows[i][1] for i in held]))
    return out


def mean_box_iou(train: list[LabelledImage], held: list[LabelledImage]) -> float:
    """IoU on ``held`` of the mean normalised training box (the trivial baseline)."""

    def norm(s: LabelledImage) -> np.ndarray:
        h, w = s.image.shape[:2]
        x, y, bw, bh = s.annotations[0].box_xywh or (0, 0, 0, 0)
        return np.array([x / w, y / h, bw / w, bh / h])

    mean = np.mean([norm(s) for s in train], axis=0)
    ious = []
    for s in held:
        h, w = s.image.shape[:2]
        ious.append(box_iou(tuple(mean * [w, h, w, h]), s.annotations[0].box_xywh or (0, 0, 0, 0)))
    return float(np.mean(ious))


def run(
    data: str,
    overrides: dict[str, str],
    *,
    budget: float | None,
    examples: int | None = None,
    threads: int = 2,
    seed: int = 0,
    device: str = "cpu",
    validate_every: float = 0.0,
    loaded: Loaded | None = None,
    speed: bool = True,
    log: Any = print,
) -> dict[str, Any]:
    """Train on ``data``'s training split and measure on its held-out split; returns the figures.

    ``budget`` is in seconds; ``examples`` (instead, or as well) stops after that many training
    examples, which makes runs on different machines comparable in what they learned.
    """
    import torch

    import labeler.learning.loop as loop
    from labeler_localizer import LocalizerPlugin

    plugin = LocalizerPlugin()
    settings = resolve_settings(plugin, overrides)
    train, held, classes, held_paths = loaded or load_samples(data)
    log(f"{data}: {len(train)} training, {len(held)} held-out images, classes {[c.name for c in classes]}")
    log("settings: " + json.dumps(settings))
    torch.set_num_threads(threads)
    t0 = time.perf_counter()
    items = [plugin.prepare(s, settings=settings) for s in train]
    prepare_ms = 1000 * (time.perf_counter() - t0) / len(train)

    def predict(model: torch.nn.Module, samples: list[LabelledImage]) -> list[Any]:
        out = []
        with torch.no_grad():
            for s in samples:
                x = plugin.inputs(s.image, settings=settings).to(device)
                out.append(
                    plugin.proposals(model(x), image_shape=s.image.shape[:2], classes=classes, settings=settings)
                )
        return out

    def validate(model: torch.nn.Module) -> dict[str, float]:
        return plugin.evaluate(predict(model, held), held, settings=settings)

    def progress(info: dict[str, Any]) -> None:
        if info["event"] == "validation":
            log(
                f"  {info['elapsed']:6.1f}s epoch {info['epoch']:6.1f} losses "
                f"{ {k: round(v, 4) for k, v in info['losses'].items()} } held-out {info.get('metrics')}"
            )

    torch.manual_seed(seed)
    model = plugin.build_model(num_classes=len(classes), settings=settings)
    # fit sizes its thread pool from the machine's core count; the benchmark pins it instead
    set_threads = loop._set_threads
    loop._set_threads = lambda world: torch.set_num_threads(threads)
    try:
        result = loop.fit(
            plugin,
            model,
            items,
            settings=settings,
            time_budget=budget,
            seed=seed,
            device=device,
            epochs=None if examples is None else examples / len(items),
            progress=progress if validate_every else None,
            validate=validate if validate_every else None,
            validate_every=validate_every or 1e9,
        )
    finally:
        loop._set_threads = set_threads
    model = result.model.eval()
    log(
        f"trained {result.steps} steps, {result.epochs:.1f} epochs, {result.images_per_second:.1f} images/s, "
        f"last losses { {k: round(v, 4) for k, v in result.losses.items()} }"
    )

    metrics = plugin.evaluate(predict(model, held), held, settings=settings)
    figures: dict[str, Any] = {
        "data": data,
        "settings": overrides,
        "seed": seed,
        "held_out": len(held),
        **metrics,
        "mean_box_iou": mean_box_iou(train, held),
        "train_images_per_s": result.images_per_second,
        "examples": result.images,
        "seconds": result.seconds,
        "prepare_ms": prepare_ms,
    }
    log(
        f"held-out ({len(held)} images): accuracy {metrics['accuracy']:.3f}  box IoU {metrics['box_iou']:.3f}  "
        f"score {metrics['score']:.3f}  | mean-box baseline IoU {figures['mean_box_iou']:.3f}"
    )
    if not speed:
        return figures

    # speed: bare forward vs the whole per-image prediction, one image at a time
    inputs = [plugin.inputs(s.image, settings=settings).to(device) for s in held]
    with torch.no_grad():
        forward_ms = mean_ms(model, inputs, warmup=3)
        t0 = time.perf_counter()
        predict(model, held)
        predict_ms = 1000 * (time.perf_counter() - t0) / len(held)
        t0 = time.perf_counter()
        for path in held_paths:
            image = read_image(path)
            x = plugin.inputs(image, settings=settings).to(device)
            plugin.proposals(model(x), image_shape=image.shape[:2], classes=classes, settings=settings)
        decode_ms = 1000 * (time.perf_counter() - t0) / len(held)
    figures.update(forward_ms=forward_ms, predict_ms=predict_ms, predict_with_decode_ms=decode_ms)
    log(
        f"speed: training {result.images_per_second:.1f} images/s; inference per image: bare forward "
        f"{forward_ms:.2f} ms, predict (pre + forward + post) {predict_ms:.2f} ms "
        f"({100 * forward_ms / predict_ms:.0f} % of forward speed), with decoding from disk {decode_ms:.2f} ms"
    )
    return figures


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", choices=("fruit", "raccoon"), required=True)
    parser.add_argument("--budget", type=float, default=300.0, help="training seconds")
    parser.add_argument("--examples", type=int, default=None, help="stop after this many training examples")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="plugin setting")
    parser.add_argument("--threads", type=int, default=2, help="torch threads (the targets assume 2 cores)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--validate-every", type=float, default=0.0, help="seconds; 0 = only at the end")
    parser.add_argument("--folds", type=int, default=0, help="K-fold cross-validation (0 = the fixed split)")
    parser.add_argument("--json", action="store_true", help="also print the figures as one JSON line")
    args = parser.parse_args(argv)
    overrides = dict(kv.split("=", 1) for kv in args.set)
    log = lambda text: print(text, flush=True)  # noqa: E731
    splits: list[Loaded | None] = list(load_folds(args.data, args.folds)) if args.folds > 1 else [None]
    results = []
    for k, loaded in enumerate(splits):
        if len(splits) > 1:
            log(f"fold {k + 1}/{len(splits)}")
        results.append(
            run(
                args.data,
                overrides,
                budget=args.budget,
                examples=args.examples,
                threads=args.threads,
                seed=args.seed,
                device=args.device,
                validate_every=args.validate_every,
                loaded=loaded,
                speed=len(splits) == 1,
                log=log,
            )
        )
    if len(results) > 1:
        summarize(
            results, ["accuracy", "box_iou", "score", "mean_box_iou"], log=log, what=f", {args.budget:.0f} s per fold"
        )
    if args.json:
        for figures in results:
            print(json.dumps(figures))
    return 0


if __name__ == "__main__":
    sys.exit(main())
