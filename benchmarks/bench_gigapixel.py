"""Gigapixel images in the window: pyramid build, first paint, panned views at three zooms, peak RSS.

Run:  QT_QPA_PLATFORM=offscreen .venv/bin/python benchmarks/bench_gigapixel.py [--side 40000] [--formats tiff,jpeg]

Needs pyvips (the optional ``big`` extra). The images are generated under /tmp by libvips and
removed after (nothing is committed): a ``--side`` x ``--side`` RGB picture of noise (a
1024 x 1024 Gaussian noise tile repeated, so the tiles compress like a photograph's, not like a
flat colour) over smooth gradients, saved as

- ``tiff``: a tiled BigTIFF (256 x 256 JPEG tiles, Q 85), as microscopy slides and aerial
  images come; its full resolution is read from the file itself, tile by tile;
- ``jpeg``: a plain baseline JPEG (Q 85), which can only be read from the top: its pyramid,
  full resolution included, is built in one streaming pass;
- ``png``: a plain PNG (slow to write: add it by hand).

For each, a fresh child process opens the image in the window (``MainWindow.open_path``, in-app,
1600 x 1000) and prints:

- the cold open: from ``open_path`` to the first pixels, which builds the pyramid in
  ``<project>/.tiles`` (in a pool thread), and the longest gap of a 20 ms timer meanwhile;
- the warm open (a second child, the pyramid cached): to the first pixels;
- panned views at 1:1, 1:4 and 1:16: from moving the view to a new place to every visible tile
  read and painted (median and worst of 9 random places each);
- the peak RSS of each child (``VmHWM``; target < 1 GB) and the cache's size on disk.

Figures, not assertions: rerun before relying on one.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ZOOMS = (1.0, 0.25, 1 / 16)
PLACES = 9
VIEW = (1600, 1000)


def make_image(path: Path, side: int, kind: str) -> float:
    """Write the ``side`` x ``side`` test picture as ``kind`` (see the module); seconds taken."""
    import pyvips

    started = time.perf_counter()
    noise = pyvips.Image.gaussnoise(1024, 1024, mean=0, sigma=28).replicate(-(-side // 1024), -(-side // 1024))
    noise = noise.crop(0, 0, side, side)
    xy = pyvips.Image.xyz(side, side)
    x, y = xy.extract_band(0), xy.extract_band(1)
    base = [(x * (200 / side) + 30), (y * (200 / side) + 30), ((x + y) * (100 / side) + 60) + ((x // 4096) % 2) * 40]
    bands = [b + noise for b in base]
    image = bands[0].bandjoin(bands[1:]).cast("uchar")
    if kind == "tiff":
        image.tiffsave(
            os.fspath(path), tile=True, tile_width=256, tile_height=256, compression="jpeg", Q=85, bigtiff=True
        )
    elif kind == "jpeg":
        image.jpegsave(os.fspath(path), Q=85)
    elif kind == "png":
        image.pngsave(os.fspath(path), compression=3)
    else:
        raise ValueError(kind)
    return time.perf_counter() - started


def _hwm_mb() -> float:
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) / 1024 for line in status if line.startswith("VmHWM"))


def child(project: Path, pans: bool) -> None:
    """In a fresh process: open ``project`` in the window and print one JSON line of figures."""
    import random

    from PySide6.QtCore import QPointF, QTimer

    from labeler.gui.app import application

    app = application()
    from labeler.gui.main_window import MainWindow

    window = MainWindow(interactive=False)
    window.resize(*VIEW)
    window.show()
    app.processEvents()
    gaps = {"longest": 0.0, "last": time.perf_counter(), "ticks": 0}

    def tick() -> None:
        now = time.perf_counter()
        gaps["longest"] = max(gaps["longest"], now - gaps["last"])
        gaps["last"] = now
        gaps["ticks"] += 1

    timer = QTimer()
    timer.setInterval(20)
    timer.timeout.connect(tick)
    shown: list[float] = []
    canvas = window.canvas
    canvas.imageShown.connect(lambda _i: shown.append(time.perf_counter()))
    errors: list[str] = []
    canvas.errorOccurred.connect(errors.append)
    with open("/proc/self/status") as status:
        before = next(int(line.split()[1]) / 1024 for line in status if line.startswith("VmRSS"))
    timer.start()
    gaps["last"] = started = time.perf_counter()
    window.open_path(project)
    while not shown and not errors:
        app.processEvents()
        time.sleep(0.002)
    if errors:
        raise SystemExit(f"cannot open: {errors[0]}")
    canvas.view().viewport().grab()  # the first paint
    first = time.perf_counter() - started
    open_gap, open_ticks = gaps["longest"], gaps["ticks"]
    figures: dict[str, object] = {
        "first_paint_s": first,
        "rss_before_open_mb": before,
        "open_longest_gap_ms": open_gap * 1000,
        "open_ticks": open_ticks,
        "size": list(canvas.image_size()),
        "overview_reduce": canvas.image_resolution(),
    }
    layer = canvas.tiled_layer()
    view = canvas.view()
    if pans:
        rng = random.Random(16)
        width, height = canvas.image_size()
        gaps["longest"] = 0.0
        for zoom in ZOOMS:
            view.resetTransform()
            view.scale(zoom, zoom)
            times = []
            for _ in range(PLACES):
                x, y = rng.uniform(0.05, 0.95) * width, rng.uniform(0.05, 0.95) * height
                t0 = time.perf_counter()
                view.centerOn(QPointF(x, y))
                view.viewport().grab()
                while layer.loader().pending():
                    app.processEvents()
                    time.sleep(0.001)
                view.viewport().grab()
                times.append(time.perf_counter() - t0)
            figures[f"pan_{zoom:g}"] = {"median_ms": statistics.median(times) * 1000, "max_ms": max(times) * 1000}
        figures["pan_longest_gap_ms"] = gaps["longest"] * 1000
        figures["tiles_cached"] = len(layer.cache())
        figures["tile_cache_mb"] = layer.cache().nbytes / 1e6
    timer.stop()
    figures["peak_rss_mb"] = _hwm_mb()
    print("FIGURES " + json.dumps(figures), flush=True)
    window.shutdown()


def run_child(project: Path, settings: Path, *, pans: bool) -> dict[str, object]:
    env = dict(
        os.environ, LABELER_SETTINGS=str(settings), QT_QPA_PLATFORM=os.environ.get("QT_QPA_PLATFORM", "offscreen")
    )
    cmd = [sys.executable, __file__, "--child", os.fspath(project)] + ([] if pans else ["--no-pans"])
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=3600)
    line = next((ln for ln in out.stdout.splitlines() if ln.startswith("FIGURES ")), None)
    if line is None:
        raise RuntimeError(f"the child failed:\n{out.stdout[-2000:]}\n{out.stderr[-3000:]}")
    figures: dict[str, object] = json.loads(line.removeprefix("FIGURES "))
    return figures


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--side", type=int, default=40_000)
    parser.add_argument("--formats", default="tiff,jpeg", help="comma-separated: tiff, jpeg, png")
    parser.add_argument("--child", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--no-pans", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child is not None:
        child(args.child, pans=not args.no_pans)
        return 0
    from labeler.core.store import Project
    from labeler.core.tiles import pyramid_cache_dir

    tmp = Path(tempfile.mkdtemp(prefix="bench_giga_"))
    print(f"{args.side:,} x {args.side:,} images in the window ({VIEW[0]} x {VIEW[1]}), {os.cpu_count()} cores")
    try:
        for kind in args.formats.split(","):
            folder = tmp / kind
            folder.mkdir()
            image = folder / f"giga.{'tif' if kind == 'tiff' else kind}"
            made = make_image(image, args.side, kind)
            with Project.create(folder) as project:
                project.add_images([image])
            print(f"\n{kind}: {image.stat().st_size / 1e6:,.0f} MB, written in {made:.1f} s")
            cold = run_child(folder, tmp / "settings.ini", pans=False)
            cache = sum(p.stat().st_size for p in pyramid_cache_dir(folder).iterdir())
            print(
                f"  cold open (pyramid built): {cold['first_paint_s']:7.2f} s to first pixels, "
                f"peak RSS {cold['peak_rss_mb']:5.0f} MB, 20 ms timer's longest gap {cold['open_longest_gap_ms']:.0f} ms"
                f" ({cold['open_ticks']} ticks); cache {cache / 1e6:,.0f} MB"
            )
            warm = run_child(folder, tmp / "settings.ini", pans=True)
            print(
                f"  warm open (pyramid cached): {warm['first_paint_s']:6.2f} s to first pixels "
                f"(overview 1/{warm['overview_reduce']}), timer's longest gap {warm['open_longest_gap_ms']:.0f} ms"
            )
            for zoom in ZOOMS:
                pan = warm[f"pan_{zoom:g}"]
                assert isinstance(pan, dict)
                print(
                    f"  panned view at 1:{1 / zoom:<3g} {pan['median_ms']:7.0f} ms median, "
                    f"{pan['max_ms']:5.0f} ms worst ({PLACES} places)"
                )
            print(
                f"  while panning: timer's longest gap {warm['pan_longest_gap_ms']:.0f} ms; "
                f"{warm['tiles_cached']} tiles cached ({warm['tile_cache_mb']:.0f} MB); "
                f"peak RSS {warm['peak_rss_mb']:.0f} MB (target < 1024; the window alone, before opening: "
                f"{warm['rss_before_open_mb']:.0f} MB)"
            )
            shutil.rmtree(folder, ignore_errors=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
