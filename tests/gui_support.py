"""Helpers shared by the GUI tests (not a test module): tiny generated projects and the window."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import cv2
import numpy as np

if TYPE_CHECKING:
    from backends import Backend

COLORS = ((220, 40, 40), (40, 200, 60), (40, 80, 220))


def write_images(folder: Path, count: int, *, size: int = 64, seed: int = 0) -> list[Path]:
    """``count`` PNGs of ``size`` x ``size`` pixels: grey noise with one coloured square each."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    paths = []
    for i in range(count):
        image = rng.integers(90, 140, (size, size, 3), dtype=np.uint8)
        s = size // 3
        x, y = int(rng.integers(0, size - s)), int(rng.integers(0, size - s))
        image[y : y + s, x : x + s] = COLORS[i % len(COLORS)]
        path = folder / f"img_{i:03d}.png"
        cv2.imwrite(str(path), cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
        paths.append(path)
    return paths


def make_project(backend: Backend, root: Path, count: int = 6, *, classes: tuple[str, ...] = ("cat", "dog")) -> Path:
    """A project on ``backend`` for folder ``root``, which holds ``count`` generated images; with the
    given classes; returns ``root`` (open it again with ``backend.open`` / ``backend.open_in``)."""
    write_images(root, count)
    with backend.create(root) as project:
        project.add_folder(root)
        for name in classes:
            project.add_category(name)
    return root
