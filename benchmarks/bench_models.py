"""Both plugins through the whole engine on the real sets in ``../shared/data``.

    .venv/bin/python benchmarks/bench_models.py [--budget 300] [--only membrane|camvid|fruit|raccoon] [--set KEY=VALUE] [--folder 64] [--no-refit]

For each data set: a project is made in a temporary folder (training images with their labels,
marked done; held-out images added by their real paths, not done), the plugin is trained with the
runner (:func:`labeler.learning.training.train`, the code behind ``labeler train``) for
``--budget`` wall-clock seconds, the new version auto-labels the held-out images
(:func:`labeler.learning.autolabel.auto_label`, the code behind ``labeler auto-label``), and the
proposals read back from the store are scored with the plugin's ``evaluate`` against the held-out
labels. Printed per set: the metrics (segmenter mean IoU; localizer class accuracy and mean box
IoU), training images per second, and the speed of auto-labelling a folder against the bare
network forward on the same images.

Speed is measured on a folder of at least ``--folder`` images (default 64): the held-out set is
tiny (4 membrane and 5 CamVid images), so its files are repeated under other names until the
folder is that large, as a user's folder would be; starting and draining the pipeline then does
not count more than it would in real use. Printed: auto-label milliseconds per image (decode,
inputs, forward, proposals, storage), the bare forward per image on the same pre-decoded,
pre-processed images one at a time on torch's threads, and the same bare forward run as
auto-labelling runs it (small same-shaped inputs batched, on its streams sharing torch's threads,
see ``labeler.learning.autolabel``), with auto-label speed as a share of each; every figure is the
fastest of three alternating runs. Then what the rest costs on
one core, to show where the time goes: decoding with the network inputs, and the proposals.

The data sets are read, and split into training and held-out images, by the plugins' own quality
scripts (``benchmarks/segmenter_quality.py``: membrane 20/4, camvid train/val;
``benchmarks/localizer_quality.py``: 80/20 per class), whose per-set settings presets are used too.
The runner holds out a further 20 % of the done images for its own validation (the version's
``metrics``, printed as "validation") and trains on them only in its last 20 % (the refit, see
``labeler.learning.refit``), so it sees them less than those scripts do.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import sys
import tempfile
import time
from pathlib import Path
from types import ModuleType
from typing import Any

import cv2
import numpy as np

HERE = Path(__file__).resolve().parent
SETS = {"membrane": "segmenter", "camvid": "segmenter", "fruit": "localizer", "raccoon": "localizer"}
TARGETS = {
    "membrane": "mean IoU >= 0.80 (trivial 0.40)",
    "camvid": "mean IoU >= 0.35 (trivial 0.02)",
    "fruit": "accuracy >= 0.95 (0.42), box IoU >= 0.72 (0.62)",
    "raccoon": "box IoU >= 0.65 (0.55)",
}


def _script(name: str) -> ModuleType:
    path = HERE / f"{name}.py"
    spec = importlib.util.spec_from_file_location(f"_bench_{name}", path)
    if spec is None or spec.loader is None:
        raise SystemExit(f"cannot load {path}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def load(data: str) -> tuple[list[Any], list[Any], list[Path], dict[str, str]]:
    """``(train samples, held-out samples, held-out image paths, settings preset)``."""
    if SETS[data] == "segmenter":
        script = _script("segmenter_quality")
        train, held, held_paths = script.load(data)
    else:
        script = _script("localizer_quality")
        train, held, _, held_paths = script.load_samples(data)
    presets = getattr(script, "PRESETS", {})
    return train, held, list(held_paths), dict(presets.get(data, {}))


def build_project(root: Path, train: list[Any], held_paths: list[Path]) -> tuple[Any, list[int]]:
    """A project with the training samples done (images written as PNG beside it) and the held-out
    images added by path, not done. Returns it open, with the held-out image ids in order."""
    from dataclasses import replace

    from labeler.core.store import Project

    project = Project.create(root)
    classes = train[0].classes
    category = {c.id: project.add_category(c.name).id for c in classes}
    (root / "train").mkdir()
    for n, sample in enumerate(train):
        path = root / "train" / f"{n:04d}.png"
        cv2.imwrite(str(path), cv2.cvtColor(sample.image, cv2.COLOR_RGB2BGR))
        (image_id,) = project.add_images([path])
        with project.transaction():
            project.set_image_size(image_id, sample.image.shape[1], sample.image.shape[0])
            project.add_annotations(
                [
                    replace(a, image_id=image_id, category_id=category[a.category_id], id=None)
                    for a in sample.annotations
                ]
            )
            if sample.ignore_mask is not None:
                from labeler.core.geometry import encode_mask

                project.set_ignore_mask(image_id, encode_mask(np.asarray(sample.ignore_mask, bool)))
            project.set_done(image_id, True)
    held_ids = project.add_images(held_paths)
    return project, held_ids


def bare_forward_seconds(loaded: Any, images: list[np.ndarray], *, as_auto_label: bool = False) -> float:
    """Seconds for the network's forward pass alone over ``images`` (inputs made beforehand): one
    image at a time on torch's threads, or ``as_auto_label`` runs it: batched as it batches (small
    same-shaped inputs), on as many streams as it uses, sharing torch's threads the same way."""
    from concurrent.futures import ThreadPoolExecutor

    import torch

    from labeler.learning.autolabel import BATCH_SIZE, _batches, _Loaded, _stream_plan, _torch_threads

    inputs = [loaded.plugin.inputs(im, settings=loaded.settings).to(loaded.device) for im in images]
    streams, threads = 1, None
    if as_auto_label:
        ready = [_Loaded(shape=im.shape[:2], x=x) for im, x in zip(images, inputs, strict=True)]
        on_gpu = str(loaded.device).startswith("cuda")
        inputs = [torch.cat([r.x for r in group]) for group in _batches(ready, batch_size=BATCH_SIZE, on_gpu=on_gpu)]
        streams, threads = _stream_plan(None, len(images), on_gpu=on_gpu)

    def run(x: Any) -> None:
        with torch.inference_mode():
            loaded.model(x)

    run(inputs[0])  # warm-up
    if streams == 1:  # on this thread, as a plain loop over the network would
        start = time.perf_counter()
        for x in inputs:
            run(x)
        return time.perf_counter() - start
    with _torch_threads(threads), ThreadPoolExecutor(streams) as pool:
        list(pool.map(run, inputs[:streams]))  # warm-up of each stream's threads
        start = time.perf_counter()
        list(pool.map(run, inputs))
        return time.perf_counter() - start


def stage_seconds(loaded: Any, paths: list[Path]) -> dict[str, float]:
    """Seconds over ``paths``, one image at a time on this thread, for what auto-labelling does
    besides the network: ``decode`` (with inputs, as auto-labelling decodes: JPEGs reduced where
    the plugin allows) and ``proposals`` (outputs to checked proposals)."""
    from labeler.learning.api import decode_side
    from labeler.learning.autolabel import _forward_group, _load, _predict

    side = decode_side(loaded.plugin, loaded.settings)
    start = time.perf_counter()
    ready = [_load(p, loaded, side) for p in paths]
    decoded = time.perf_counter() - start
    outputs = [_forward_group(loaded, [r])[0] for r in ready]
    start = time.perf_counter()
    for r, out in zip(ready, outputs, strict=True):
        _predict(loaded, r, out)
    return {"decode": decoded, "proposals": time.perf_counter() - start}


def speed_folder(root: Path, paths: list[Path], size: int) -> list[Path]:
    """``paths`` as they are, then hard links (copies where links fail) to them under ``root``
    with other names, until there are at least ``size`` files."""
    import shutil

    out = list(paths)
    root.mkdir(parents=True, exist_ok=True)
    n = 0
    while len(out) < size:
        source = paths[n % len(paths)]
        target = root / f"{n:05d}-{source.name}"
        try:
            target.hardlink_to(source)
        except OSError:
            shutil.copyfile(source, target)
        out.append(target)
        n += 1
    return out


def stored_predictions(project: Any, version_id: int, image_ids: list[int]) -> list[Any]:
    """The proposals of ``version_id`` read back from the store, as the plugin's Predictions."""
    from labeler.core.annotation import State
    from labeler.learning.api import Prediction, Proposal

    out = []
    for image_id in image_ids:
        anns = [a for a in project.annotations(image_id, states=[State.PROPOSED]) if a.model_version == version_id]
        out.append(
            Prediction(
                proposals=tuple(
                    Proposal(
                        a.category_id,
                        a.kind,
                        float(a.score or 0.0),
                        box_xywh=a.box_xywh,
                        rle=a.rle,
                        polygons=a.polygons,
                    )
                    for a in anns
                ),
                uncertainty=float(project.image(image_id).uncertainty or 0.0),
            )
        )
    return out


def run(
    data: str,
    budget: float,
    log: Any = print,
    repeats: int = 3,
    overrides: dict[str, str] | None = None,
    folder: int = 64,
    refit: bool = True,
) -> dict[str, Any]:
    from labeler.core.images import read_image
    from labeler.learning.autolabel import auto_label
    from labeler.learning.checkpoints import load_version
    from labeler.learning.plugins import get_plugin
    from labeler.learning.training import train

    plugin = get_plugin(SETS[data])
    train_samples, held, held_paths, preset = load(data)
    preset.update(overrides or {})
    log(
        f"{data}: {len(train_samples)} training images, {len(held)} held out; {plugin.name} settings {preset or 'defaults'}"
    )
    with tempfile.TemporaryDirectory(prefix=f"labeler-bench-{data}-") as tmp:
        project, held_ids = build_project(Path(tmp) / "project", train_samples, held_paths)
        with project:

            def progress(event: dict[str, Any]) -> None:
                if event["event"] == "start":
                    log(
                        f"  training on {event['train_images']} images ({event['validation_images']} validate, "
                        f"skipped {event['skipped'] or 'none'})"
                    )
                elif event["event"] == "validation":
                    log(
                        f"  {event['elapsed']:6.0f} s  epoch {event['epoch']:6.1f}  loss {event['losses'].get('total', 0):.4f}"
                        f"  validation {plugin.metric} {event.get('metric', float('nan')):.3f}"
                    )

            result = train(
                project,
                plugin,
                overrides=preset,
                time_budget=budget,
                from_version=None,
                activate="always",
                progress=progress,
                validate_every=max(60.0, budget / 4),
                refit=refit,
            )
            assert result.version is not None
            loaded = load_version(project, result.version, plugin)

            labelled = auto_label(project, loaded, held_ids)
            if labelled.failed:
                log(f"  auto-label failed on {labelled.failed}")
            predictions = stored_predictions(project, int(result.version.id or 0), held_ids)
            metrics = plugin.evaluate(predictions, held, settings=loaded.settings)

            speed_paths = speed_folder(Path(tmp) / "folder", [Path(h) for h in held_paths], folder)
            speed_ids = project.add_images(speed_paths)
            images = [read_image(p) for p in speed_paths]
            # alternate the three and keep the fastest of each, so a busy moment of the machine
            # does not decide the comparison
            forward = streamed = label_seconds = float("inf")
            stages = stage_seconds(loaded, speed_paths)
            for _ in range(repeats):
                forward = min(forward, bare_forward_seconds(loaded, images))
                streamed = min(streamed, bare_forward_seconds(loaded, images, as_auto_label=True))
                label_seconds = min(label_seconds, auto_label(project, loaded, speed_ids).seconds)
            data_seen = result.version.data
    n = len(speed_paths)
    figures = {
        "data": data,
        "plugin": plugin.name,
        "budget_s": budget,
        "train_images": len(train_samples),
        "held_out_images": len(held_ids),
        "speed_folder_images": n,
        "metrics": {k: float(v) for k, v in metrics.items()},
        "validation_metrics": result.metrics,
        "train_images_per_second": data_seen["images_per_second"],
        "train_epochs": data_seen["epochs"],
        "autolabel_ms_per_image": 1000 * label_seconds / n,
        "forward_ms_per_image": 1000 * forward / n,
        "autolabel_vs_forward_speed": forward / label_seconds,
        "streamed_forward_ms_per_image": 1000 * streamed / n,
        "autolabel_vs_streamed_forward_speed": streamed / label_seconds,
        "decode_ms_per_image": 1000 * stages["decode"] / n,
        "proposals_ms_per_image": 1000 * stages["proposals"] / n,
    }
    return figures


def summary(f: dict[str, Any]) -> str:
    m = f["metrics"]
    if f["plugin"] == "segmenter":
        quality = f"mean IoU {m['mean_iou']:.3f}"
    else:
        quality = f"class accuracy {m['accuracy']:.3f}  mean box IoU {m['box_iou']:.3f}"
    return (
        f"{f['data']:9s} {f['plugin']:10s} {quality}   [target {TARGETS[f['data']]}]\n"
        f"{'':20s} training {f['train_images_per_second']:.1f} images/s ({f['train_epochs']:.0f} epochs)\n"
        f"{'':20s} auto-label {f['autolabel_ms_per_image']:.2f} ms/image over {f['speed_folder_images']} images; "
        f"bare forward {f['forward_ms_per_image']:.2f} ms one by one "
        f"({100 * f['autolabel_vs_forward_speed']:.0f} % of its speed), "
        f"{f['streamed_forward_ms_per_image']:.2f} ms as auto-labelling runs it "
        f"({100 * f['autolabel_vs_streamed_forward_speed']:.0f} %)\n"
        f"{'':20s} besides the network, on one core: decode and inputs {f['decode_ms_per_image']:.2f} ms/image, "
        f"proposals {f['proposals_ms_per_image']:.2f} ms/image"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--budget", type=float, default=300.0, help="training seconds per data set (wall clock)")
    parser.add_argument("--only", choices=sorted(SETS), action="append", help="only this data set (repeatable)")
    parser.add_argument("--json", action="store_true", help="also print each set's figures as one JSON line")
    parser.add_argument(
        "--no-refit",
        action="store_true",
        help="train on the runner's training split alone (as 'labeler train --no-refit')",
    )
    parser.add_argument(
        "--folder",
        type=int,
        default=64,
        help="auto-label speed over at least this many images (held-out files repeated)",
    )
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="plugin setting over the set's preset (repeatable; applies to every set run)",
    )
    args = parser.parse_args(argv)
    overrides = {}
    for item in args.set:
        key, sep, value = item.partition("=")
        if not sep:
            raise SystemExit(f"--set takes KEY=VALUE, not {item!r}")
        overrides[key.strip()] = value.strip()
    results = []
    for data in args.only or list(SETS):
        figures = run(data, args.budget, overrides=overrides, folder=args.folder, refit=not args.no_refit)
        results.append(figures)
        print(summary(figures), flush=True)
        if args.json:
            print(json.dumps(figures), flush=True)
    if len(results) > 1:
        print("\nsummary")
        for figures in results:
            print(summary(figures))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
