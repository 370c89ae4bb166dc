"""The click tools by the clicks-to-IoU protocol of interactive segmentation.

    python benchmarks/bench_assist.py --coco FILE --images DIR [--project P] [--json OUT]
    python benchmarks/bench_assist.py --masks LABELDIR --value 255 --images DIR [--project P]

Objects: every non-crowd object of at least 32 x 32 pixels of a COCO file, or (``--masks``) every
connected region of pixels equal to ``--value`` in label PNGs named like the images. For each:
box-to-mask from its true box, then up to 20 correction clicks, each at the point farthest from
the boundary of the largest error region (:mod:`labeler.assist.protocol`). Prints box IoU,
NoC@85, NoC@90, mean IoU after 1/3/5 clicks and the median preview time per click, for plain
GrabCut (crop around the object, 3 iterations, clicks as small definite disks) and for the tools
(:mod:`labeler.assist`; with ``--project``, seeded by that project's active segmenter version).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
import time
from pathlib import Path

import cv2
import numpy as np

from labeler.assist import Click, ImagePixels, prepare, segment
from labeler.assist.protocol import clicks_to_reach, iou, next_click
from labeler.assist.window import box_window, read_window
from labeler.core.geometry import decode_rle, polygons_to_mask
from labeler.core.images import read_image

MAX_CLICKS = 20
MIN_SIDE = 32


def coco_objects(
    path: Path, images: Path
) -> list[tuple[Path, int, np.ndarray, tuple[float, float, float, float], str]]:
    data = json.loads(path.read_text())
    files = {im["id"]: (im["file_name"], im["height"], im["width"]) for im in data["images"]}
    names = {c["id"]: c["name"] for c in data.get("categories", [])}
    out = []
    for a in data["annotations"]:
        x, y, w, h = a["bbox"]
        if a.get("iscrowd") or w < MIN_SIDE or h < MIN_SIDE:
            continue
        name, ih, iw = files[a["image_id"]]
        seg = a["segmentation"]
        if isinstance(seg, list):
            mask = polygons_to_mask([np.asarray(p).reshape(-1, 2) for p in seg], ih, iw)
        else:
            mask = decode_rle(seg)
        if mask.any():
            out.append(
                (
                    images / Path(name).name,
                    int(a["id"]),
                    mask,
                    (float(x), float(y), float(w), float(h)),
                    names.get(a["category_id"], ""),
                )
            )
    return out


def mask_objects(labels: Path, images: Path, value: int, name: str) -> list:
    out = []
    for label_path in sorted(labels.iterdir()):
        image_path = images / label_path.name
        if not image_path.exists():
            continue
        label = cv2.imread(str(label_path), cv2.IMREAD_GRAYSCALE)
        count, regions, stats, _ = cv2.connectedComponentsWithStats((label == value).astype(np.uint8), connectivity=4)
        for r in range(1, count):
            x, y, w, h, _area = (int(v) for v in stats[r])
            if w >= MIN_SIDE and h >= MIN_SIDE:
                out.append((image_path, len(out), regions == r, (float(x), float(y), float(w), float(h)), name))
    return out


def baseline_mask(
    image: np.ndarray, box: tuple[float, float, float, float], clicks: list[Click]
) -> tuple[np.ndarray, object]:
    """Plain GrabCut: crop around the object, rectangle init, 3 iterations, clicks as 3 px disks."""
    h, w = image.shape[:2]
    window = box_window(box, (w, h), work_side=100_000)
    crop = read_window(ImagePixels.of(image), window)
    x0, y0, x1, y1 = window.box_to_work(box)
    labels = np.zeros(crop.shape[:2], np.uint8)
    bgd, fgd = np.zeros((1, 65)), np.zeros((1, 65))
    labels[:] = cv2.GC_BGD
    labels[y0:y1, x0:x1] = cv2.GC_PR_FGD
    for c in clicks:
        cx, cy = int(c.x) - window.x0, int(c.y) - window.y0
        cv2.circle(labels, (cx, cy), 3, int(cv2.GC_FGD if c.positive else cv2.GC_BGD), -1)
    with contextlib.suppress(cv2.error):
        cv2.grabCut(crop, labels, None, bgd, fgd, 3, cv2.GC_INIT_WITH_MASK)
    out = np.zeros((h, w), bool)
    out[window.y0 : window.y1, window.x0 : window.x1] = (labels == cv2.GC_FGD) | (labels == cv2.GC_PR_FGD)
    return out, None


def run_object(method: str, image: np.ndarray, truth: np.ndarray, box, probability) -> tuple[list[float], list[float]]:
    h, w = image.shape[:2]
    clicks: list[Click] = []
    times: list[float] = []
    if method == "baseline":
        pred, _ = baseline_mask(image, box, clicks)
    else:
        prepared = prepare(ImagePixels.of(image), box, probability=probability)
        result = segment(prepared)
        pred = result.full(w, h)
    ious = [iou(pred, truth)]
    for _ in range(MAX_CLICKS):
        if ious[-1] >= 0.90 and len(ious) > 5:
            break
        click = next_click(pred, truth)
        if click is None:
            ious.append(1.0)
            continue
        clicks.append(click)
        t = time.perf_counter()
        if method == "baseline":
            pred, _ = baseline_mask(image, box, clicks)
        else:
            result = segment(prepared, [*result.clicks, click], previous=result)
            pred = result.full(w, h)
        times.append(time.perf_counter() - t)
        ious.append(iou(pred, truth))
    return ious, times


def summarise(all_ious: list[list[float]], times: list[float]) -> dict[str, object]:
    def after(k: int) -> float:
        return float(np.mean([i[min(k, len(i) - 1)] for i in all_ious]))

    return {
        "box_iou": float(np.mean([i[0] for i in all_ious])),
        "noc85": float(np.mean([clicks_to_reach(i, 0.85, max_clicks=MAX_CLICKS) for i in all_ious])),
        "noc90": float(np.mean([clicks_to_reach(i, 0.90, max_clicks=MAX_CLICKS) for i in all_ious])),
        "iou_after": {str(k): after(k) for k in (1, 3, 5)},
        "preview_ms": float(np.median(times) * 1000) if times else 0.0,
        "objects": len(all_ious),
    }


def probability_for(project: str | None, category: str):
    if project is None:
        return None
    from labeler.core.store import Project
    from labeler.learning.probabilities import active_segmentation_model, class_probabilities

    with Project.open(Path(project)) as p:
        loaded = active_segmentation_model(p)
    if loaded is None:
        raise SystemExit(f"{project}: no trained segmentation model")
    channel = next((k + 1 for k, c in enumerate(loaded.classes) if c.name == category), None)
    if channel is None:
        channel = len(loaded.classes)
    return lambda crop: class_probabilities(loaded, crop)[channel]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--coco", type=Path)
    ap.add_argument("--masks", type=Path, help="label PNGs: objects are connected regions of --value")
    ap.add_argument("--value", type=int, default=255)
    ap.add_argument("--name", default="cell", help="class name of --masks objects (the model's channel)")
    ap.add_argument("--images", type=Path, required=True)
    ap.add_argument("--project")
    ap.add_argument("--limit", type=int, default=0, help="at most this many objects, evenly spread (0 = all)")
    ap.add_argument("--json", type=Path)
    ap.add_argument("--no-baseline", action="store_true")
    args = ap.parse_args(argv)
    if (args.coco is None) == (args.masks is None):
        print("give --coco FILE or --masks DIR", file=sys.stderr)
        return 2
    cv2.setNumThreads(2)
    objects = (
        coco_objects(args.coco, args.images)
        if args.coco
        else mask_objects(args.masks, args.images, args.value, args.name)
    )
    if args.limit and len(objects) > args.limit:
        objects = [objects[i] for i in np.linspace(0, len(objects) - 1, args.limit).round().astype(int)]
    methods = ["tools"] if args.no_baseline else ["baseline", "tools"]
    report: dict[str, object] = {}
    cache: dict[Path, np.ndarray] = {}
    prob = None
    for method in methods:
        all_ious, times = [], []
        for path, _id, truth, box, category in objects:
            image = cache.setdefault(path, read_image(path))
            probability = None
            if method == "tools" and args.project:
                prob = prob or probability_for(args.project, category)
                probability = prob
            ious, t = run_object(method, image, truth, box, probability)
            all_ious.append(ious)
            times += t
        s = summarise(all_ious, times)
        print(
            f"{method:9s} objects {s['objects']}  box IoU {s['box_iou']:.3f}  NoC@85 {s['noc85']:.2f}  "
            f"NoC@90 {s['noc90']:.2f}  IoU after 1/3/5 clicks "
            + "/".join(f"{v:.3f}" for v in s["iou_after"].values())  # type: ignore[union-attr]
            + f"  preview {s['preview_ms']:.0f} ms (median)",
            flush=True,
        )
        report[method] = s
    # the preview on a 1-megapixel image: the first objects' images scaled to 1 MP
    times_1mp = []
    for path, _id, truth, box, _c in objects[:15]:
        image = cache[path]
        f = (1e6 / (image.shape[0] * image.shape[1])) ** 0.5
        big = cv2.resize(image, None, fx=f, fy=f, interpolation=cv2.INTER_LINEAR)
        bigt = cv2.resize(truth.astype(np.uint8), (big.shape[1], big.shape[0]), interpolation=cv2.INTER_NEAREST) > 0
        bbox = tuple(v * f for v in box)
        _, t = run_object("tools", big, bigt, bbox, None)
        times_1mp += t
    tools = dict(report["tools"])  # type: ignore[arg-type]
    tools["preview_ms_1mp"] = float(np.median(times_1mp) * 1000) if times_1mp else 0.0
    if "baseline" in report:
        tools["baseline"] = report["baseline"]
    print(f"preview on 1-megapixel images: {tools['preview_ms_1mp']:.0f} ms (median per click)")
    if args.json:
        args.json.write_text(json.dumps(tools, indent=2))
    print(f"tools: NoC@90 {tools['noc90']:.2f}, box IoU {tools['box_iou']:.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
