"""Store and format speed at scale: 20,000 images, 100,000 masks.

    .venv/bin/python benchmarks/bench_store.py [--images 20000] [--masks-per-image 5] [--runs 3] [--no-polygons]

Generates ``--images`` tiny PNG files (32 x 24 px) in a temporary folder, then times:

1. ``labeler init`` on them: :meth:`Project.add_folder` into a new project (median of ``--runs``);
2. storing ``--masks-per-image`` mask annotations (compressed RLE) per image in one transaction;
3. COCO export of all of them with masks as RLE (median of ``--runs``), and once with
   ``masks="polygon"`` (every mask decoded and traced; not with ``--no-polygons``);
4. COCO import of the exported file into a fresh project (median of ``--runs``; the images are
   found in the images folder, given as ``images_dir``), which checks every label at the door.

Beside export and import it prints their floor, what pycocotools' C codec and Python's C JSON
coder cost alone on the same masks: for the export, ``area`` and ``toBbox`` of every RLE plus
``json.dumps`` of the document; for the import, ``json.load`` of the file plus ``area`` of every
RLE (which parses each counts string); and ``pycocotools.coco.COCO`` loading the file (its index,
no check at all), the usual way to read one in Python. ``--profile`` prints the top of a cProfile
of one import.

Prints one line per figure: wall seconds, CPU seconds of this process, and a per-item rate. The
temporary folder is removed at the end. Other processes on the machine change the wall times;
say what else ran when quoting them.
"""

from __future__ import annotations

import argparse
import contextlib
import cProfile
import io
import json
import pstats
import sys
import tempfile
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path

import numpy as np
from PIL import Image
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO

from labeler.core.annotation import Annotation, Kind
from labeler.core.geometry import encode_mask
from labeler.core.store import Project
from labeler.formats import export_annotations, import_annotations

WIDTH, HEIGHT = 32, 24


def write_images(folder: Path, n: int) -> None:
    folder.mkdir(parents=True)
    pixels = np.random.default_rng(0).integers(0, 255, size=(HEIGHT, WIDTH, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(folder / "0.png")
    data = (folder / "0.png").read_bytes()
    for i in range(1, n):  # sub-folders of 1,000 as a camera or a dataset would have them
        sub = folder / f"{i // 1000:03d}"
        sub.mkdir(exist_ok=True)
        (sub / f"{i:06d}.png").write_bytes(data)


def masks(n: int, k: int) -> list[list[dict[str, object]]]:
    """``k`` small blobs per image for ``n`` images, as compressed RLE on a ``WIDTH x HEIGHT``
    image; a few random pixels of each blob are flipped so that no two masks of the set are alike
    (real masks are all different: a cache of checked masks must not flatter the import)."""
    yy, xx = np.mgrid[:HEIGHT, :WIDTH]
    rng = np.random.default_rng(1)
    blobs = []
    for j in range(k):
        cx, cy, r = 4 + 5 * j % (WIDTH - 8), 4 + 3 * j % (HEIGHT - 8), 2 + j % 3
        blobs.append((xx - cx) ** 2 + (yy - cy) ** 2 <= r * r)
    out = []
    for _ in range(n):
        noise = rng.random((k, HEIGHT, WIDTH)) < 0.03
        out.append([encode_mask(blob ^ flips) for blob, flips in zip(blobs, noise, strict=True)])
    return out


class Clock:
    """Wall and CPU seconds of a block (CPU time says what the work costs on a busy machine)."""

    def __enter__(self) -> Clock:
        self.wall, self.cpu = time.perf_counter(), time.process_time()
        return self

    def __exit__(self, *exc: object) -> None:
        self.wall, self.cpu = time.perf_counter() - self.wall, time.process_time() - self.cpu

    def text(self, n: int, unit: str) -> str:
        return f"{self.wall:7.2f} s wall {self.cpu:7.2f} s cpu {n / self.wall:9.0f} {unit}/s"


def timed(fn: Callable[[], object], runs: int) -> tuple[Clock, object]:
    """Run ``fn`` ``runs`` times; the clock of the median run (by wall time) and the last result."""
    clocks, result = [], None
    for _ in range(runs):
        with Clock() as clock:
            result = fn()
        clocks.append(clock)
    clocks.sort(key=lambda c: c.wall)
    return clocks[len(clocks) // 2], result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=20_000)
    parser.add_argument("--masks-per-image", type=int, default=5)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--profile", action="store_true", help="print a cProfile of one import")
    parser.add_argument(
        "--no-polygons", action="store_true", help="skip the export with masks traced as polygons (about a minute)"
    )
    args = parser.parse_args(argv)
    n, k = args.images, args.masks_per_image
    with tempfile.TemporaryDirectory(prefix="labeler-bench-") as tmp:
        root = Path(tmp)
        start = time.perf_counter()
        write_images(root / "images", n)
        print(f"generated {n} images of {WIDTH}x{HEIGHT} px in {time.perf_counter() - start:.1f} s")

        counter = iter(range(10**6))

        def init() -> Project:
            project = Project.create(root / f"p{next(counter)}")
            project.add_folder(root / "images")
            return project

        clock, project = timed(init, args.runs)
        assert isinstance(project, Project) and project.image_count() == n
        print(f"init (add_folder)      {clock.text(n, 'images')}   (median of {args.runs})")

        per_image = masks(n, k)
        with Clock() as clock, project.transaction():
            category = project.add_category("blob").id
            images = project.images()
            for record in images:
                project.set_image_size(record.id, WIDTH, HEIGHT)
            project.add_annotations(
                [
                    Annotation(image_id=r.id, category_id=category, kind=Kind.MASK, rle=rle)
                    for r, rles in zip(images, per_image, strict=True)
                    for rle in rles
                ],
                log=False,
            )
            for record in images:
                project.set_done(record.id, True)
        print(f"store {n * k} masks  {clock.text(n * k, 'masks')}")

        out = root / "export" / "coco.json"
        clock, _ = timed(lambda: export_annotations(project, out, format="coco"), args.runs)
        print(
            f"COCO export, RLE       {clock.text(n * k, 'masks')}   (median of {args.runs}; "
            f"{out.stat().st_size / 1e6:.1f} MB)"
        )

        if not args.no_polygons:
            with Clock() as clock:
                export_annotations(project, root / "export" / "poly.json", format="coco", masks="polygon")
            print(f"COCO export, polygons  {clock.text(n * k, 'masks')}")

        document = json.loads(out.read_text(encoding="utf-8"))
        rles = [
            {"size": a["segmentation"]["size"], "counts": a["segmentation"]["counts"].encode()}
            for a in document["annotations"]
        ]
        clock, _ = timed(partial(codec_export, document, rles), args.runs)
        del document, rles
        print(f"  floor: C codec + json.dumps {clock.text(n * k, 'masks')}")

        def do_import() -> object:
            fresh = Project.create(root / f"p{next(counter)}")
            try:
                return import_annotations(fresh, out, format="coco", images_dir=root / "images")
            finally:
                fresh.close()

        clock, imported = timed(do_import, args.runs)
        assert imported.images == n and imported.annotations == n * k, imported.summary()  # type: ignore[attr-defined]
        print(
            f"COCO import            {clock.text(n * k, 'masks')}   (median of {args.runs}; "
            f"{imported.images} images, {imported.annotations} annotations)"
        )  # type: ignore[attr-defined]
        clock, _ = timed(lambda: codec_import(out), args.runs)
        print(f"  floor: json.load + C codec  {clock.text(n * k, 'masks')}")
        with Clock() as clock, contextlib.redirect_stdout(io.StringIO()):
            COCO(str(out))
        print(f"  pycocotools COCO(file)      {clock.text(n * k, 'masks')}")
        if args.profile:
            profile = cProfile.Profile()
            profile.runcall(do_import)
            pstats.Stats(profile).sort_stats("cumulative").print_stats(30)
        project.close()
    return 0


def _area(rles: list[dict[str, object]]) -> np.ndarray:
    # area() of a list longer than 255 overflows inside pycocotools 2.0.11 (numpy 2): chunks
    return np.concatenate([mask_utils.area(rles[i : i + 255]) for i in range(0, len(rles), 255)])


def codec_export(document: dict[str, object], rles: list[dict[str, object]]) -> None:
    """What an export costs at least: pycocotools' area and bbox of every mask, one C JSON dump."""
    _area(rles)
    mask_utils.toBbox(rles)
    json.dumps(document, separators=(",", ":"))


def codec_import(out: Path) -> None:
    """What an import costs at least: one C JSON load, pycocotools parsing every counts string."""
    with open(out, encoding="utf-8") as fh:
        document = json.load(fh)
    _area(
        [
            {"size": a["segmentation"]["size"], "counts": a["segmentation"]["counts"].encode()}
            for a in document["annotations"]
        ]
    )


if __name__ == "__main__":
    sys.exit(main())
