"""GUI start-up, big-folder and big-image benchmark.

Run:  QT_QPA_PLATFORM=offscreen .venv/bin/python benchmarks/bench_gui.py [--repeats 3] [--images 20000]

Each measurement is a fresh child process (so imports count, as for a user), timed from just
before the process is started to the first paint:

- ``empty window``: ``labeler`` with no path, to the main window's first paint;
- ``open project``: a project of N images (tiny generated files) to the first paint of the window
  with the image list filled and the first image shown;
- ``open folder``: the same folder without a project (the project is created, images listed);
- ``8000x8000 JPEG``: a project holding one 8000 x 8000 photo-like JPEG, to its first pixels on the
  canvas (a reduced level that fits the view) with the RSS then; then the view zooms to 1:1, which
  decodes the full resolution, and the peak RSS of the process is taken after panning there;
- ``pan``: frame times while panning that image at 1:1 and at 1:2 zoom (synchronous repaints of
  the view's viewport, 60 frames of 40 px each).

Medians over the repeats are printed, with labelme / X-AnyLabeling figures for comparison.
torch must stay out of start-up: the child reports whether it was imported.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REFERENCE = {
    "empty window": "labelme 1.4 s / X-AnyLabeling 3.8 s",
    "open folder": "labelme 2.5 s / X-AnyLabeling 1.2 s",
    "8000x8000 JPEG": "labelme 1.8 s & 920 MB / X-AnyLabeling 0.9 s & 525 MB",
}


# ---- child side ---------------------------------------------------------------------------------


def child(mode: str, path: str | None) -> None:
    """Open the window as ``labeler [PATH]`` would and print one JSON line at the first paint."""
    import resource

    from PySide6.QtCore import QEvent, QObject, QTimer

    from labeler.gui.app import application

    app = application()
    from labeler.gui.main_window import MainWindow

    window = MainWindow(interactive=False)
    result: dict[str, object] = {}

    def rss_mb() -> float:
        """Peak resident memory of this process (VmHWM; ru_maxrss would count the forked parent)."""
        try:
            for line in Path("/proc/self/status").read_text().splitlines():
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024.0
        except OSError:
            pass
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0

    def finish() -> None:
        result["torch_imported"] = "torch" in sys.modules
        result["peak_rss_mb"] = rss_mb()
        print(json.dumps(result), flush=True)
        window.shutdown()
        app.quit()

    class PaintWatch(QObject):
        def __init__(self) -> None:
            super().__init__()
            self.painted = False

        def eventFilter(self, obj: QObject, event: QEvent) -> bool:
            if (
                not self.painted
                and event.type() == QEvent.Type.Paint
                and obj is window.images.view.viewport()
                and (mode == "empty" or (window.project is not None and window.images.model.rowCount()))
            ):
                self.painted = True
                result["first_paint"] = time.time()
                result["first_paint_cpu"] = time.process_time()
                if mode in ("empty", "project", "folder"):
                    QTimer.singleShot(0, finish)
            return False

    watch = PaintWatch()
    app.installEventFilter(watch)

    if mode == "image":
        if os.environ.get("BENCH_FULL_32BIT"):  # compare: every level as 32-bit pixels
            from labeler.gui.canvas import image_layer

            image_layer.QT32_MAX_PIXELS = 1 << 40

        def on_shown(_image_id: int) -> None:
            result["image_shown"] = time.time()
            result["image_shown_cpu"] = time.process_time()
            result["rss_at_first_pixels_mb"] = rss_mb()
            result["first_level"] = window.canvas.image_resolution()
            if window.canvas.image_resolution() == 1:
                QTimer.singleShot(0, pan)
            else:  # the user zooms in to 1:1: the full resolution is decoded then
                QTimer.singleShot(0, window.canvas.zoom_actual_size)

        def on_resolution(reduce: int) -> None:
            if reduce == 1 and "image_shown" in result:
                QTimer.singleShot(0, pan)

        def pan() -> None:
            if "pan_ms" in result:
                return
            result["full_resolution"] = time.time()
            view = window.canvas.view()
            frames: dict[str, list[float]] = {}
            for label, zoom in (("1:1", None), ("1:2", 0.5)):
                window.canvas.zoom_actual_size()
                if zoom is not None:
                    view.scale(zoom, zoom)
                bar = view.horizontalScrollBar()
                vbar = view.verticalScrollBar()
                bar.setValue(bar.maximum() // 3)
                vbar.setValue(vbar.maximum() // 3)
                view.viewport().repaint()
                times = []
                for i in range(60):
                    bar.setValue(bar.value() + 40)
                    vbar.setValue(vbar.value() + (20 if i % 2 else 0))
                    t0 = time.perf_counter()
                    view.viewport().repaint()
                    times.append((time.perf_counter() - t0) * 1000.0)
                frames[label] = times
            result["pan_ms"] = {k: statistics.median(v) for k, v in frames.items()}
            result["pan_p95_ms"] = {k: sorted(v)[int(0.95 * len(v)) - 1] for k, v in frames.items()}
            result["viewport"] = [view.viewport().width(), view.viewport().height()]
            finish()

        window.canvas.imageShown.connect(on_shown)
        window.canvas.resolutionChanged.connect(on_resolution)

    window.show()
    if path is not None:
        window.open_path(path, image_root=os.environ.get("LABELER_IMAGE_ROOT") or None)
    app.exec()


# ---- parent side --------------------------------------------------------------------------------


def run_child(
    mode: str, path: Path | str | None, settings: Path, *, full_32bit: bool = False, image_root: Path | None = None
) -> dict[str, float]:
    """One child's figures; ``image_root`` is the image folder of a ``postgresql://`` ``path``."""
    env = dict(
        os.environ,
        LABELER_IMAGE_ROOT=str(image_root or ""),
        BENCH_FULL_32BIT="1" if full_32bit else "",
        LABELER_SETTINGS=str(settings),
        QT_QPA_PLATFORM=os.environ.get("QT_QPA_PLATFORM", "offscreen"),
    )
    if settings.exists():
        settings.unlink()
    cmd = [sys.executable, __file__, "--child", mode] + ([str(path)] if path is not None else [])
    start = time.time()
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    lines = [ln for ln in out.stdout.splitlines() if ln.startswith("{")]
    if out.returncode != 0 or not lines:
        raise RuntimeError(f"child {mode} failed ({out.returncode}):\n{out.stdout}\n{out.stderr[-3000:]}")
    data = json.loads(lines[-1])
    if data.get("torch_imported"):
        print(f"  warning: torch was imported during '{mode}' start-up", file=sys.stderr)
    res: dict[str, float] = {"rss": float(data["peak_rss_mb"])}
    if "first_paint" in data:
        res["paint"] = float(data["first_paint"]) - start
        res["paint_cpu"] = float(data["first_paint_cpu"])
    if "image_shown" in data:
        res["shown"] = float(data["image_shown"]) - start
        res["shown_cpu"] = float(data["image_shown_cpu"])
        res["full"] = float(data["full_resolution"]) - start
        res["rss_first"] = float(data["rss_at_first_pixels_mb"])
        res["first_level"] = float(data["first_level"])
        for k, v in data["pan_ms"].items():
            res[f"pan {k}"] = float(v)
        for k, v in data["pan_p95_ms"].items():
            res[f"pan95 {k}"] = float(v)
        res["viewport_w"], res["viewport_h"] = (float(v) for v in data["viewport"])
    return res


def make_tiny_images(folder: Path, count: int) -> None:
    import cv2
    import numpy as np

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for i in range(count):
        sub = folder / f"part{i // 1000:02d}"
        sub.mkdir(exist_ok=True)
        cv2.imwrite(str(sub / f"img_{i:05d}.png"), rng.integers(0, 255, (16, 16, 3), dtype=np.uint8))


def make_big_jpeg(path: Path, size: int = 8000) -> None:
    """A photo-like 8000 x 8000 JPEG (smooth gradients, shapes, mild noise)."""
    import cv2
    import numpy as np

    path.parent.mkdir(parents=True, exist_ok=True)
    y, x = np.mgrid[0:size, 0:size].astype(np.float32) / size
    image = np.empty((size, size, 3), dtype=np.uint8)
    image[..., 0] = (120 + 100 * np.sin(6 * x) * np.cos(4 * y)).astype(np.uint8)
    image[..., 1] = (120 + 90 * np.cos(5 * x + 3 * y)).astype(np.uint8)
    image[..., 2] = (100 + 80 * np.sin(9 * y)).astype(np.uint8)
    del x, y
    rng = np.random.default_rng(1)
    for _ in range(300):
        c = tuple(int(v) for v in rng.integers(0, 255, 3))
        cx, cy, r = (int(v) for v in [*rng.integers(0, size, 2).tolist(), int(rng.integers(20, 300))])
        cv2.circle(image, (cx, cy), r, c, -1)
    image = cv2.add(image, rng.integers(0, 12, image.shape, dtype=np.uint8))
    cv2.imwrite(str(path), image, [cv2.IMWRITE_JPEG_QUALITY, 90])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--images", type=int, default=20_000)
    parser.add_argument("--big-only", action="store_true", help="only the 8000 x 8000 JPEG measurements")
    parser.add_argument(
        "--full-32bit",
        action="store_true",
        help="keep big levels as 32-bit pixels too (to compare with RGB888 stored as 3 bytes)",
    )
    parser.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child[0], args.child[1] if len(args.child) > 1 else None)
        return 0

    from labeler.core.store import Project

    with tempfile.TemporaryDirectory(prefix="bench-gui-") as tmp:
        tmp_path = Path(tmp)
        settings = tmp_path / "settings.ini"
        t0 = time.time()
        if not args.big_only:
            make_tiny_images(tmp_path / "many", args.images)
            with Project.create(tmp_path / "many") as project:
                project.add_folder(tmp_path / "many")
        # in a child, so this process stays small (its children are forked from it)
        subprocess.run(
            [
                sys.executable,
                "-c",
                f"import sys; sys.path.insert(0, {str(Path(__file__).parent)!r}); "
                f"import bench_gui; bench_gui.make_big_jpeg(__import__('pathlib').Path({str(tmp_path / 'big' / 'big.jpg')!r}))",
            ],
            check=True,
        )
        with Project.create(tmp_path / "big") as project:
            project.add_folder(tmp_path / "big")
        print(
            f"generated data in {time.time() - t0:.0f} s "
            f"({args.images} images; 8000x8000 JPEG of {(tmp_path / 'big' / 'big.jpg').stat().st_size / 1e6:.1f} MB)"
        )

        results: dict[str, list[dict[str, float]]] = {
            "empty window": [],
            "open project": [],
            "open folder": [],
            "8000x8000 JPEG": [],
        }
        for _ in range(args.repeats):
            if args.big_only:
                results["8000x8000 JPEG"].append(
                    run_child("image", tmp_path / "big", settings, full_32bit=args.full_32bit)
                )
                continue
            results["empty window"].append(run_child("empty", None, settings))
            results["open project"].append(run_child("project", tmp_path / "many", settings))
            folder = tmp_path / "many"
            for name in ("labeler.db", "labeler.db-wal", "labeler.db-shm"):
                (folder / name).unlink(missing_ok=True)
            results["open folder"].append(run_child("folder", folder, settings))
            results["8000x8000 JPEG"].append(run_child("image", tmp_path / "big", settings))

    def med(rows: list[dict[str, float]], key: str) -> float:
        return statistics.median(r[key] for r in rows)

    print(
        f"\nmedians of {args.repeats} runs (platform {os.environ.get('QT_QPA_PLATFORM', 'default')}, "
        f"{os.cpu_count()} CPUs, load average now {os.getloadavg()[0]:.1f})"
    )
    print("(wall-clock seconds; in brackets the CPU seconds the process used, which a loaded machine inflates less)")
    print(f"{'measure':<34}{'labeler':>22}   reference (labelme / X-AnyLabeling)")
    rows = results
    big = rows["8000x8000 JPEG"]
    if not args.big_only:
        print(
            f"{'empty window, start to first paint':<34}{med(rows['empty window'], 'paint'):>12.2f} s [{med(rows['empty window'], 'paint_cpu'):.2f}]"
            f"   {REFERENCE['empty window']}"
        )
        print(
            f"{f'open project of {args.images} images':<34}{med(rows['open project'], 'paint'):>12.2f} s [{med(rows['open project'], 'paint_cpu'):.2f}]"
        )
        print(
            f"{f'open folder of {args.images} images':<34}{med(rows['open folder'], 'paint'):>12.2f} s [{med(rows['open folder'], 'paint_cpu'):.2f}]"
            f"   {REFERENCE['open folder']}"
        )
    print(
        f"{'8000x8000 JPEG, first pixels':<34}{med(big, 'shown'):>12.2f} s [{med(big, 'shown_cpu'):.2f}]"
        f"   {REFERENCE['8000x8000 JPEG']}"
    )
    print(f"{'8000x8000 JPEG, first level':<34}{med(big, 'first_level'):>18.0f}   (1/N size per side)")
    print(f"{'8000x8000 JPEG, 1:1 zoom shown':<34}{med(big, 'full'):>20.2f} s   (zoom asked at first pixels)")
    print(f"{'8000x8000 JPEG, RSS at first px':<34}{med(big, 'rss_first'):>19.0f} MB")
    print(f"{'8000x8000 JPEG, peak RSS':<34}{med(big, 'rss'):>19.0f} MB")
    for label in ("1:1", "1:2"):
        print(
            f"{f'pan frame at {label} (median / p95)':<34}{med(big, f'pan {label}'):>12.1f} / "
            f"{med(big, f'pan95 {label}'):.1f} ms   (viewport {med(big, 'viewport_w'):.0f} x "
            f"{med(big, 'viewport_h'):.0f} px)"
        )
    if not args.big_only:
        print(f"{'empty window peak RSS':<34}{med(rows['empty window'], 'rss'):>19.0f} MB")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
