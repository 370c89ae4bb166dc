"""A COCO import takes its images a batch at a time (added in one write, masks stored as columns):
the project ends up holding exactly the rows that storing each image and label one at a time,
through the store's per-label API, gives it."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from test_format_common import make_image

import labeler.formats.coco as coco
from labeler.core.annotation import Annotation, Kind
from labeler.core.geometry import encode_mask, rle_counts
from labeler.core.images import read_image_size
from labeler.core.store import Project
from labeler.formats import import_annotations

IMAGE_COLUMNS = "id, path, width, height, done"
LABEL_COLUMNS = "id, image_id, category_id, kind, geometry, state, model_version, score, iscrowd, attributes, revision"


def table(project: Project, columns: str, name: str) -> list[tuple[Any, ...]]:
    return [tuple(r) for r in project._query(f"SELECT {columns} FROM {name} ORDER BY id")]


def labels_of(k: int, width: int, height: int, rng: np.random.Generator) -> list[dict[str, Any]]:
    """The labels of the ``k``-th image, every kind COCO has, in an order that mixes them."""
    mask = rng.random((height, width)) < rng.random()
    labels: list[dict[str, Any]] = [
        {"segmentation": encode_mask(mask), "iscrowd": k % 3 == 0},
        {"segmentation": [[1.0, 1.0, 8.5, 2.0, 4.0, 9.0]]},
        {"segmentation": encode_mask(~mask)},
        {"bbox": [2, 3, 5 + k, 4]},
    ]
    if k % 2:  # uncompressed counts, stored compressed
        labels.append(
            {"segmentation": {"size": [height, width], "counts": rle_counts(encode_mask(mask[::-1])).tolist()}}
        )
    return labels


def reference(project: Project, doc: dict[str, Any], folder: Path) -> None:
    """What the import stores, made one image and one label at a time through the store's API."""
    by_name = {c.name: c.id for c in project.categories()}
    category = {c["id"]: by_name.get(c["name"]) or project.add_category(c["name"]).id for c in doc["categories"]}
    image_of: dict[Any, int] = {}
    for im in doc["images"]:
        path = folder / im["file_name"]
        found = project.find_image(path)
        if found is None:
            image_of[im["id"]] = project.add_images([path])[0]
            project.set_image_size(image_of[im["id"]], *read_image_size(path))
        else:
            image_of[im["id"]] = found.id
            project.image_size(found.id)  # stored by the import when it was not
    anns = []
    for im in doc["images"]:
        for a in doc["annotations"]:
            if a["image_id"] != im["id"]:
                continue
            common: dict[str, Any] = {
                "image_id": image_of[im["id"]],
                "category_id": category[a["category_id"]],
                "iscrowd": bool(a.get("iscrowd", 0)),
            }
            seg = a.get("segmentation")
            if isinstance(seg, dict):
                anns.append(Annotation(kind=Kind.MASK, rle=seg, **common))
            elif seg:
                pts = np.asarray(seg[0], dtype=np.float64).reshape(-1, 2)
                anns.append(Annotation(kind=Kind.POLYGON, polygons=(pts,), **common))
            else:
                anns.append(Annotation(kind=Kind.BOX, box_xywh=tuple(a["bbox"]), **common))
    for ann in anns:
        project.add_annotation(ann, log=False)
    project.set_done_many(sorted(set(image_of.values())), True)


@pytest.mark.parametrize("batch", [3, coco.MASKS_PER_BATCH])
def test_batched_import_stores_what_storing_one_by_one_stores(
    make_project: Callable[[Path], Project], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, batch: int
) -> None:
    monkeypatch.setattr(coco, "MASKS_PER_BATCH", batch)  # 3: a batch of one or two images, many batches
    rng = np.random.default_rng(7)
    folder = tmp_path / "data"
    sizes = [(20 + k, 12 + k % 4) for k in range(9)]
    for k, (w, h) in enumerate(sizes):
        make_image(folder / "imgs" / f"{k % 3}" / f"im{k}.png", w, h)
    doc: dict[str, Any] = {
        "images": [{"id": 100 + k, "file_name": f"imgs/{k % 3}/im{k}.png"} for k in range(9)],
        "categories": [{"id": 5, "name": "cat"}, {"id": 2, "name": "dog"}],
        "annotations": [],
    }
    doc["images"].append({"id": "again", "file_name": "imgs/1/im4.png"})  # the same file twice
    for k, (w, h) in enumerate(sizes):
        for label in labels_of(k, w, h, rng):
            doc["annotations"].append(
                {"id": len(doc["annotations"]), "image_id": 100 + k, "category_id": 5 if k % 2 == 0 else 2, **label}
            )
    doc["annotations"].append({"id": 999, "image_id": "again", "category_id": 2, "bbox": [1, 1, 3, 3]})
    (folder / "coco.json").write_text(json.dumps(doc))

    projects = []
    for name in ("batched", "one_by_one"):
        project = make_project(tmp_path / name)
        project.add_category("dog")
        _, b = project.add_images([folder / "imgs/2/im5.png", folder / "imgs/1/im1.png"])  # in the project
        project.set_image_size(b, *sizes[1])  # ... one with its size stored, one without
        projects.append(project)
    report = import_annotations(projects[0], folder / "coco.json", format="coco")
    with projects[1].transaction():
        reference(projects[1], doc, folder)

    assert report.images == 9 and report.images_added == 7 and report.images_matched == 2
    assert report.annotations == len(doc["annotations"]) and not report.skipped
    batched, one_by_one = projects
    assert table(batched, IMAGE_COLUMNS, "images") == table(one_by_one, IMAGE_COLUMNS, "images")
    assert table(batched, "id, name, color", "categories") == table(one_by_one, "id, name, color", "categories")
    assert table(batched, LABEL_COLUMNS, "annotations") == table(one_by_one, LABEL_COLUMNS, "annotations")
    kinds = [r[3] for r in table(batched, LABEL_COLUMNS, "annotations")]
    assert kinds[:4] == ["mask", "polygon", "mask", "box"]  # ids in the file's order, whatever the kind
