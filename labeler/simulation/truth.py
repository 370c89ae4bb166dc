"""The ground truth of a labelled folder, read through the project's own importers.

The labels are imported into a throw-away project (exactly as ``labeler import`` reads them, so
any folder laid out like the sets in ``../shared/data`` works), then turned into one
:class:`~labeler.simulation.annotator.ImageTruth` per image: boxes for a box plugin (a mask or
polygon label counts by its box), a label map of category ids for a segmenter.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from labeler.core.annotation import State
from labeler.core.geometry import annotation_box, annotation_mask, decode_rle
from labeler.core.images import read_image_size
from labeler.core.store import Project
from labeler.simulation.annotator import IGNORED, UNCOVERED, ImageTruth, TrueBox


@dataclass(frozen=True)
class LabelSource:
    """One folder of images with its labels, as ``labeler import`` takes them."""

    images: Path
    labels: Path
    format: str
    options: Mapping[str, Any] | None = None


@dataclass(frozen=True)
class GroundTruth:
    """Every labelled image (absolute paths, in the project's order), its truth (by the category
    ids of :attr:`categories`), and the categories as ``(id, name)``."""

    paths: tuple[Path, ...]
    truth: dict[Path, ImageTruth]
    categories: tuple[tuple[int, str], ...]

    def renumbered(self, ids: Mapping[int, int]) -> GroundTruth:
        """The same truth with category ids mapped through ``ids`` (to another project's)."""
        table = {int(k): int(v) for k, v in ids.items()}
        out: dict[Path, ImageTruth] = {}
        for path, t in self.truth.items():
            if t.label_map is not None:
                label_map = t.label_map.copy()
                for old, new in table.items():
                    label_map[t.label_map == old] = new
                out[path] = replace(t, label_map=label_map)
            else:
                out[path] = replace(t, boxes=tuple(replace(b, category_id=table[b.category_id]) for b in t.boxes))
        return GroundTruth(self.paths, out, tuple((table[i], n) for i, n in self.categories))


def read_ground_truth(root: str | os.PathLike[str], sources: Sequence[LabelSource], *, masks: bool) -> GroundTruth:
    """Import ``sources`` into a new project at ``root`` (a fresh folder) and read their truth.

    ``masks``: label maps (for a segmenter) rather than boxes. The images are those the labels
    name (as the importers add them), so an image whose label file holds no object is in, with
    nothing to draw, and an image without a label file is not ground truth and is left out."""
    from labeler.formats import import_annotations

    with Project.create(root) as project:
        for source in sources:
            import_annotations(
                project,
                source.labels,
                format=source.format,
                images_dir=source.images,
                mark_done=False,
                add_images=True,
                **dict(source.options or {}),
            )
        categories = tuple((c.id, c.name) for c in project.categories())
        paths: list[Path] = []
        truth: dict[Path, ImageTruth] = {}
        for record in project.images():
            anns = [a for a in project.annotations(record.id) if a.state is State.ACCEPTED]
            path = (project.root / record.path).resolve()
            if record.width and record.height:
                width, height = record.width, record.height
            else:
                width, height = read_image_size(path)
            if masks:
                label_map = np.full((height, width), UNCOVERED, dtype=np.int32)
                for ann in anns:
                    label_map[annotation_mask(ann, height, width)] = ann.category_id
                ignore = project.ignore_mask(record.id)
                if ignore is not None:
                    label_map[decode_rle(ignore)] = IGNORED
                truth[path] = ImageTruth(width=width, height=height, label_map=label_map, ignore_rle=ignore)
            else:
                boxes = tuple(TrueBox(ann.category_id, annotation_box(ann)) for ann in anns)
                truth[path] = ImageTruth(width=width, height=height, boxes=boxes)
            paths.append(path)
    return GroundTruth(paths=tuple(paths), truth=truth, categories=categories)
