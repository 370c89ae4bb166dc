"""The loop, measured: a simulated annotator labels a whole real set, with the loop and by hand.

    python benchmarks/bench_loop.py --images DIR --labels PATH --format voc|labelme|coco|masks|yolo
            [--values 0=membrane,255=cell] [--ignore 11] --plugin NAME
            [--seed-images 5] [--retrain-every 10] [--budget 60] [--order uncertain|sequential|random]
            [--wait] [--set KEY=VALUE ...] [--json OUT] [--csv OUT] [--plot OUT.png]
    python benchmarks/bench_loop.py --data fruit|raccoon|bccd|membrane|camvid   # the sets in ../shared/data

A fresh project holds every image the labels name; the annotator (``labeler.simulation``) labels
``--seed-images`` by hand, a training round runs (``--budget`` seconds, the runner behind
``labeler train``), the new version auto-labels the rest, and the annotator works through the set
in ``--order``, accepting, correcting and rejecting proposals and drawing what is missing, with a
new round every ``--retrain-every`` images done. Each action costs seconds by the cost model of
``labeler.simulation.cost`` (published figures, cited there); the same set drawn by hand costs
the same model's seconds for drawing every label. Rounds serve only the images reached after their
machine time has passed on the annotator's clock (``--wait``: the annotator waits for each).

Printed: each round, then the effort with the loop against by hand (the effort ratio, lower is
better), the share of shown proposals accepted as they stood, the clock time of the first
proposal, machine time for training and auto-labelling; the last line is the ratio. ``--csv``
writes the effort per image along the run, ``--plot`` draws it, ``--json`` writes the figures
(``effort_ratio``, ``loop_seconds``, ``manual_seconds``, ``accepted_fraction``, ``images``,
``machine_seconds`` and more).
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from labeler.simulation.session import ORDERS, SessionResult, SessionSettings, run_session
from labeler.simulation.truth import LabelSource, read_ground_truth

REPO = Path(__file__).resolve().parents[1]

CAMVID_VALUES = "0=Sky,1=Building,2=Pole,3=Road,4=Pavement,5=Tree,6=SignSymbol,7=Fence,8=Car,9=Pedestrian,10=Bicyclist"


@dataclass(frozen=True)
class DataSet:
    """A set in ``../shared/data``: its folders (relative to the data root), format, options, plugin."""

    plugin: str
    format: str
    pairs: tuple[tuple[str, str], ...]  # (images, labels)
    values: str | None = None
    ignore: int | None = None
    target: float | None = None  # the effort-ratio target


DATA_SETS: dict[str, DataSet] = {
    "fruit": DataSet("localizer", "labelme", (("fruit/train", "fruit/train"),), target=0.35),
    "raccoon": DataSet("localizer", "voc", (("raccoon/images", "raccoon/annotations"),), target=0.45),
    "bccd": DataSet("detector", "voc", (("bccd/JPEGImages", "bccd/Annotations"),), target=0.50),
    "membrane": DataSet(
        "segmenter", "masks", (("membrane/image", "membrane/label"),), values="0=membrane,255=cell", target=0.60
    ),
    "camvid": DataSet(
        "segmenter",
        "masks",
        (("camvid/train", "camvid/trainannot"), ("camvid/val", "camvid/valannot")),
        values=CAMVID_VALUES,
        ignore=11,
        target=0.70,
    ),
}


def data_root() -> Path:
    env = os.environ.get("LABELER_DATA")
    return Path(env) if env else REPO.parent / "shared" / "data"


def sources_of(args: argparse.Namespace) -> tuple[list[LabelSource], str, float | None]:
    """The label sources, the plugin and the target, from ``--data`` or the explicit options."""
    if args.data is not None:
        preset = DATA_SETS[args.data]
        root = data_root()
        if not (root / preset.pairs[0][0]).is_dir():
            raise SystemExit(f"data set {args.data} not found under {root} (set LABELER_DATA)")
        options = {k: v for k, v in (("values", preset.values), ("ignore", preset.ignore)) if v is not None}
        sources = [LabelSource(root / images, root / labels, preset.format, options) for images, labels in preset.pairs]
        return sources, args.plugin or preset.plugin, preset.target
    missing = [
        flag
        for flag, value in (("--images", args.images), ("--labels", args.labels), ("--plugin", args.plugin))
        if value is None
    ]
    if missing:
        raise SystemExit(f"give --data, or {', '.join(missing)}")
    options = {k: v for k, v in (("values", args.values), ("ignore", args.ignore)) if v is not None}
    if options and args.format != "masks":
        raise SystemExit("--values and --ignore apply to --format masks only")
    return [LabelSource(Path(args.images), Path(args.labels), args.format, options)], args.plugin, None


def parse_sets(items: list[str]) -> dict[str, str]:
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep:
            raise SystemExit(f"--set takes KEY=VALUE, not {item!r}")
        out[key.strip()] = value.strip()
    return out


def write_csv(result: SessionResult, path: Path) -> None:
    rows = [asdict(s) for s in result.steps]
    with open(path, "w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]) if rows else ["step"])
        writer.writeheader()
        writer.writerows(rows)


def plot(result: SessionResult, path: Path, *, title: str) -> None:
    """Seconds per image along the run, with the loop and by hand (moving means over a window of
    about a twentieth of the run), and where each round's proposals started serving."""
    width, height, left, right, top, bottom = 900, 420, 70, 20, 40, 50
    image = np.full((height, width, 3), 255, np.uint8)
    steps = result.steps
    if not steps:
        cv2.imwrite(str(path), image)
        return
    loop = np.array([s.seconds for s in steps])
    hand = np.array([s.manual_seconds for s in steps])

    half = max(2, len(loop) // 40)

    def smooth(values: np.ndarray) -> np.ndarray:
        return np.array([np.mean(values[max(0, i - half) : i + half + 1]) for i in range(len(values))])

    loop_s, hand_s = smooth(loop), smooth(hand)
    top_value = max(float(np.max(hand_s)), float(np.max(loop_s)), 1e-6) * 1.1
    n = len(steps)

    def xy(i: float, v: float) -> tuple[int, int]:
        x = left + (width - left - right) * (i / max(1, n - 1))
        y = height - bottom - (height - top - bottom) * (v / top_value)
        return round(x), round(y)

    black, grey = (0, 0, 0), (170, 170, 170)
    cv2.line(image, (left, height - bottom), (width - right, height - bottom), black, 1)
    cv2.line(image, (left, top), (left, height - bottom), black, 1)
    for k in range(5):
        v = top_value * k / 4
        _, y = xy(0, v)
        cv2.line(image, (left - 4, y), (left, y), black, 1)
        cv2.putText(image, f"{v:.3g}", (5, y + 4), cv2.FONT_HERSHEY_SIMPLEX, 0.4, black, 1, cv2.LINE_AA)
    for k in range(6):
        i = (n - 1) * k / 5
        x, _ = xy(i, 0)
        cv2.putText(
            image,
            f"{round(i) + 1}",
            (x - 8, height - bottom + 18),
            cv2.FONT_HERSHEY_SIMPLEX,
            0.4,
            black,
            1,
            cv2.LINE_AA,
        )
    for r in result.rounds:  # where each round's proposals start serving
        served = next((s.step for s in steps if s.clock >= r.ready), None)
        if served is not None:
            x, _ = xy(served - 1, 0)
            cv2.line(image, (x, top), (x, height - bottom), (225, 225, 225), 1)
    for values, color in ((hand_s, grey), (loop_s, (200, 90, 20))):
        points = np.array([xy(i, float(v)) for i, v in enumerate(values)], np.int32)
        cv2.polylines(image, [points], False, color, 2, cv2.LINE_AA)
    cv2.putText(image, title, (left, 22), cv2.FONT_HERSHEY_SIMPLEX, 0.5, black, 1, cv2.LINE_AA)
    cv2.putText(
        image,
        f"seconds per image (mean of {2 * half + 1}): by hand (grey), with the loop (blue); "
        "vertical lines: a new round serves",
        (left, height - 12),
        cv2.FONT_HERSHEY_SIMPLEX,
        0.4,
        black,
        1,
        cv2.LINE_AA,
    )
    cv2.putText(
        image, "image", (width - right - 40, height - bottom + 34), cv2.FONT_HERSHEY_SIMPLEX, 0.4, black, 1, cv2.LINE_AA
    )
    cv2.imwrite(str(path), image)


def report(result: SessionResult, *, target: float | None) -> None:
    summary = result.summary()
    print(f"images {summary['images']}, rounds {len(result.rounds)}")
    print(f"by hand: {result.manual_seconds / 60:.1f} min; with the loop: {result.loop_seconds / 60:.1f} min")
    print(f"proposals accepted as they stood: {result.accepted_fraction:.1%} of those shown")
    first = result.first_proposal_clock
    print(f"first proposals at clock {first:.0f} s" if first is not None else "no proposal was ever shown")
    print(
        f"machine: training {result.train_seconds:.0f} s, auto-labelling {result.label_seconds:.1f} s"
        + (f"; the annotator waited {result.waited_seconds:.0f} s" if result.waited_seconds else "")
    )
    if target is not None:
        print(f"target: effort ratio <= {target:.2f}")
    print(f"effort ratio {result.effort_ratio:.3f}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", choices=sorted(DATA_SETS), help="a set in ../shared/data (or $LABELER_DATA)")
    ap.add_argument("--images", help="the folder of images")
    ap.add_argument("--labels", help="the label file or folder")
    ap.add_argument("--format", default="voc", choices=("voc", "labelme", "coco", "masks", "yolo"))
    ap.add_argument("--values", help="masks: V=NAME,... the class of each pixel value")
    ap.add_argument("--ignore", type=int, help="masks: the pixel value meaning 'no label'")
    ap.add_argument("--plugin", help="the plugin to train (default for --data: the set's)")
    ap.add_argument("--seed-images", type=int, default=5)
    ap.add_argument("--retrain-every", type=int, default=10)
    ap.add_argument("--budget", type=float, default=60.0, help="seconds of training per round")
    ap.add_argument("--order", choices=ORDERS, default="uncertain")
    ap.add_argument("--wait", action="store_true", help="the annotator waits for each round")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="a plugin setting")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", type=Path)
    ap.add_argument("--csv", type=Path)
    ap.add_argument("--plot", type=Path)
    ap.add_argument(
        "--keep",
        type=Path,
        metavar="DIR",
        help="keep the labelled project in DIR (a new folder) to look at in the window",
    )
    ap.add_argument("--quiet", action="store_true", help="no line per round")
    args = ap.parse_args(argv)

    sources, plugin, target = sources_of(args)
    settings = SessionSettings(
        plugin=plugin,
        seed_images=args.seed_images,
        retrain_every=args.retrain_every,
        budget=args.budget,
        order=args.order,
        wait=args.wait,
        overrides=parse_sets(args.set),
        seed=args.seed,
    )
    say = (lambda _: None) if args.quiet else (lambda line: print(line, flush=True))
    from labeler.learning.plugins import get_plugin

    task = str(getattr(get_plugin(plugin), "task", ""))
    with tempfile.TemporaryDirectory(prefix="labeler-loop-") as tmp:
        truth = read_ground_truth(Path(tmp) / "truth", sources, masks=task == "segmentation")
        print(
            f"{len(truth.paths)} images, {len(truth.categories)} categories; plugin {plugin}, order {args.order}"
            f"{', waiting for each round' if args.wait else ''}, budget {args.budget:g} s, seeds "
            f"{args.seed_images}, retrain every {args.retrain_every}",
            flush=True,
        )
        work = args.keep if args.keep is not None else Path(tmp) / "work"
        if work.exists():
            raise SystemExit(f"bench_loop: {work} already exists; --keep takes a new folder")
        try:
            result = run_session(work, truth, settings, say=say)
        except ValueError as exc:
            raise SystemExit(f"bench_loop: {exc}") from None
    if args.csv is not None:
        write_csv(result, args.csv)
    if args.plot is not None:
        name = args.data or Path(args.images).name
        plot(
            result,
            args.plot,
            title=f"{name}, {plugin}, order {args.order}{', wait' if args.wait else ''}: "
            f"effort ratio {result.effort_ratio:.2f}",
        )
    if args.json is not None:
        summary: dict[str, Any] = result.summary()
        summary["data"] = args.data
        args.json.write_text(json.dumps(summary, indent=1))
    report(result, target=target)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
