"""Small generated data for tests, demos and smoke runs: coloured shapes on noisy backgrounds.

Every image holds one filled rectangle or disc per object in a colour that depends on its class,
so a tiny network can learn it in seconds. Labels are exact: masks (COCO RLE) and boxes
``(x, y, w, h)`` in pixels, top-left origin.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import cv2
import numpy as np

from labeler.core.annotation import Annotation, Category, Kind, State
from labeler.core.geometry import encode_mask
from labeler.learning.api import LabelledImage

if TYPE_CHECKING:
    from labeler.core.store import Project

CLASS_COLORS: tuple[tuple[int, int, int], ...] = (
    (230, 40, 40),
    (40, 200, 60),
    (50, 80, 240),
    (240, 220, 40),
    (200, 60, 220),
    (40, 220, 220),
)
"""RGB fill colour of the objects of class 0, 1, ... (cycled)."""


def draw_scene(
    rng: np.random.Generator, *, height: int, width: int, num_classes: int, objects: int = 1
) -> tuple[np.ndarray, list[tuple[int, np.ndarray]]]:
    """One ``(h, w, 3)`` uint8 RGB image and its objects as ``(class index, (h, w) bool mask)``.

    Objects are axis-aligned rectangles or discs covering roughly 10-40 % of the side each.
    """
    image: np.ndarray = cv2.GaussianBlur(rng.integers(60, 120, size=(height, width, 3), dtype=np.uint8), (3, 3), 0)
    found: list[tuple[int, np.ndarray]] = []
    for _ in range(objects):
        cls = int(rng.integers(num_classes))
        color = np.array(CLASS_COLORS[cls % len(CLASS_COLORS)], dtype=np.int16)
        mask = np.zeros((height, width), np.uint8)
        bw = int(rng.integers(max(2, width // 4), max(3, width // 2)))
        bh = int(rng.integers(max(2, height // 4), max(3, height // 2)))
        x = int(rng.integers(0, max(1, width - bw)))
        y = int(rng.integers(0, max(1, height - bh)))
        if rng.random() < 0.5:
            cv2.rectangle(mask, (x, y), (x + bw - 1, y + bh - 1), 1, thickness=-1)
        else:
            cv2.ellipse(mask, (x + bw // 2, y + bh // 2), (max(1, bw // 2), max(1, bh // 2)), 0, 0, 360, 1, -1)
        m = mask.astype(bool)
        noise = rng.integers(-20, 21, size=(int(m.sum()), 3))
        image[m] = np.clip(color + noise, 0, 255).astype(np.uint8)
        for _, other in found:
            other &= ~m
        found.append((cls, m))
    return image, [(c, m) for c, m in found if m.any()]


def _annotations(
    image_id: int, objects: Sequence[tuple[int, np.ndarray]], classes: Sequence[Category], kind: Kind
) -> tuple[Annotation, ...]:
    out = []
    for cls, mask in objects:
        category = classes[cls]
        if kind is Kind.BOX:
            ys, xs = np.nonzero(mask)
            box = (float(xs.min()), float(ys.min()), float(xs.max() - xs.min() + 1), float(ys.max() - ys.min() + 1))
            out.append(Annotation(image_id=image_id, category_id=category.id, kind=Kind.BOX, box_xywh=box))
        else:
            out.append(Annotation(image_id=image_id, category_id=category.id, kind=Kind.MASK, rle=encode_mask(mask)))
    return tuple(out)


def make_samples(
    count: int,
    *,
    classes: Sequence[Category] | None = None,
    height: int = 32,
    width: int = 32,
    kind: Kind = Kind.MASK,
    objects: int = 1,
    seed: int = 0,
) -> list[LabelledImage]:
    """``count`` labelled images (ids 1..count) with ``objects`` labelled objects each."""
    classes = (
        tuple(classes) if classes is not None else (Category(1, "red", (255, 0, 0)), Category(2, "green", (0, 255, 0)))
    )
    rng = np.random.default_rng(seed)
    out = []
    for i in range(count):
        image, objs = draw_scene(rng, height=height, width=width, num_classes=len(classes), objects=objects)
        out.append(
            LabelledImage(
                image_id=i + 1, image=image, annotations=_annotations(i + 1, objs, classes, kind), classes=classes
            )
        )
    return out


def make_project(
    root: str | os.PathLike[str],
    *,
    images: int = 8,
    done: int = 6,
    class_names: Sequence[str] = ("red", "green"),
    height: int = 32,
    width: int = 32,
    kind: Kind = Kind.MASK,
    objects: int = 1,
    seed: int = 0,
    database: str | None = None,
) -> Project:  # imported lazily
    """A project folder at ``root`` with ``images`` PNG files beside its database under ``images/``;
    the first ``done`` are marked done and carry accepted labels of ``kind``. Returns it open.

    With ``database`` (a PostgreSQL URL) the project is made in that database instead, ``root``
    its image root (the images under ``root/images/``, model versions in ``root/models/``)."""
    from labeler.core.store import Project

    root = Path(root)
    (root / "images").mkdir(parents=True, exist_ok=True)
    if database is not None:
        project = Project.create(database, exist_ok=True, image_root=root)
    else:
        project = Project.create(root, exist_ok=True)
    classes = [project.ensure_category(name) for name in class_names]
    rng = np.random.default_rng(seed)
    for i in range(images):
        image, objs = draw_scene(rng, height=height, width=width, num_classes=len(classes), objects=objects)
        path = root / "images" / f"img{i:04d}.png"
        cv2.imwrite(str(path), cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
        (image_id,) = project.add_images([path])
        project.set_image_size(image_id, width, height)
        if i < done:
            with project.transaction():
                project.add_annotations(
                    [a for a in _annotations(image_id, objs, classes, kind) if a.state is State.ACCEPTED]
                )
                project.set_done(image_id, True)
    return project
