"""Store and format speed at scale: 20,000 images, 100,000 masks.

    .venv/bin/python benchmarks/bench_store.py [--images 20000] [--masks-per-image 5] [--runs 3]

Generates ``--images`` tiny PNG files (32 x 24 px) in a temporary folder, then times:

1. ``labeler init`` on them: :meth:`Project.add_folder` into a new project (median of ``--runs``);
2. storing ``--masks-per-image`` mask annotations (compressed RLE) per image in one transaction;
3. COCO export of all of them with masks as RLE (median of ``--runs``), and once with
   ``masks="polygon"`` (every mask decoded and traced);
4. COCO import of the exported file into a fresh project (the images are found by path).

Prints one line per figure (seconds, and per-item rates). The temporary folder is removed at the
end. Other processes on the machine change the figures; say what else ran when quoting them.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
from PIL import Image

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


def masks(k: int) -> list[dict[str, object]]:
    """``k`` different small blobs as compressed RLE on a ``WIDTH x HEIGHT`` image."""
    yy, xx = np.mgrid[:HEIGHT, :WIDTH]
    out = []
    for j in range(k):
        cx, cy, r = 4 + 5 * j % (WIDTH - 8), 4 + 3 * j % (HEIGHT - 8), 2 + j % 3
        out.append(encode_mask((xx - cx) ** 2 + (yy - cy) ** 2 <= r * r))
    return out


def timed(fn: Callable[[], object], runs: int) -> tuple[float, object]:
    times, result = [], None
    for _ in range(runs):
        start = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times), result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=20_000)
    parser.add_argument("--masks-per-image", type=int, default=5)
    parser.add_argument("--runs", type=int, default=3)
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

        seconds, project = timed(init, args.runs)
        assert isinstance(project, Project) and project.image_count() == n
        print(f"init (add_folder)           {seconds:7.2f} s   {n / seconds:9.0f} images/s   (median of {args.runs})")

        rles = masks(k)
        start = time.perf_counter()
        with project.transaction():
            category = project.add_category("blob").id
            images = project.images()
            for record in images:
                project.set_image_size(record.id, WIDTH, HEIGHT)
            project.add_annotations(
                [Annotation(image_id=r.id, category_id=category, kind=Kind.MASK, rle=rle) for r in images for rle in rles],
                log=False,
            )
            for record in images:
                project.set_done(record.id, True)
        seconds = time.perf_counter() - start
        print(f"store {n * k} masks          {seconds:7.2f} s   {n * k / seconds:9.0f} masks/s")

        out = root / "export" / "coco.json"
        seconds, report = timed(lambda: export_annotations(project, out, format="coco"), args.runs)
        mb = out.stat().st_size / 1e6
        print(f"COCO export, RLE            {seconds:7.2f} s   {n * k / seconds:9.0f} masks/s   "
              f"{mb:.1f} MB   (median of {args.runs}) {report.summary()[:40]}...")  # type: ignore[attr-defined]

        start = time.perf_counter()
        export_annotations(project, root / "export" / "poly.json", format="coco", masks="polygon")
        seconds = time.perf_counter() - start
        print(f"COCO export, polygons       {seconds:7.2f} s   {n * k / seconds:9.0f} masks/s")

        fresh = Project.create(root / "fresh")
        start = time.perf_counter()
        report = import_annotations(fresh, out, format="coco")
        seconds = time.perf_counter() - start
        print(f"COCO import                 {seconds:7.2f} s   {n * k / seconds:9.0f} masks/s   "
              f"({report.images} images, {report.annotations} annotations)")
        for p in (project, fresh):
            p.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
