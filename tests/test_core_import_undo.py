"""Undoing an import in one step removes exactly what it added, and nothing the user did."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from labeler.core.annotation import Annotation, Kind
from labeler.core.import_undo import record_import, undo_import
from labeler.core.store import Project
from labeler.formats import import_annotations
from labeler.formats.errors import FormatError


def _image(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((40, 60, 3), 90, np.uint8)).save(path)
    return path


def test_undo_import_removes_what_it_added_and_keeps_the_users_labels(tmp_path: Path) -> None:
    images = tmp_path / "images"
    own = _image(images / "own.png")
    _image(images / "new.png")
    project = Project.create(tmp_path / "p")
    project.add_images([own])
    cell = project.add_category("cell")
    mine = project.add_annotation(Annotation(image_id=1, category_id=cell.id, kind=Kind.BOX, box_xywh=(1, 1, 4, 4)))
    project.set_ignore_mask(1, None)
    coco = {
        "images": [
            {"id": 1, "file_name": "own.png", "width": 60, "height": 40},
            {"id": 2, "file_name": "new.png", "width": 60, "height": 40},
        ],
        "categories": [{"id": 1, "name": "cell"}, {"id": 2, "name": "nucleus"}],
        "annotations": [
            {"id": 1, "image_id": 1, "category_id": 2, "bbox": [10, 10, 5, 5], "area": 25, "iscrowd": 0},
            {"id": 2, "image_id": 2, "category_id": 1, "bbox": [20, 5, 8, 8], "area": 64, "iscrowd": 0},
        ],
    }
    (tmp_path / "labels.json").write_text(json.dumps(coco))
    report, record = record_import(
        project,
        lambda: import_annotations(project, tmp_path / "labels.json", format="coco", images_dir=images, mark_done=True),
    )
    assert report.annotations == 2 and project.image_count() == 2 and len(project.categories()) == 2
    assert record.describe() == "1 image, 2 labels, 1 class, 2 done marks"
    later = project.add_annotation(Annotation(image_id=1, category_id=cell.id, kind=Kind.BOX, box_xywh=(30, 20, 4, 4)))

    undo_import(project, record)
    assert [Path(r.path).name for r in project.images()] == ["own.png"]
    assert [c.name for c in project.categories()] == ["cell"]
    assert [a.id for a in project.annotations()] == [mine.id, later.id]  # the user's labels, before and after
    assert not project.image(1).done
    assert project.edit_log(action="undo import")[-1]["detail"] == {"removed": record.describe()}
    project.close()


def test_a_failed_import_records_nothing_and_changes_nothing(tmp_path: Path) -> None:
    project = Project.create(tmp_path / "p")
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(FormatError, match=r"bad\.json"):
        record_import(project, lambda: import_annotations(project, tmp_path / "bad.json", format="coco"))
    assert project.image_count() == 0 and project.categories() == []
    project.close()
