"""Auto-labelling a gigapixel image by tiles: tiles/s, seconds and peak RSS, detector and segmenter.

Run:  .venv/bin/python benchmarks/bench_tiled_autolabel.py [--side 40000] [--seg-side 8000] [--tile 1024] [--seg-tile 512]

Needs pyvips (the optional ``big`` extra) and the detector and segmenter plugins. The image is the
picture of ``bench_gigapixel.py`` (noise over gradients), written under /tmp as a tiled BigTIFF
(256 x 256 JPEG tiles, Q 85) and removed after; nothing is committed.

Each run is a fresh child process (so its ``VmHWM`` is its own; target < 1 GB) that makes a
project holding the one image, registers a model version of the plugin's default network with
**untrained weights** (seeded; the figures are speed and memory, not quality: the quality
targets are the plugins' own benchmarks on ordinary images, which this path does not change),
and runs ``auto_label`` on it through the tiled path of :mod:`labeler.learning.tiled`, tiles of
``--tile`` full-resolution pixels (the default when a project has no done image), a quarter of a
side of overlap. The untrained detector starts at 1 % "object" per cell (the network's own
initial bias), so with the default ``min_score`` it proposes little, as a trained one would on
empty background: the figures are of reading, the network and stitching.

- detector: ``--side`` x ``--side`` (40,000: 1.6 GP), boxes;
- segmenter: ``--seg-side`` x ``--seg-side``: masks are refused above the pixel limit for a mask
  (``LABELER_MAX_PIXELS``, 400 MP: the store would refuse them), so the 40,000 image gets that
  message (checked here too) and the speed figure is on a smaller one.

Figures, not assertions: rerun before relying on one.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))


def _hwm_mb() -> float:
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) / 1024 for line in status if line.startswith("VmHWM"))


def child(image: Path, plugin_name: str, tile: int) -> None:
    """In a fresh process: auto-label ``image`` with an untrained ``plugin_name``; one JSON line."""
    import torch

    from labeler.core.store import ModelVersion, Project
    from labeler.learning import tiled
    from labeler.learning.api import default_settings
    from labeler.learning.autolabel import auto_label
    from labeler.learning.checkpoints import LoadedModel
    from labeler.learning.plugins import get_plugin

    tiled.DEFAULT_TILE_SIDE = tile
    torch.manual_seed(0)
    root = Path(tempfile.mkdtemp(prefix="labeler-tiled-"))
    project = Project.create(root / "proj")
    category = project.add_category("object")
    project.add_images([image])
    plugin = get_plugin(plugin_name)
    settings = default_settings(plugin)
    model = plugin.build_model(num_classes=1, settings=settings).eval()
    version = project.add_model_version(
        ModelVersion(plugin=plugin_name, settings=settings, categories=(category.id,), checkpoint="untrained"),
        activate=True,
    )
    loaded = LoadedModel(plugin, version, model, (category,), settings, "cpu")
    image_id = project.images()[0].id
    tiles: list[tuple[float, int, int]] = []
    started = time.perf_counter()
    result = auto_label(
        project,
        loaded,
        [image_id],
        progress=lambda s: tiles.append((time.perf_counter(), *s.tiles)) if s.tiles else None,
    )
    seconds = time.perf_counter() - started
    total = tiles[-1][2] if tiles else 0
    print(
        json.dumps(
            {
                "plugin": plugin_name,
                "tiles": total,
                "seconds": round(seconds, 1),
                "tiles_per_second": round(total / seconds, 2) if total else None,
                "proposals": result.proposals,
                "failed": result.failed.get(image_id),
                "peak_rss_mb": round(_hwm_mb()),
                "threads": torch.get_num_threads(),
            }
        )
    )
    project.close()
    shutil.rmtree(root, ignore_errors=True)


def run_child(image: Path, plugin: str, tile: int) -> dict[str, object]:
    env = dict(os.environ, LABELER_MAX_PIXELS=os.environ.get("BENCH_MAX_PIXELS", str(2_000_000_000)))
    if plugin == "segmenter":
        env["LABELER_MAX_PIXELS"] = os.environ.get("LABELER_MAX_PIXELS", str(400_000_000))
    out = subprocess.run(
        [sys.executable, __file__, "--child", str(image), "--plugin", plugin, "--tile", str(tile)],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    if out.returncode != 0:
        raise SystemExit(f"child failed:\n{out.stderr[-4000:]}")
    return dict(json.loads(out.stdout.strip().splitlines()[-1]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--side", type=int, default=40_000)
    parser.add_argument("--seg-side", type=int, default=8_000)
    parser.add_argument("--tile", type=int, default=1024, help="detector tile side")
    parser.add_argument("--seg-tile", type=int, default=512, help="segmenter tile side")
    parser.add_argument("--plugins", default="detector,segmenter")
    parser.add_argument("--child", type=Path)
    parser.add_argument("--plugin")
    args = parser.parse_args()
    if args.child is not None:
        child(args.child, args.plugin, args.tile)
        return
    from bench_gigapixel import make_image

    folder = Path(tempfile.mkdtemp(prefix="labeler-bench-tiled-"))
    try:
        plugins = args.plugins.split(",")
        big = folder / f"big-{args.side}.tif"
        print(f"writing a {args.side:,} x {args.side:,} tiled TIFF ...", flush=True)
        print(f"  {make_image(big, args.side, 'tiff'):.0f} s, {big.stat().st_size / 1e6:.0f} MB", flush=True)
        if "detector" in plugins:
            print(json.dumps({"side": args.side, **run_child(big, "detector", args.tile)}), flush=True)
        if "segmenter" in plugins:
            if args.side * args.side > 400_000_000:  # the message instead of masks
                refused = run_child(big, "segmenter", args.seg_tile)
                print(json.dumps({"side": args.side, **refused}), flush=True)
            small = folder / f"seg-{args.seg_side}.tif"
            make_image(small, args.seg_side, "tiff")
            print(json.dumps({"side": args.seg_side, **run_child(small, "segmenter", args.seg_tile)}), flush=True)
    finally:
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
