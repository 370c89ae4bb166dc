"""A project of a million images: ``labeler init``, the window's first paint, filters, "next".

Run:  QT_QPA_PLATFORM=offscreen .venv/bin/python benchmarks/bench_scale.py [--images 1000000] [--folder 20000] [--png-only]

The data is generated under /tmp and removed after: N hard links of a few tiny PNGs in folders
of 1,000 (a listing benchmark: no pixel is decoded but the first image's), of which 1% are
marked done and 10% carry an uncertainty (as after an auto-label run). Printed, with the
targets of issue 16:

- ``labeler init PROJECT --images DIR`` (a child process, wall seconds);
- the window's first paint with the list filled, from the process start, and its peak RSS
  (a fresh child, ``bench_gui.py --child project``);
- the image list's core (:class:`labeler.core.image_index.ImageIndex`): reading it, filtering by
  state and by name, "next not done", "next most uncertain" (medians of 5, milliseconds);
- a folder of ``--folder`` images opened in the window: from the in-app call (``open_path``) to
  the list filled and the first image shown;
- an 8000 x 8000 PNG: from ``open_path`` to its first pixels, and the peak RSS then, with pyvips
  (the optional ``big`` extra) and without it.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))

TARGETS = {"init": 30.0, "paint": 1.5, "rss": 400.0, "filter": 200.0, "next": 50.0, "folder": 0.15}


def make_links(folder: Path, count: int) -> None:
    """``count`` image files (hard links of tiny PNGs; a file takes at most 65,000 links)."""
    import cv2

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    source = ""
    current = ""
    for i in range(count):
        if i % 50_000 == 0:
            source = str(folder / f".source{i // 50_000}.png")
            cv2.imwrite(source, rng.integers(0, 255, (16, 16, 3), dtype=np.uint8))
        if i % 1000 == 0:
            current = str(folder / f"part{i // 1000:04d}")
            os.mkdir(current)
        os.link(source, f"{current}/img_{i:07d}.png")


def label_some(target: str) -> None:
    """1% done, 10% with an uncertainty (written straight into the database: setup, not measured)."""
    if target.startswith("postgresql://"):
        import psycopg

        conn: Any = psycopg.connect(target)
    else:
        conn = sqlite3.connect(Path(target) / "labeler.db")
    conn.execute("UPDATE images SET done = 1 WHERE id % 100 = 7")
    conn.execute("UPDATE images SET uncertainty = (id * 7919 % 1000) / 1000.0 WHERE id % 10 = 3")
    conn.commit()
    conn.close()


def median_ms(fn: object, repeats: int = 5) -> float:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()  # type: ignore[operator]
        times.append((time.perf_counter() - t0) * 1000.0)
    return statistics.median(times)


def core_figures(root: Path | str, image_root: Path | None = None) -> dict[str, float]:
    from labeler.core.image_index import ImageIndex
    from labeler.core.image_state import ImageState
    from labeler.core.store import Project
    from labeler.core.uncertainty import next_most_uncertain_image

    out: dict[str, float] = {}
    with Project.open(root, image_root=image_root) as project:
        t0 = time.perf_counter()
        index = ImageIndex.load(project)
        out["load_s"] = time.perf_counter() - t0
        out["filter_state_ms"] = median_ms(lambda: index.filter(states=frozenset({ImageState.DONE})))
        index.filter(text="x")  # the first name filter lower-cases the paths once
        out["filter_name_ms"] = median_ms(lambda: index.filter(text="img_00123"))
        out["filter_both_ms"] = median_ms(lambda: index.filter(states=frozenset({ImageState.UNLABELLED}), text="7"))
        middle = index.id_at(len(index) // 2)
        out["next_not_done_ms"] = median_ms(lambda: index.next_not_done(middle))
        current = project.next_uncertain_image(below=None)
        out["next_uncertain_ms"] = median_ms(lambda: next_most_uncertain_image(project, current=current))
        out["uncertain_count_ms"] = median_ms(project.uncertain_image_count)
        out["set_state_ms"] = median_ms(lambda: index.set_state(middle, ImageState.LABELLED))
    return out


def folder_in_app(folder: Path, settings: Path) -> float:
    """Seconds from ``open_path(folder)`` to the list filled and the first image shown (a child)."""
    code = (  # noqa: UP031 - a template of the child's code, filled with %r
        "import sys, time; sys.path.insert(0, %r)\n"
        "from labeler.gui.app import application\n"
        "app = application()\n"
        "from labeler.gui.main_window import MainWindow\n"
        "w = MainWindow(interactive=False); w.show(); app.processEvents()\n"
        "t = {}\n"
        "def shown(_i):\n"
        "    t['end'] = time.perf_counter(); print('IN_APP', t['end'] - t['start'], w.images.model.rowCount(), flush=True)\n"
        "    w.shutdown(); app.quit()\n"
        "w.canvas.imageShown.connect(shown)\n"
        "t['start'] = time.perf_counter(); w.open_path(%r)\n"
        "app.exec()\n"
    ) % (str(Path(__file__).parent), str(folder))
    return float(_child_figures(code, settings, "IN_APP", "folder")[0])


def png_in_app(project: Path, settings: Path, *, libvips: bool) -> tuple[float, float, float]:
    """``(seconds to the first pixels, seconds to the whole image, peak RSS MB)`` from
    ``open_path(project)``, for its image (a child; ``libvips`` False hides pyvips, as where the
    optional extra is not installed). With pyvips the first pixels are the first band of a PNG
    that streams in (``imageShown``); the whole image is there at ``imageComplete``."""
    code = (
        "import sys, time\n"
        + ("" if libvips else "sys.modules['pyvips'] = None\n")
        + "from labeler.gui.app import application\n"
        "app = application()\n"
        "from labeler.gui.main_window import MainWindow\n"
        "w = MainWindow(interactive=False); w.show(); app.processEvents()\n"
        "t = {}\n"
        "def shown(_i):\n"
        "    t['shown'] = time.perf_counter() - t['start']\n"
        "def whole(_i):\n"
        "    hwm = [int(l.split()[1]) / 1024 for l in open('/proc/self/status') if l.startswith('VmHWM')][0]\n"
        "    print('PNG', t['shown'], time.perf_counter() - t['start'], hwm, flush=True)\n"
        "    w.shutdown(); app.quit()\n"
        "w.canvas.imageShown.connect(shown)\n"
        "w.canvas.imageComplete.connect(whole)\n"
        "t['start'] = time.perf_counter(); w.open_path(%r)\n"
        "app.exec()\n"
    ) % str(project)
    figures = _child_figures(code, settings, "PNG", "PNG")
    return float(figures[0]), float(figures[1]), float(figures[2])


def png_figures(tmp: Path, repeats: int) -> None:
    """The 8000 x 8000 PNG: first pixels and peak RSS, with pyvips and without (medians)."""
    import bench_gui

    from labeler.core.store import Project

    folder = tmp / "png"
    folder.mkdir(exist_ok=True)
    subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys, cv2; sys.path.insert(0, %r); import bench_gui, pathlib; "  # noqa: UP031 - the child's code, filled with %r
            "p = pathlib.Path(%r); bench_gui.make_big_jpeg(p.with_suffix('.jpg')); "
            "cv2.imwrite(str(p), cv2.imread(str(p.with_suffix('.jpg')))); p.with_suffix('.jpg').unlink()"
            % (str(Path(__file__).parent), str(folder / "big.png")),
        ],
        check=True,
    )
    del bench_gui
    with Project.create(folder, exist_ok=True) as project:
        project.add_folder(folder)
    try:
        import pyvips  # noqa: F401

        kinds = [True, False]
    except (ImportError, OSError):
        kinds = [False]
    print(
        f"\n8000 x 8000 PNG ({(folder / 'big.png').stat().st_size / 1e6:.0f} MB), in-app open to first pixels "
        f"and to the whole image (target < 0.8 s and < 350 MB; issue 16's run: 1.20 s, 739 MB)"
    )
    print(f"  {'':<16}{'first':>8}{'whole':>8}")
    for libvips in kinds:
        runs = [png_in_app(folder, tmp / "settings.ini", libvips=libvips) for _ in range(repeats)]
        print(
            f"  {'with pyvips' if libvips else 'without pyvips':<16}{statistics.median(r[0] for r in runs):>7.2f}s"
            f"{statistics.median(r[1] for r in runs):>7.2f}s{statistics.median(r[2] for r in runs):>8.0f} MB peak RSS"
        )
    from labeler.core.images import read_image

    decode = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        read_image(folder / "big.png", reduce=4)
        decode.append(time.perf_counter() - t0)
    print(
        f"  {'the floor':<16}{'':>8}{statistics.median(decode):>7.2f}s          the decode alone at 1/4 "
        f"({'libvips: libspng and zlib-ng' if kinds[0] else 'OpenCV'}), in this process: one zlib stream, one core"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=1_000_000)
    parser.add_argument("--folder", type=int, default=20_000, help="images in the folder opened in the window")
    parser.add_argument("--repeats", type=int, default=3, help="window and folder runs (medians)")
    parser.add_argument("--png-only", action="store_true", help="only the 8000 x 8000 PNG figures")
    parser.add_argument("--keep", metavar="DIR", help="generate (and keep) the data here instead of a temporary folder")
    parser.add_argument(
        "--postgresql",
        nargs="?",
        const="auto",
        metavar="SERVER_URL",
        help="init and first paint on SQLite and on PostgreSQL (a new database on this server, whose user may "
        "create databases; without a URL a throwaway server), side by side; nothing else is measured",
    )
    args = parser.parse_args()

    tmp = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="bench-scale-"))
    tmp.mkdir(parents=True, exist_ok=True)
    if args.png_only:
        try:
            png_figures(tmp, args.repeats)
        finally:
            if not args.keep:
                shutil.rmtree(tmp, ignore_errors=True)
        return 0
    try:
        t0 = time.time()
        images = tmp / "images"
        if not images.exists():
            make_links(images, args.images)
        print(f"generated {args.images} image files in {time.time() - t0:.1f} s")
        root = tmp / "project"
        shutil.rmtree(root, ignore_errors=True)
        settings = tmp / "settings.ini"
        init_s, core, window = project_figures(str(root), images, settings, args.repeats)
        if args.postgresql is not None:
            from bench_teams import databases

            with databases(None if args.postgresql == "auto" else args.postgresql) as new_database:
                url = new_database(f"bench_scale_{os.getpid()}")
                pg_init_s, pg_core, pg_window = project_figures(url, images, settings, args.repeats)
            print_backends(
                args.images, {"SQLite": (init_s, core, window), "PostgreSQL": (pg_init_s, pg_core, pg_window)}
            )
            return 0
        small = tmp / "folder"
        shutil.rmtree(small, ignore_errors=True)
        make_links(small, args.folder)
        folder_s = []
        for _ in range(args.repeats):
            for name in ("labeler.db", "labeler.db-wal", "labeler.db-shm"):
                (small / name).unlink(missing_ok=True)
            shutil.rmtree(small / ".labeler", ignore_errors=True)
            folder_s.append(folder_in_app(small, settings))
    finally:
        if not args.keep:
            shutil.rmtree(tmp, ignore_errors=True)

    paint = statistics.median(r["paint"] for r in window)
    rss = statistics.median(r["rss"] for r in window)
    n = args.images
    print(
        f"\n{n} images; {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f} "
        f"(a shared machine inflates wall times); medians"
    )
    rows = [
        ("labeler init", f"{init_s:.1f} s", f"< {TARGETS['init']:.0f} s"),
        ("window first paint (from start)", f"{paint:.2f} s", f"< {TARGETS['paint']} s"),
        ("window peak RSS", f"{rss:.0f} MB", f"< {TARGETS['rss']:.0f} MB"),
        ("image list read (core)", f"{core['load_s']:.2f} s", "(inside the first paint)"),
        ("filter by state", f"{core['filter_state_ms']:.1f} ms", f"< {TARGETS['filter']:.0f} ms"),
        ("filter by name", f"{core['filter_name_ms']:.1f} ms", f"< {TARGETS['filter']:.0f} ms"),
        ("filter by state and name", f"{core['filter_both_ms']:.1f} ms", f"< {TARGETS['filter']:.0f} ms"),
        ("next not done", f"{core['next_not_done_ms']:.2f} ms", f"< {TARGETS['next']:.0f} ms"),
        ("next most uncertain", f"{core['next_uncertain_ms']:.2f} ms", f"< {TARGETS['next']:.0f} ms"),
        ("count of the uncertain walk", f"{core['uncertain_count_ms']:.1f} ms", ""),
        ("one state change (counts follow)", f"{core['set_state_ms']:.3f} ms", "incremental"),
        (
            f"folder of {args.folder} opened (in-app)",
            f"{statistics.median(folder_s):.3f} s",
            f"< {TARGETS['folder']} s",
        ),
    ]
    print(f"{'measure':<38}{'labeler':>14}   target")
    for name, value, target in rows:
        print(f"{name:<38}{value:>14}   {target}")
    tmp = Path(tempfile.mkdtemp(prefix="bench-scale-png-"))
    try:
        png_figures(tmp, args.repeats)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


def project_figures(
    target: str, images: Path, settings: Path, repeats: int
) -> tuple[float, dict[str, float], list[dict[str, float]]]:
    """``labeler init TARGET --images IMAGES`` (seconds), then the core figures and ``repeats``
    first paints of the window on it. ``target`` is a folder or a ``postgresql://`` database."""
    t0 = time.time()
    subprocess.run(
        [sys.executable, "-m", "labeler", "init", target, "--images", str(images)],
        check=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    init_s = time.time() - t0
    label_some(target)
    image_root = images if target.startswith("postgresql://") else None
    core = core_figures(target, image_root)
    import bench_gui

    window = [bench_gui.run_child("project", target, settings, image_root=image_root) for _ in range(repeats)]
    return init_s, core, window


def print_backends(images: int, figures: dict[str, tuple[float, dict[str, float], list[dict[str, float]]]]) -> None:
    """``labeler init`` and the window's first paint (medians) on each backend, side by side."""
    print(f"\n{images} images; {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}; medians")
    print(f"{'measure':<38}" + "".join(f"{name:>14}" for name in figures))
    rows = [
        ("labeler init", lambda f: f"{f[0]:.1f} s"),
        ("window first paint (from start)", lambda f: f"{statistics.median(r['paint'] for r in f[2]):.2f} s"),
        ("window peak RSS", lambda f: f"{statistics.median(r['rss'] for r in f[2]):.0f} MB"),
        ("image list read (core)", lambda f: f"{f[1]['load_s']:.2f} s"),
        ("next most uncertain", lambda f: f"{f[1]['next_uncertain_ms']:.2f} ms"),
    ]
    for name, cell in rows:
        print(f"{name:<38}" + "".join(f"{cell(f):>14}" for f in figures.values()))


def _child_figures(code: str, settings: Path, tag: str, what: str) -> list[str]:
    """Run ``code`` in a fresh Python (its own settings file, offscreen unless a display is
    asked for) and return the words after ``tag`` on the line it prints starting with it."""
    env = dict(
        os.environ, LABELER_SETTINGS=str(settings), QT_QPA_PLATFORM=os.environ.get("QT_QPA_PLATFORM", "offscreen")
    )
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=600)
    line = next((ln for ln in out.stdout.splitlines() if ln.startswith(tag)), None)
    if line is None:
        raise RuntimeError(f"{what} child failed:\n{out.stdout}\n{out.stderr[-2000:]}")
    return line.split()[1:]


if __name__ == "__main__":
    raise SystemExit(main())
