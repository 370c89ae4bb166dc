"""Build the demo project: generated scenes written as PNGs, the first ones labelled and done.

The project is built in a hidden folder beside its destination and moved into place at the end,
so a failure never leaves a half-made project behind. Stored paths are relative, so the move
keeps it working.

What is stored: the three categories of :data:`labeler.demo.scenes.SHAPES`, every image, and for
the first ``labelled`` images the main object's exact mask as an accepted human label, with the
image marked done. The localizer trains on those masks as boxes (its ``shapes_as_boxes``
setting; a mask and a box of the same object on one image would be two labels to it, and the
segmenter would paint the box's corners as the object). The ground truth of every image goes to
``demo.json`` (boxes, classes, masks as compressed RLE) so the proposals can be scored later.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from PIL import Image

from labeler.core.annotation import Annotation, Kind, State
from labeler.core.geometry import encode_mask
from labeler.core.store import DB_NAME, Project, ProjectError
from labeler.demo.scenes import DEFAULT_HEIGHT, DEFAULT_WIDTH, SHAPE_COLORS, SHAPES, Scene, make_scenes

GROUND_TRUTH = "demo.json"
IMAGES_DIR = "images"


@dataclass(frozen=True)
class DemoProject:
    """Where the demo project is and what it holds. ``labelled`` / ``unlabelled`` are image ids;
    ``truth`` maps each image id to its scene (the exact labels)."""

    root: Path
    labelled: tuple[int, ...]
    unlabelled: tuple[int, ...]
    truth: dict[int, Scene]


def _prepare_destination(out: Path | None) -> Path:
    """The folder the project will occupy: ``out`` (missing or empty) or a fresh temporary one."""
    if out is None:
        return Path(tempfile.mkdtemp(prefix="labeler-demo-"))
    out = Path(out)
    if out.exists():
        if not out.is_dir():
            raise ProjectError(f"{out} is a file; give --out a new or empty folder")
        if (out / DB_NAME).exists():
            raise ProjectError(f"{out} already holds a project; give --out a new or empty folder")
        if any(out.iterdir()):
            raise ProjectError(f"{out} is not empty; give --out a new or empty folder")
    return out


def build_demo_project(
    out: str | os.PathLike[str] | None = None,
    *,
    count: int = 60,
    labelled_fraction: float = 0.6,
    seed: int = 0,
    width: int = DEFAULT_WIDTH,
    height: int = DEFAULT_HEIGHT,
) -> DemoProject:
    """Generate ``count`` scenes and make a project of them in ``out`` (new or empty folder; a
    fresh temporary folder if ``None``). The first ``round(count * labelled_fraction)`` images
    (at least one, and at least one left unlabelled when ``count > 1``) are labelled and done."""
    if not 0.0 < labelled_fraction <= 1.0:
        raise ValueError("labelled_fraction must lie in (0, 1]")
    dest = _prepare_destination(Path(out) if out is not None else None)
    scenes = make_scenes(count, seed=seed, width=width, height=height)
    n_labelled = max(1, round(count * labelled_fraction))
    if count > 1:
        n_labelled = min(n_labelled, count - 1)

    dest.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{dest.name}.building-", dir=dest.parent))
    try:
        images = staging / IMAGES_DIR
        images.mkdir()
        paths = []
        for i, scene in enumerate(scenes):
            path = images / f"scene_{i:03d}.png"
            Image.fromarray(scene.image).save(path, format="PNG")
            paths.append(path)
        with Project.create(staging, exist_ok=True) as project, project.transaction():
            categories = [project.add_category(name, color=SHAPE_COLORS[name]) for name in SHAPES]
            ids = project.add_images(paths)
            for image_id in ids:
                project.set_image_size(image_id, width, height)
            for image_id, scene in zip(ids[:n_labelled], scenes[:n_labelled], strict=True):
                project.add_annotation(
                    Annotation(
                        image_id=image_id,
                        category_id=categories[scene.category_index].id,
                        kind=Kind.MASK,
                        rle=encode_mask(scene.mask),
                        state=State.ACCEPTED,
                    )
                )
                project.set_done(image_id)
        truth = {
            "seed": seed,
            "count": count,
            "width": width,
            "height": height,
            "labelled": n_labelled,
            "categories": list(SHAPES),
            "images": [
                {
                    "id": image_id,
                    "file": f"{IMAGES_DIR}/{p.name}",
                    "category": scene.shape,
                    "box_xywh": list(scene.box_xywh),
                    "rle": encode_mask(scene.mask),
                    "labelled": k < n_labelled,
                    "distractors": scene.distractors,
                }
                for k, (image_id, p, scene) in enumerate(zip(ids, paths, scenes, strict=True))
            ],
        }
        (staging / GROUND_TRUTH).write_text(json.dumps(truth, indent=1), encoding="utf-8")
        if dest.exists():
            dest.rmdir()  # checked empty above
        os.replace(staging, dest)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return DemoProject(
        root=dest.resolve(),
        labelled=tuple(ids[:n_labelled]),
        unlabelled=tuple(ids[n_labelled:]),
        truth=dict(zip(ids, scenes, strict=True)),
    )
